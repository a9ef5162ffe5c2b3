"""The two-sample statistics a look computes without scipy.stats give scipy.stats's answers,
on every branch of the Kolmogorov-Smirnov p-value, and a look's statistics never import it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from flywheel.monitoring import twosample

# (rows of each sample, the second's shift in standard deviations, values rounded to one
# decimal (ties), whether scipy.stats is asked): one case per branch of the p-value.
CASES = {
    "exact, small samples: scipy": (2_000, 1_500, 0.0, False, True),
    "exact at 10,000 rows: scipy": (10_000, 3_000, 0.05, False, True),
    "Pelz-Good, no drift": (20_000, 15_000, 0.0, False, False),
    "Pelz-Good, ties": (20_000, 12_000, 0.0, True, False),
    "Smirnov's formula, a drift": (20_000, 12_000, 0.1, False, False),
    "Smirnov's formula, ties": (20_000, 12_000, 0.1, True, False),
    "beyond double precision: 0": (20_000, 12_000, 1.0, False, False),
    "half the mass apart": (30_000, 12_000, 4.0, False, False),
    "a small second sample: scipy": (20_000, 100, 0.0, False, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_ks_2samp_is_scipys_on_each_branch(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    n1, n2, shift, ties, asks_scipy = CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    a, b = rng.normal(size=n1), rng.normal(shift, size=n2)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    asked: list[int] = []
    scipy_ks_2samp = twosample._scipy_ks_2samp
    monkeypatch.setattr(
        twosample, "_scipy_ks_2samp", lambda x, y: asked.append(1) or scipy_ks_2samp(x, y)
    )
    statistic, p = twosample.ks_2samp(a, b)
    expected = stats.ks_2samp(a, b)
    assert statistic == expected.statistic
    assert p == pytest.approx(expected.pvalue, rel=1e-12, abs=1e-300)
    assert bool(asked) == asks_scipy


def test_ks_2samp_on_disjoint_samples_and_nearly_disjoint_ones() -> None:
    a = np.arange(20_000, dtype=float)
    for b in (a + 30_000, np.r_[a[-1], a[:11_999] + 30_000]):
        statistic, p = twosample.ks_2samp(a, b)
        expected = stats.ks_2samp(a, b)
        assert (statistic, p) == pytest.approx((expected.statistic, expected.pvalue), abs=1e-300)


def test_ks_2samp_refuses_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        twosample.ks_2samp([], [1.0])


def test_wasserstein_is_scipys() -> None:
    rng = np.random.default_rng(3)
    for n1, n2, ties in ((1, 1, False), (7, 300, True), (20_000, 5_000, False)):
        a, b = rng.gamma(2.0, size=n1), rng.normal(2, 3, size=n2)
        if ties:
            a, b = np.round(a), np.round(b)
        assert twosample.wasserstein(a, b) == pytest.approx(
            stats.wasserstein_distance(a, b), rel=1e-13
        )


def test_average_ranks_are_rankdatas_with_ties_and_nan() -> None:
    rng = np.random.default_rng(5)
    for size, distinct in ((1, 1), (10, 3), (500, 40), (2_000, 2_000)):
        x = rng.integers(0, distinct, size=size).astype(float)
        np.testing.assert_array_equal(twosample.average_ranks(x), stats.rankdata(x))
    np.testing.assert_array_equal(
        twosample.average_ranks([2.0, np.nan, 1.0]), stats.rankdata([2.0, np.nan, 1.0])
    )
    assert len(twosample.average_ranks([])) == 0


def test_a_looks_statistics_on_a_large_window_do_not_import_scipy_stats() -> None:
    # In a fresh interpreter: every statistic a binary version's look computes.
    program = """
import sys
import numpy as np
from flywheel.bounds import null_bound, range_bound
from flywheel.monitoring import intervals, statistics
rng = np.random.default_rng(0)
window, reference = rng.normal(size=20_000), rng.normal(size=15_000)
assert statistics.sample_drift(window, reference, [-1.0, 0.0, 1.0], p_value=0.05, distance=0.1)
statistics.jensen_shannon([1, 2, 3], [3, 2, 1])
scores = rng.random(20_000)
intervals.cbpe(scores, scores, 0.95, rows=1_000_000)
intervals.auc_interval(rng.random(2_000) < 0.5, rng.random(2_000), 0.95)
intervals.wilson(40, 100, 0.95)
null_bound(1_000_000, 3, 2_000, 0.05, 0.001)
range_bound(1_000_000, 2_000, 0.01, 0.001)
print(sorted(m for m in sys.modules if m.startswith("scipy.stats")))
"""
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "[]", run.stdout + run.stderr
