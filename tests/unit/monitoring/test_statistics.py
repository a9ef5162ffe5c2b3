"""The drift tests against distributions whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_curve

from flywheel import drift
from flywheel.monitoring import statistics
from flywheel.monitoring.statistics import Reference

LIMITS = {"p_value": 0.05, "distance": 0.1}


def _profile(sample: np.ndarray, bins: int) -> tuple[list[float], list[float]]:
    """Quantile bins as a contract stores them."""
    import pandas as pd

    edges = drift.quantile_edges(pd.Series(sample), bins)
    return edges, drift.bin_fractions(pd.Series(sample), edges)


def test_psi_of_a_sample_against_its_own_profile_is_about_zero() -> None:
    # given a reference and a second draw from the same distribution
    rng = np.random.default_rng(1)
    reference, current = rng.normal(size=50_000), rng.normal(size=50_000)
    edges, _ = _profile(reference, 10)
    # when they are compared
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then PSI is near zero and nothing drifted
    assert result is not None
    assert result.psi < 0.002
    assert not result.drifted and not result.psi_alarms(0.1)


def test_psi_of_shifted_normals_approaches_the_symmetric_kl_divergence() -> None:
    # given N(0, 1) as reference and N(0.5, 1) served: PSI tends to KL(P|Q) + KL(Q|P) = 0.5² = 0.25
    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=400_000), rng.normal(0.5, 1, size=400_000)
    edges, _ = _profile(reference, 50)
    # when compared over 50 quantile bins
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then PSI is the analytic value, less a little for the binning, and it may alarm
    assert result is not None
    assert result.psi == pytest.approx(0.25, rel=0.05)
    assert result.psi_alarms(0.2)


def test_a_drift_is_two_sample_ks_and_the_wasserstein_distance_normed_by_the_spread() -> None:
    # given N(0, 2) and N(0.6, 2): W1 is the shift, 0.6, and normed by σ = 2 it is 0.3
    rng = np.random.default_rng(3)
    reference, current = rng.normal(0, 2, size=5000), rng.normal(0.6, 2, size=800)
    edges, _ = _profile(reference, 10)
    # when compared
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then the test is scipy's KS, the effect the normed distance, and both fire
    expected = stats.ks_2samp(current, reference)
    assert result is not None and result.test == "ks" and result.effect == "wasserstein"
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.effect_size == pytest.approx(0.3, abs=0.05)
    assert result.drifted


def test_a_significant_but_tiny_shift_of_a_huge_window_is_not_drift() -> None:
    # given a shift of 0.03σ in 400,000 rows: KS is sure of it, and it is far below 0.1σ
    rng = np.random.default_rng(4)
    reference, current = rng.normal(size=400_000), rng.normal(0.03, 1, size=400_000)
    edges, _ = _profile(reference, 10)
    # when compared
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then the test is significant, the effect is not, and nothing drifted (PSI neither)
    assert result is not None and result.p_value is not None and result.p_value < 1e-6
    assert result.effect_size is not None and result.effect_size < 0.05
    assert not result.drifted and not result.psi_alarms(0.1)


def test_the_same_test_decides_on_both_sides_of_a_thousand_rows() -> None:
    # given a 0.3σ shift in windows of 1,000 and 1,001 rows (the old switch between methods)
    rng = np.random.default_rng(5)
    reference = rng.normal(size=5000)
    edges, _ = _profile(reference, 10)
    fired = {}
    for rows in (1000, 1001):
        results = [
            statistics.sample_drift(rng.normal(0.3, 1, rows), reference, edges, **LIMITS)
            for _ in range(100)
        ]
        fired[rows] = np.mean([r is not None and r.drifted for r in results])
    # then their power is the same, not a cliff
    assert abs(fired[1000] - fired[1001]) < 0.15, fired


def test_a_feature_with_few_values_is_tested_as_categories_against_the_reference_counts() -> None:
    # given a count feature with four values
    rng = np.random.default_rng(5)
    reference, current = rng.poisson(0.5, 5000), rng.poisson(0.5, 400)
    reference, current = np.minimum(reference, 3), np.minimum(current, 3)
    edges, _ = _profile(reference, 10)
    # when compared
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then it is the chi-square of the 2 x 4 table of counts, not KS on a step function
    table = [np.bincount(current, minlength=4), np.bincount(reference, minlength=4)]
    assert result is not None and result.test == "chi2"
    assert result.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)


def test_chi_square_against_exact_shares_is_the_goodness_of_fit_test() -> None:
    # given a category that became twice as common, against shares known exactly
    reference = {"web": 0.5, "branch": 0.3, "partner": 0.2}
    current = ["web"] * 40 + ["branch"] * 20 + ["partner"] * 40
    # when tested
    result = statistics.categorical_drift(current, reference, reference_rows=None, **LIMITS)
    # then the p-value is scipy's for the same counts, and it fires
    expected = stats.chisquare([20, 40, 40], [30, 50, 20])
    assert result is not None and result.test == "chi2"
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-4)
    assert result.drifted


def test_chi_square_against_shares_of_a_counted_reference_is_the_two_sample_test() -> None:
    # given shares profiled from 300 rows
    reference = {"web": 0.5, "branch": 0.3, "partner": 0.2}
    current = ["web"] * 40 + ["branch"] * 20 + ["partner"] * 40
    # when tested
    result = statistics.categorical_drift(current, reference, reference_rows=300, **LIMITS)
    # then it is the chi-square of the contingency table, less sure than against exact shares
    table = [[20, 40, 40], [90, 60, 150]]
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert result is not None and result.p_value == pytest.approx(expected)
    assert result.p_value > stats.chisquare([20, 40, 40], [30, 50, 20]).pvalue


def test_a_small_reference_does_not_make_healthy_windows_look_drifted() -> None:
    # given shares profiled from 500 rows of a known distribution, and windows of 500 rows
    rng = np.random.default_rng(6)
    truth = np.array([0.4, 0.3, 0.2, 0.1])
    names = ["a", "b", "c", "d"]
    two_sample, exact = [], []
    for _ in range(1000):
        profiled = rng.multinomial(500, truth) / 500
        shares = dict(zip(names, profiled.tolist(), strict=True))
        counts = dict(zip(names, rng.multinomial(500, truth).tolist(), strict=True))
        for out, rows in ((two_sample, 500), (exact, None)):
            found = statistics.counted_drift(counts, shares, reference_rows=rows, **LIMITS)
            assert found is not None and found.p_value is not None
            out.append(found.p_value < 0.05)
    # then the two-sample test fires at its level (binomial error of 1,000 draws: ±1.4
    # points), where taking the profiled shares as exact fires about twice as often
    assert 0.03 <= np.mean(two_sample) <= 0.07, np.mean(two_sample)
    assert np.mean(exact) > 0.08, np.mean(exact)


def test_jensen_shannon_is_in_nats_as_evidently_has_it() -> None:
    # given large windows
    reference = {"a": 0.5, "b": 0.5}
    same = statistics.categorical_drift(["a", "b"] * 1000, reference, reference_rows=None, **LIMITS)
    # when every value is a category the reference never had
    disjoint = statistics.categorical_drift(["c"] * 2000, reference, reference_rows=None, **LIMITS)
    # then the distance spans 0 to √(ln 2), scipy's default base
    assert same is not None and same.effect == "jensen_shannon"
    assert same.effect_size == pytest.approx(0.0, abs=1e-6) and not same.drifted
    assert disjoint is not None and disjoint.effect_size == pytest.approx(math.sqrt(math.log(2)))
    assert disjoint.drifted


def test_binned_drift_compares_the_contract_bins_as_categories() -> None:
    # given only a profile: deciles of N(0, 1), counted on 5,000 rows
    edges = list(stats.norm.ppf(np.linspace(0.1, 0.9, 9)))
    fractions = [0.1] * 10
    rng = np.random.default_rng(6)
    # when a same-distribution sample and a shifted one are tested
    limits = {"reference_rows": 5000, **LIMITS}
    same = statistics.binned_drift(rng.normal(size=800), edges, fractions, **limits)
    shifted = statistics.binned_drift(rng.normal(0.5, 1, size=800), edges, fractions, **limits)
    # then only the shifted one fires
    assert same is not None and shifted is not None
    assert not same.drifted and shifted.drifted


def test_psi_needs_every_bin_to_expect_five_rows_before_it_may_alarm() -> None:
    # given deciles of N(0, 1): 50 rows make 5 a bin
    rng = np.random.default_rng(7)
    reference = rng.normal(size=5000)
    edges, _ = _profile(reference, 10)
    small = statistics.sample_drift(rng.normal(size=20), reference, edges, **LIMITS)
    # then a window of 20 rows reports its PSI, often above 0.2 by noise alone, and never alarms
    assert small is not None and small.psi_min_rows == 50
    assert not small.psi_alarms(0.0)
    assert statistics.psi_min_rows([0.5, 0.3, 0.02, 0.18]) == 250


def test_psi_alarms_at_its_level_with_no_drift_at_80_rows() -> None:
    # given 1,000 windows of 80 rows from the reference's own distribution (PSI > 0.2 in about
    # one in ten of them)
    rng = np.random.default_rng(8)
    reference = rng.normal(size=2000)
    edges, _ = _profile(reference, 10)
    found = [
        statistics.sample_drift(rng.normal(size=80), reference, edges, **LIMITS)
        for _ in range(1000)
    ]
    above = np.mean([f is not None and f.psi > 0.2 for f in found])
    alarms = np.mean([f is not None and f.psi_alarms(0.2) for f in found])
    # then PSI alone is above 0.2 often, and its alarm, which needs the bins' chi-square, at
    # most at the test's 5% (plus the binomial error of 1,000 draws)
    assert above > 0.05, above
    assert alarms <= 0.065, alarms


def test_the_score_distribution_is_recovered_from_an_roc_curve() -> None:
    # given scores, labels and the ROC curve an evaluation keeps
    rng = np.random.default_rng(7)
    scores = rng.beta(2, 5, size=20_000)
    labels = (rng.random(20_000) < scores).astype(int)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    keep = np.unique(np.linspace(0, len(fpr) - 1, 101).astype(int))
    # when the distribution is read off the thinned curve
    reference = statistics.score_reference(
        np.minimum(thresholds[keep], 1.0), fpr[keep], tpr[keep], float(labels.mean())
    )
    # then its CDF is the empirical one to within a bin of the curve
    points = np.linspace(0.05, 0.8, 16)
    empirical = np.array([(scores <= p).mean() for p in points])
    assert np.max(np.abs(reference.cdf_at(points) - empirical)) < 0.015


def test_prediction_drift_against_a_stored_sample_fires_at_its_level() -> None:
    # given an evaluation's sample of 2,000 scores, and windows of 1,000 from the same model
    # (a one-sample KS against the ROC's distribution, taken as exact, fired 13.5% here)
    rng = np.random.default_rng(9)
    fired = []
    for _ in range(300):
        stored = rng.beta(2, 5, size=2000)
        edges, _ = _profile(stored, 10)
        found = statistics.sample_drift(
            rng.beta(2, 5, size=1000), stored, edges, p_value=0.05, distance=0.0
        )
        assert found is not None and found.p_value is not None
        fired.append(found.p_value < 0.05)
    # then the two-sample test alone fires at about its 5% (binomial error of 300: ±2.5 points)
    assert np.mean(fired) <= 0.08, np.mean(fired)


def test_reference_quantiles_invert_the_cdf() -> None:
    # given a reference with an empty bin and repeated points
    reference = Reference.from_points([0, 1, 1, 2, 3, 4], [0, 0.2, 0.4, 0.4, 0.9, 1.0])
    # when quantiles are taken of CDF values
    q = np.array([0.1, 0.3, 0.5, 0.95])
    # then the CDF at the quantile gives them back
    assert reference.cdf_at(reference.quantiles(q)) == pytest.approx(q)
