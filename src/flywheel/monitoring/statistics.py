"""Drift tests against a stored reference.

A window drifts when two things hold at once, at every window size: a test finds the
difference significant (two-sample KS for a numeric feature, chi-square for categories and
bins, at `p_value`), and the difference is large enough to matter (the Wasserstein distance
normed by the reference's spread, or the Jensen-Shannon distance, above `distance`). A test
alone fires on any difference once a window is large, and a distance alone fires on noise
when it is small; both thresholds are Evidently's defaults (0.05, 0.1), and Jensen-Shannon is
in nats as Evidently's is. There is no switch between methods by size.

The reference is a sample too: features are compared with the rows their contract was
inferred from (`sample_drift`) or, when those are gone, with the contract's bins counted on
its `rows` (`counted_drift`); scores with the evaluation's stored sample. The chi-square is
then a two-sample test of homogeneity, so a small reference does not make a healthy window
look drifted.

PSI is reported for every window but may only alarm (`DriftTest.psi_alarms`) on a window
large enough that each reference bin expects `min_expected` rows, and when the chi-square on
the same bins is significant: below that, its value is mostly noise (a median of about 1 at
20 rows over deciles). scipy's functions do the tests (the two-sample ones through
`flywheel.monitoring.twosample`, which spares a look scipy.stats's import). The metrics'
intervals and CBPE are `flywheel.monitoring.intervals`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from flywheel import drift
from flywheel.monitoring import twosample
from flywheel.records import Record

Floats = npt.NDArray[np.float64]
# Records written before both parts were required name the one test that decided.
Test = Literal["ks", "chi2", "wasserstein", "jensen_shannon"]
Effect = Literal["wasserstein", "jensen_shannon"]
_EPSILON = 1e-4  # the same floor for empty categories as drift.psi uses
_FEW_VALUES = 5  # Evidently's limit below which a numeric feature is tested as categories
_EXACT = 1e12  # a reference known exactly: homogeneity against it is goodness of fit
MIN_EXPECTED = 5  # rows each reference bin must expect before PSI may alarm (chi-square's rule)


class DriftTest(Record):
    """One distribution of a window against its reference: a test (`statistic`, `p_value`
    against `threshold`) and an effect (`effect_size` against `distance`); `drifted` when
    both pass. PSI over the reference's bins, with the chi-square p-value of the same bins and
    the rows a window needs before PSI may alarm."""

    rows: int
    psi: float
    test: Test
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    effect: Effect | None = None
    effect_size: float | None = None
    distance: float | None = None
    psi_p_value: float | None = None
    psi_min_rows: int = 0

    def psi_alarms(self, limit: float) -> bool:
        """PSI above `limit` on a window large enough to trust it, with its bins' chi-square
        significant: a named feature's PSI threshold fires only then."""
        return (
            self.psi > limit
            and self.rows >= self.psi_min_rows
            and self.psi_p_value is not None
            and self.psi_p_value < self.threshold
        )


@dataclass(frozen=True)
class Reference:
    """A continuous reference distribution: CDF values `cdf` at increasing points `x`."""

    x: tuple[float, ...]
    cdf: tuple[float, ...]

    @classmethod
    def from_points(cls, x: Sequence[float], cdf: Sequence[float]) -> Reference:
        """From any CDF points; repeated x keep the highest value (a right-continuous step)."""
        pairs: dict[float, float] = {}
        for xi, fi in sorted(zip(x, cdf, strict=True)):
            pairs[float(xi)] = max(pairs.get(float(xi), 0.0), min(max(float(fi), 0.0), 1.0))
        xs = list(pairs)
        fs = list(np.maximum.accumulate(list(pairs.values())))
        if len(xs) == 1:  # a constant: a step at that one point
            xs, fs = [xs[0], xs[0] + 1e-12], [1.0, 1.0]
        return cls(tuple(xs), tuple(float(f) for f in fs))

    def cdf_at(self, values: npt.ArrayLike) -> Floats:
        """P(X <= value)."""
        return np.interp(np.asarray(values, dtype=float), self.x, self.cdf, left=0.0, right=1.0)

    def quantiles(self, q: npt.ArrayLike) -> Floats:
        """The inverse CDF (the first point where the CDF reaches q)."""
        q = np.asarray(q, dtype=float)
        f = np.asarray(self.cdf)
        x = np.asarray(self.x)
        # Within a segment the mass is uniform, so invert it linearly.
        i = np.clip(np.searchsorted(f, q, side="left"), 1, len(f) - 1)
        f0, f1, x0, x1 = f[i - 1], f[i], x[i - 1], x[i]
        share = np.divide(q - f0, f1 - f0, out=np.ones_like(q), where=f1 > f0)
        return np.asarray(x0 + np.clip(share, 0.0, 1.0) * (x1 - x0), dtype=float)


def homogeneity(window: npt.ArrayLike, reference: npt.ArrayLike) -> tuple[float, float]:
    """Chi-square test that two sets of counts over the same bins come from one distribution
    (a 2×k contingency table; bins empty in both are left out): (statistic, p-value). With a
    reference of unknown size, pass its expected counts scaled far beyond the window's."""
    from scipy.special import chdtrc

    a, b = np.asarray(window, dtype=float), np.asarray(reference, dtype=float)
    used = (a + b) > 0
    a, b = a[used], b[used]
    n, m = a.sum(), b.sum()
    if len(a) < 2 or n <= 0 or m <= 0:
        return 0.0, 1.0
    pooled = (a + b) / (n + m)
    statistic = float(
        np.sum((a - n * pooled) ** 2 / (n * pooled) + (b - m * pooled) ** 2 / (m * pooled))
    )
    return statistic, float(chdtrc(len(a) - 1, statistic))


def jensen_shannon(expected: npt.ArrayLike, observed: npt.ArrayLike) -> float:
    """Jensen-Shannon distance in nats (scipy's default base, as Evidently uses), computed
    as scipy.spatial.distance.jensenshannon does."""
    from scipy.special import rel_entr

    p, q = np.asarray(expected, dtype=float), np.asarray(observed, dtype=float)
    p, q = p / np.sum(p), q / np.sum(q)
    m = (p + q) / 2.0
    return float(np.sqrt((np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / 2.0))


def psi_min_rows(fractions: Sequence[float], min_expected: float = MIN_EXPECTED) -> int:
    """The window size at which every reference bin expects `min_expected` rows."""
    smallest = min((f for f in fractions if f > 0), default=1.0)
    return math.ceil(min_expected / smallest)


def _judged(
    rows: int,
    psi: tuple[float, float | None, int],
    test: Test,
    statistic: float,
    p: float,
    effect: Effect,
    size: float,
    *,
    p_value: float,
    distance: float,
) -> DriftTest:
    return DriftTest(
        rows=rows,
        psi=psi[0],
        psi_p_value=psi[1],
        psi_min_rows=psi[2],
        test=test,
        statistic=statistic,
        p_value=p,
        threshold=p_value,
        effect=effect,
        effect_size=size,
        distance=distance,
        drifted=bool(p < p_value and size > distance),
    )


def _psi(
    counts: npt.ArrayLike, reference: npt.ArrayLike, min_expected: float
) -> tuple[float, float | None, int]:
    """PSI of window counts against reference counts over the same bins, the chi-square
    p-value of the same bins, and the rows PSI needs before it may alarm."""
    a, b = np.asarray(counts, dtype=float), np.asarray(reference, dtype=float)
    fractions = b / b.sum()
    value = drift.psi(fractions.tolist(), (a / a.sum()).tolist())
    return value, homogeneity(a, b)[1], psi_min_rows(fractions.tolist(), min_expected)


def sample_drift(
    values: npt.ArrayLike,
    reference: npt.ArrayLike,
    edges: Sequence[float],
    *,
    p_value: float,
    distance: float,
    counts: Sequence[int] | None = None,
    min_expected: float = MIN_EXPECTED,
) -> DriftTest | None:
    """Served values against reference rows: two-sample KS and the Wasserstein distance
    normed by the reference's standard deviation; PSI over `edges` (on `counts` of the whole
    window when the values are a sample of it). A feature with at most five distinct
    reference values is compared as categories, as Evidently does."""
    clean, ref = _finite(values), _finite(reference)
    if len(clean) == 0 or len(ref) == 0:
        return None
    window_counts = np.asarray(
        counts if counts is not None and any(counts) else _counts(clean, edges)
    )
    psi = _psi(window_counts, _counts(ref, edges), min_expected)
    distinct = np.unique(ref)
    if len(distinct) <= _FEW_VALUES:
        found = counted_drift(
            Counter(repr(float(v)) for v in clean),
            Counter(repr(float(v)) for v in ref),
            reference_rows=len(ref),
            p_value=p_value,
            distance=distance,
        )
        assert found is not None  # clean is not empty
        return found.model_copy(
            update={"psi": psi[0], "psi_p_value": psi[1], "psi_min_rows": psi[2]}
        )
    statistic, p = twosample.ks_2samp(clean, ref)
    scale = float(ref.std()) or 1.0
    size = twosample.wasserstein(clean, ref) / scale
    return _judged(
        len(clean),
        psi,
        "ks",
        statistic,
        p,
        "wasserstein",
        size,
        p_value=p_value,
        distance=distance,
    )


def binned_drift(
    values: npt.ArrayLike,
    edges: Sequence[float],
    fractions: Sequence[float],
    *,
    reference_rows: int | None,
    p_value: float,
    distance: float,
    counts: Sequence[int] | None = None,
    min_expected: float = MIN_EXPECTED,
) -> DriftTest | None:
    """Against a binned profile alone (no reference rows, `reference_rows` counted when it
    was made): the bins compared as categories, on `counts` when a summary counted them."""
    clean = _finite(values)
    tally = counts if counts is not None and any(counts) else _counts(clean, edges).tolist()
    if not sum(tally):
        return None
    return counted_drift(
        {str(i): int(n) for i, n in enumerate(tally)},
        {str(i): float(f) for i, f in enumerate(fractions)},
        reference_rows=reference_rows,
        p_value=p_value,
        distance=distance,
        min_expected=min_expected,
    )


def categorical_drift(
    values: Sequence[object],
    reference: Mapping[str, float],
    *,
    reference_rows: int | None,
    p_value: float,
    distance: float,
    min_expected: float = MIN_EXPECTED,
) -> DriftTest | None:
    """PSI over the categories, chi-square and the Jensen-Shannon distance."""
    seen = [str(v) for v in values if v is not None and v == v]
    return counted_drift(
        Counter(seen),
        reference,
        reference_rows=reference_rows,
        p_value=p_value,
        distance=distance,
        min_expected=min_expected,
    )


def counted_drift(
    tally: Mapping[str, int],
    reference: Mapping[str, float],
    *,
    reference_rows: int | None = None,
    p_value: float,
    distance: float,
    min_expected: float = MIN_EXPECTED,
) -> DriftTest | None:
    """`categorical_drift` from the count of each category (a summary's, merged exactly).
    `reference` is the reference's shares (or counts: they are normalised), made from
    `reference_rows` rows (None: known exactly, a goodness-of-fit test)."""
    total = sum(tally.values())
    if not total:
        return None
    keys = sorted({k for k, f in reference.items() if f > 0} | {k for k, n in tally.items() if n})
    counts = np.array([tally.get(k, 0) for k in keys], dtype=float)
    shares = np.array([max(float(reference.get(k, 0.0)), 0.0) for k in keys])
    shares /= shares.sum() if shares.sum() > 0 else 1.0
    rows = _EXACT if reference_rows is None else float(reference_rows)
    statistic, p = homogeneity(counts, shares * rows)
    floored = np.maximum(shares, _EPSILON)
    floored /= floored.sum()
    observed = counts / total
    psi = (
        drift.psi(floored.tolist(), observed.tolist()),
        p,
        psi_min_rows(shares.tolist(), min_expected),
    )
    return _judged(
        int(total),
        psi,
        "chi2",
        statistic,
        p,
        "jensen_shannon",
        jensen_shannon(shares, observed),
        p_value=p_value,
        distance=distance,
    )


def score_reference(
    thresholds: Sequence[float], fpr: Sequence[float], tpr: Sequence[float], positive_rate: float
) -> Reference:
    """The score distribution behind an ROC curve: P(score >= t) = π·TPR(t) + (1-π)·FPR(t)."""
    above = positive_rate * np.asarray(tpr) + (1 - positive_rate) * np.asarray(fpr)
    return Reference.from_points([0.0, *thresholds, 1.0], [0.0, *(1.0 - above), 1.0])


def _finite(values: npt.ArrayLike) -> Floats:
    array = np.asarray(values, dtype=float)
    return np.asarray(array[np.isfinite(array)], dtype=float)


def _counts(values: Floats, edges: Sequence[float]) -> npt.NDArray[np.int64]:
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
