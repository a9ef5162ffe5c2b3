"""Drift tests against a stored reference, metric intervals, and CBPE.

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
20 rows over deciles). scipy does the tests; the intervals and CBPE are small enough to write
here and are tested against known distributions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from flywheel import drift
from flywheel.records import Record

Floats = npt.NDArray[np.float64]
# Records written before both parts were required name the one test that decided.
Test = Literal["ks", "chi2", "wasserstein", "jensen_shannon"]
Effect = Literal["wasserstein", "jensen_shannon"]
_EPSILON = 1e-4  # the same floor for empty categories as drift.psi uses
_FEW_VALUES = 5  # Evidently's limit below which a numeric feature is tested as categories
_EXACT = 1e12  # a reference known exactly: homogeneity against it is goodness of fit
MIN_EXPECTED = 5  # rows each reference bin must expect before PSI may alarm (chi-square's rule)


class Interval(Record):
    """A value with its confidence interval."""

    value: float
    low: float
    high: float


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
    from scipy.stats import chi2

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
    return statistic, float(chi2.sf(statistic, len(a) - 1))


def jensen_shannon(expected: npt.ArrayLike, observed: npt.ArrayLike) -> float:
    """Jensen-Shannon distance in nats (scipy's default base, as Evidently uses)."""
    from scipy.spatial.distance import jensenshannon

    return float(
        jensenshannon(np.asarray(expected, dtype=float), np.asarray(observed, dtype=float))
    )


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
    from scipy import stats

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
    ks = stats.ks_2samp(clean, ref)
    scale = float(ref.std()) or 1.0
    size = float(stats.wasserstein_distance(clean, ref)) / scale
    return _judged(
        len(clean),
        psi,
        "ks",
        float(ks.statistic),
        float(ks.pvalue),
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


# --- performance with intervals -----------------------------------------------------


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def wilson(successes: int, n: int, confidence: float) -> Interval:
    """A proportion with its Wilson score interval."""
    z = _z(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(value=p, low=max(centre - half, 0.0), high=min(centre + half, 1.0))


# Below this many rows in the smaller class, DeLong's variance is too rough (its interval
# covered 80% with two positives in 20 rows); the score interval is used instead.
AUC_SMALL_CLASS = 10


def auc_interval(
    labels: npt.ArrayLike, scores: npt.ArrayLike, confidence: float
) -> Interval | None:
    """ROC AUC (Mann-Whitney) with DeLong's variance on the logit scale, as Pohar Perme and
    Manevski (2018) recommend: it stays inside [0, 1] and covers near its level from about
    80 rows, where Hanley and McNeil's normal interval covered 88% at 20 rows and 97% at a
    thousand. With fewer than AUC_SMALL_CLASS rows in the smaller class, or the classes
    perfectly apart, the score interval of Hanley and McNeil's variance (`auc_score_interval`).
    None with one class."""
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=int) == 1
    s = np.asarray(scores, dtype=float)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(s)
    auc = float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    if min(n1, n0) < AUC_SMALL_CLASS or auc in (0.0, 1.0):
        return auc_score_interval(auc, n1, n0, confidence)
    # Each positive's share of negatives below it, each negative's of positives above it.
    below = (ranks[y] - rankdata(s[y])) / n0
    above = 1 - (ranks[~y] - rankdata(s[~y])) / n1
    variance = float(below.var(ddof=1) / n1 + above.var(ddof=1) / n0)
    logit = math.log(auc / (1 - auc))
    half = _z(confidence) * math.sqrt(variance) / (auc * (1 - auc))
    return Interval(
        value=auc,
        low=1 / (1 + math.exp(-(logit - half))),
        high=1 / (1 + math.exp(-(logit + half))),
    )


def _hanley_mcneil(auc: Floats, n1: int, n0: int) -> Floats:
    """Hanley and McNeil's (1982) variance of the Mann-Whitney AUC at `auc`."""
    a = np.asarray(auc, dtype=float)
    spread = 1 + (n1 - 1) * (1 - a) / (2 - a) + (n0 - 1) * a / (1 + a)
    return np.asarray(a * (1 - a) * spread / (n1 * n0), dtype=float)


def auc_score_interval(auc: float, n1: int, n0: int, confidence: float) -> Interval:
    """The AUCs t not rejected by (auc - t)² <= z²·V(t), V Hanley and McNeil's variance at t:
    Wilson's idea for a proportion carried to the AUC. It stays inside [0, 1] and is not empty
    when the classes are perfectly apart (an AUC of 0 or 1)."""
    from scipy.optimize import brentq

    z2 = _z(confidence) ** 2

    def rejected(t: npt.ArrayLike) -> Floats:
        t = np.asarray(t, dtype=float)
        return np.asarray((auc - t) ** 2 - z2 * _hanley_mcneil(t, n1, n0), dtype=float)

    grid = np.linspace(0.0, 1.0, 1001)
    inside = np.flatnonzero(rejected(grid) <= 0)
    # The run of accepted grid points around the AUC, each end refined between grid points.
    at = int(np.clip(round(auc * 1000), inside.min(), inside.max()))
    breaks = np.flatnonzero(np.diff(inside) > 1)
    first = inside[np.r_[0, breaks + 1]]
    last = inside[np.r_[breaks, len(inside) - 1]]
    run = int(np.searchsorted(first, at, side="right") - 1)
    lo, hi = int(first[run]), int(last[run])
    low = grid[lo] if lo == 0 else brentq(rejected, grid[lo - 1], grid[lo])
    high = grid[hi] if hi == 1000 else brentq(rejected, grid[hi], grid[hi + 1])
    return Interval(value=auc, low=float(min(low, auc)), high=float(max(high, auc)))


def row_log_loss(labels: npt.ArrayLike, scores: npt.ArrayLike) -> Floats:
    """Each row's log loss, with scores clipped as scikit-learn does."""
    y = np.asarray(labels, dtype=float)
    p = np.clip(np.asarray(scores, dtype=float), 1e-15, 1 - 1e-15)
    return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1 - p)), dtype=float)


def bootstrap(
    statistic: Callable[[npt.NDArray[np.intp]], float],
    rows: int,
    value: float,
    confidence: float,
    *,
    resamples: int = 200,
    seed: int = 0,
) -> Interval:
    """`value` with the percentile interval of `statistic` over seeded resamples of the row
    indices (resamples where it is undefined, NaN, are left out)."""
    rng = np.random.default_rng(seed)
    found = np.array([statistic(rng.integers(0, rows, rows)) for _ in range(resamples)])
    found = found[np.isfinite(found)]
    if len(found) == 0:
        return Interval(value=value, low=value, high=value)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(found, [tail, 100 - tail])
    return Interval(value=value, low=float(min(low, value)), high=float(max(high, value)))


def mean_interval(values: npt.ArrayLike, confidence: float) -> Interval:
    """A mean with its normal-approximation interval."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    half = (
        _z(confidence) * float(array.std(ddof=1)) / math.sqrt(len(array)) if len(array) > 1 else 0
    )
    return Interval(value=mean, low=mean - half, high=mean + half)


# --- confidence-based performance estimation (CBPE) ----------------------------------


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from score to probability through (mean predicted, observed rate) points
    (histogram binning, smoothed linearly). Beyond the first and last point it carries on at
    the slope of the line from the first to the last, within [0, 1]: flat ends would give
    every score beyond them one probability, which squeezes the most certain rows together
    and biased CBPE's ROC AUC low (by 0.006 on a calibrated model, binned in ten)."""

    scores: tuple[float, ...]
    rates: tuple[float, ...]

    def __call__(self, scores: npt.ArrayLike) -> Floats:
        x = np.asarray(scores, dtype=float)
        first, last, low, high = self.scores[0], self.scores[-1], self.rates[0], self.rates[-1]
        slope = (high - low) / (last - first) if last > first else 0.0
        q = np.asarray(np.interp(x, self.scores, self.rates), dtype=float)
        below, above = x < first, x > last
        # np.minimum and np.maximum: np.clip's overhead dominated these small arrays.
        q[below] = np.minimum(np.maximum(low - slope * (first - x[below]), 0.0), low)
        q[above] = np.minimum(np.maximum(high + slope * (x[above] - last), high), 1.0)
        return q


def calibrator(pairs: Sequence[tuple[float, float]]) -> Calibrator | None:
    """The calibrator of a reliability curve, or None when it has no points."""
    if not pairs:
        return None
    ordered = sorted(pairs)
    rates = np.maximum.accumulate([min(max(o, 0.0), 1.0) for _, o in ordered])
    return Calibrator(tuple(p for p, _ in ordered), tuple(float(r) for r in rates))


@dataclass(frozen=True)
class Resampled:
    """Calibrators refitted as the evaluation fits its own (`evaluation.calibration`, then
    `calibrator`) on bootstrap resamples of its calibration set: the calibrator's own
    uncertainty. Fitted once, they calibrate any window's scores (`__call__`)."""

    fitted: tuple[Calibrator, ...]

    def __len__(self) -> int:
        return len(self.fitted)

    def __call__(self, scores: npt.ArrayLike) -> Floats:
        """`scores` through each calibrator: a (calibrators, n) array."""
        x = np.asarray(scores, dtype=float)
        out = np.empty((len(self.fitted), len(x)))
        for row, fitted in zip(out, self.fitted, strict=True):
            row[:] = fitted(x)
        return out


# Every window of a version refits the same calibrators on its evaluation's calibration set
# (300 fits, a third of a window's analysis): the newest few are kept, by that set's content.
_RESAMPLED: dict[tuple[str, int, int], Resampled] = {}
_RESAMPLED_KEPT = 8


def resampled(
    sample: Sequence[tuple[float, int]] | Floats, simulations: int, *, seed: int = 0
) -> Resampled:
    """`simulations` calibrators, each refitted on a bootstrap resample of the calibration set
    `sample` of (score, label)."""
    import hashlib

    from flywheel.evaluation import calibration

    pairs = np.asarray(sample, dtype=float).reshape(-1, 2)
    key = (hashlib.sha256(pairs.tobytes()).hexdigest(), simulations, seed)
    kept = _RESAMPLED.pop(key, None)
    if kept is None:
        rng = np.random.default_rng(seed)
        fitted = []
        for _ in range(simulations):
            pick = pairs[rng.integers(0, len(pairs), len(pairs))]
            refitted = calibrator(calibration(pick[:, 1], pick[:, 0]))
            assert refitted is not None  # a resample has rows
            fitted.append(refitted)
        kept = Resampled(tuple(fitted))
    _RESAMPLED[key] = kept  # the most recently used last
    while len(_RESAMPLED) > _RESAMPLED_KEPT:
        del _RESAMPLED[next(iter(_RESAMPLED))]
    return kept


def calibration_draws(
    sample: Sequence[tuple[float, int]] | Floats,
    scores: npt.ArrayLike,
    simulations: int,
    *,
    seed: int = 0,
) -> Floats:
    """`scores` calibrated `simulations` times, each by a calibrator refitted on a bootstrap
    resample of the calibration set `sample` of (score, label) (`resampled`): an
    (simulations, n) array."""
    return resampled(sample, simulations, seed=seed)(scores)


_CHUNK = 20  # simulations drawn at a time: their arrays stay in the cache


def cbpe(
    scores: npt.ArrayLike,
    calibrated: npt.ArrayLike,
    confidence: float,
    *,
    draws: Floats | Resampled | None = None,
    simulations: int = 300,
    seed: int = 0,
) -> dict[str, Interval | None]:
    """Expected accuracy (at 0.5), ROC AUC and log loss of `scores` if each row's label is
    Bernoulli(`calibrated`); intervals from labels simulated the same way, each simulation's
    from its own calibrator when the calibrator is uncertain: a row of `draws`
    (`calibration_draws`), or a calibrator of `resampled`, applied a few at a time."""
    from scipy.stats import rankdata

    p = np.asarray(scores, dtype=float)
    q = np.clip(np.asarray(calibrated, dtype=float), 0.0, 1.0)
    predicted = p >= 0.5
    n = len(p)
    rng = np.random.default_rng(seed)
    count = len(draws) if draws is not None else simulations
    loss_if_1, loss_if_0 = row_log_loss(np.ones(n), p), row_log_loss(np.zeros(n), p)
    ranks = rankdata(p)
    right, loss, n1 = np.empty(count), np.empty(count), np.empty(count, dtype=np.int64)
    rank_sums = np.empty(count)
    # The same random numbers, in the same order, as drawing all simulations at once.
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        if draws is None:
            chance: Floats = np.broadcast_to(q, (stop - start, n))
        elif isinstance(draws, Resampled):
            chance = Resampled(draws.fitted[start:stop])(p)
        else:
            chance = np.minimum(np.maximum(draws[start:stop], 0.0), 1.0)
        labels = rng.random((stop - start, n)) < chance
        right[start:stop] = (labels == predicted).mean(axis=1)
        loss[start:stop] = np.where(labels, loss_if_1, loss_if_0).mean(axis=1)
        n1[start:stop] = labels.sum(axis=1)
        rank_sums[start:stop] = labels @ ranks
    tail = (1 - confidence) / 2 * 100

    def interval(value: float, simulated: Floats) -> Interval:
        low, high = np.percentile(simulated, [tail, 100 - tail])
        return Interval(value=value, low=float(low), high=float(high))

    accuracy = interval(float(np.where(predicted, q, 1 - q).mean()), right)
    log_loss = interval(float(np.mean(q * loss_if_1 + (1 - q) * loss_if_0)), loss)
    usable = (n1 > 0) & (n1 < n)
    auc: Interval | None = None
    if usable.any():
        positives = n1[usable]
        simulated = (rank_sums[usable] - positives * (positives + 1) / 2) / (
            positives * (n - positives)
        )
        auc = interval(expected_auc(p, q), simulated)
    return {"accuracy": accuracy, "roc_auc": auc, "log_loss": log_loss}


def expected_auc(p: Floats, q: Floats) -> float:
    """NannyML's CBPE ROC AUC: the ROC curve of expected true and false positives."""
    order = np.argsort(-p, kind="stable")
    tp = np.concatenate([[0.0], np.cumsum(q[order])])
    fp = np.concatenate([[0.0], np.cumsum(1 - q[order])])
    if tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    tpr, fpr = tp / tp[-1], fp / fp[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
