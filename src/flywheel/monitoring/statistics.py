"""Drift tests against a stored reference, metric intervals, and CBPE.

Features are compared with the rows their contract was inferred from
(`sample_drift`), or with the contract's bins alone when those rows are gone
(`binned_drift`). Scores are compared with the distribution read off the
version's evaluated ROC curve, a piecewise-linear CDF (`Reference`). The test
follows the window size, as Evidently's defaults do: KS (numeric) or chi-square
(categorical) up to `large` rows, normed Wasserstein or Jensen-Shannon distance
above. scipy does the tests; the intervals and CBPE are small enough to write
here and are tested against known distributions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from flywheel import drift
from flywheel.records import Record

Floats = npt.NDArray[np.float64]
Test = Literal["ks", "chi2", "wasserstein", "jensen_shannon"]
_GRID = 2000  # points of the reference's quantile function for the Wasserstein distance
_EPSILON = 1e-4  # the same floor for empty categories as drift.psi uses
_FEW_VALUES = 5  # Evidently's limit below which a numeric feature is tested as categories


class Interval(Record):
    """A value with its confidence interval."""

    value: float
    low: float
    high: float


class DriftTest(Record):
    """One distribution of a window against its reference."""

    rows: int
    psi: float
    test: Test
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool


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

    @property
    def std(self) -> float:
        """Standard deviation of the piecewise-uniform distribution."""
        x, f = np.asarray(self.x), np.diff(np.asarray(self.cdf))
        a, b = x[:-1], x[1:]
        mean = float(np.sum(f * (a + b) / 2))
        second = float(np.sum(f * (a * a + a * b + b * b) / 3))
        return math.sqrt(max(second - mean * mean, 0.0))


def distribution_drift(
    values: npt.ArrayLike,
    reference: Reference,
    edges: Sequence[float],
    fractions: Sequence[float],
    *,
    large: int,
    p_value: float,
    distance: float,
    std: float | None = None,
) -> DriftTest | None:
    """Against a reference CDF: PSI over `edges`, and KS (small windows) or Wasserstein normed
    by the reference's standard deviation (large)."""
    from scipy import stats

    clean = _finite(values)
    if len(clean) == 0:
        return None
    psi = drift.psi(fractions, _fractions(clean, edges))
    if len(clean) <= large:
        ks = stats.kstest(clean, reference.cdf_at)
        return _tested(len(clean), psi, "ks", ks, p_value)
    grid = reference.quantiles((np.arange(_GRID) + 0.5) / _GRID)
    scale = std if std is not None and std > 0 else reference.std
    value = float(stats.wasserstein_distance(clean, grid)) / (scale if scale > 0 else 1.0)
    return _measured(len(clean), psi, "wasserstein", value, distance)


def _tested(rows: int, psi: float, test: Test, result: Any, p_value: float) -> DriftTest:
    """A drift test judged by its p-value (KS, chi-square)."""
    return DriftTest(
        rows=rows,
        psi=psi,
        test=test,
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        threshold=p_value,
        drifted=bool(result.pvalue < p_value),
    )


def _measured(rows: int, psi: float, test: Test, value: float, distance: float) -> DriftTest:
    """A drift test judged by a distance (Wasserstein, Jensen-Shannon)."""
    return DriftTest(
        rows=rows,
        psi=psi,
        test=test,
        statistic=value,
        p_value=None,
        threshold=distance,
        drifted=value > distance,
    )


def sample_drift(
    values: npt.ArrayLike,
    reference: npt.ArrayLike,
    edges: Sequence[float],
    fractions: Sequence[float],
    *,
    large: int,
    p_value: float,
    distance: float,
) -> DriftTest | None:
    """Against reference rows: PSI over `edges`, and two-sample KS (small windows) or
    Wasserstein normed by the reference's standard deviation (large). A feature with at most
    five distinct reference values is compared as categories, as Evidently does."""
    from scipy import stats

    clean, ref = _finite(values), _finite(reference)
    if len(clean) == 0 or len(ref) == 0:
        return None
    distinct = np.unique(ref)
    if len(distinct) <= _FEW_VALUES:
        shares = {repr(float(v)): float((ref == v).mean()) for v in distinct}
        found = categorical_drift(
            [repr(float(v)) for v in clean], shares, large=large, p_value=p_value, distance=distance
        )
        assert found is not None  # clean is not empty
        return found.model_copy(update={"psi": drift.psi(fractions, _fractions(clean, edges))})
    psi = drift.psi(fractions, _fractions(clean, edges))
    if len(clean) <= large:
        ks = stats.ks_2samp(clean, ref)
        return _tested(len(clean), psi, "ks", ks, p_value)
    scale = float(ref.std()) or 1.0
    value = float(stats.wasserstein_distance(clean, ref)) / scale
    return _measured(len(clean), psi, "wasserstein", value, distance)


def binned_drift(
    values: npt.ArrayLike,
    edges: Sequence[float],
    fractions: Sequence[float],
    *,
    large: int,
    p_value: float,
    distance: float,
) -> DriftTest | None:
    """Against a binned profile alone (no reference rows): the bins compared as categories."""
    clean = _finite(values)
    if len(clean) == 0:
        return None
    which = np.searchsorted(edges, clean, side="left")
    shares = {str(i): float(f) for i, f in enumerate(fractions)}
    return categorical_drift(
        [str(i) for i in which], shares, large=large, p_value=p_value, distance=distance
    )


def categorical_drift(
    values: Sequence[object],
    reference: Mapping[str, float],
    *,
    large: int,
    p_value: float,
    distance: float,
) -> DriftTest | None:
    """PSI over the categories, and chi-square (small windows) or Jensen-Shannon (large)."""
    seen = [str(v) for v in values if v is not None and v == v]
    return counted_drift(Counter(seen), reference, large=large, p_value=p_value, distance=distance)


def counted_drift(
    tally: Mapping[str, int],
    reference: Mapping[str, float],
    *,
    large: int,
    p_value: float,
    distance: float,
) -> DriftTest | None:
    """`categorical_drift` from the count of each category (a summary's, merged exactly)."""
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    total = sum(tally.values())
    if not total:
        return None
    keys = sorted(set(reference) | {k for k, n in tally.items() if n})
    counts = np.array([tally[k] for k in keys], dtype=float)
    observed = counts / counts.sum()
    expected = np.array([max(reference.get(k, 0.0), _EPSILON) for k in keys])
    expected /= expected.sum()
    psi = drift.psi(list(expected), list(observed))
    if total <= large:
        chi = stats.chisquare(counts, expected * counts.sum())
        return _tested(total, psi, "chi2", chi, p_value)
    value = float(jensenshannon(expected, observed, base=2))
    return _measured(total, psi, "jensen_shannon", value, distance)


def score_reference(
    thresholds: Sequence[float], fpr: Sequence[float], tpr: Sequence[float], positive_rate: float
) -> Reference:
    """The score distribution behind an ROC curve: P(score >= t) = π·TPR(t) + (1-π)·FPR(t)."""
    above = positive_rate * np.asarray(tpr) + (1 - positive_rate) * np.asarray(fpr)
    return Reference.from_points([0.0, *thresholds, 1.0], [0.0, *(1.0 - above), 1.0])


def _finite(values: npt.ArrayLike) -> Floats:
    array = np.asarray(values, dtype=float)
    return np.asarray(array[np.isfinite(array)], dtype=float)


def _fractions(values: Floats, edges: Sequence[float]) -> list[float]:
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return [float(c) / counts.sum() for c in counts]


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


def auc_interval(
    labels: npt.ArrayLike, scores: npt.ArrayLike, confidence: float
) -> Interval | None:
    """ROC AUC (Mann-Whitney) with the Hanley-McNeil (1982) standard error; None with one class."""
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=int)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=float))
    auc = float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0)
    half = _z(confidence) * math.sqrt(max(var, 0.0))
    return Interval(value=auc, low=max(auc - half, 0.0), high=min(auc + half, 1.0))


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
    """A monotone map from score to probability through (mean predicted, observed rate) points,
    flat beyond the first and last point (histogram binning, smoothed linearly)."""

    scores: tuple[float, ...]
    rates: tuple[float, ...]

    def __call__(self, scores: npt.ArrayLike) -> Floats:
        return np.interp(np.asarray(scores, dtype=float), self.scores, self.rates)


def calibrator(pairs: Sequence[tuple[float, float]]) -> Calibrator | None:
    """The calibrator of a reliability curve, or None when it has no points."""
    if not pairs:
        return None
    ordered = sorted(pairs)
    rates = np.maximum.accumulate([min(max(o, 0.0), 1.0) for _, o in ordered])
    return Calibrator(tuple(p for p, _ in ordered), tuple(float(r) for r in rates))


def cbpe(
    scores: npt.ArrayLike,
    calibrated: npt.ArrayLike,
    confidence: float,
    *,
    simulations: int = 300,
    seed: int = 0,
) -> dict[str, Interval | None]:
    """Expected accuracy (at 0.5), ROC AUC and log loss of `scores` if each row's label is
    Bernoulli(`calibrated`); intervals from labels simulated the same way."""
    from scipy.stats import rankdata

    p = np.asarray(scores, dtype=float)
    q = np.clip(np.asarray(calibrated, dtype=float), 0.0, 1.0)
    predicted = p >= 0.5
    n = len(p)
    rng = np.random.default_rng(seed)
    labels = rng.random((simulations, n)) < q
    tail = (1 - confidence) / 2 * 100

    def interval(value: float, simulated: Floats) -> Interval:
        low, high = np.percentile(simulated, [tail, 100 - tail])
        return Interval(value=value, low=float(low), high=float(high))

    right = np.where(predicted, q, 1 - q)
    accuracy = interval(float(right.mean()), (labels == predicted).mean(axis=1))
    loss_if_1, loss_if_0 = row_log_loss(np.ones(n), p), row_log_loss(np.zeros(n), p)
    log_loss = interval(
        float(np.mean(q * loss_if_1 + (1 - q) * loss_if_0)),
        np.where(labels, loss_if_1, loss_if_0).mean(axis=1),
    )
    ranks = rankdata(p)
    n1 = labels.sum(axis=1)
    usable = (n1 > 0) & (n1 < n)
    auc: Interval | None = None
    if usable.any():
        simulated = (labels[usable] @ ranks - n1[usable] * (n1[usable] + 1) / 2) / (
            n1[usable] * (n - n1[usable])
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
