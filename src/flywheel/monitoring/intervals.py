"""Metrics with confidence intervals, on delayed labels and before them (CBPE).

On labels: a proportion's Wilson interval, ROC AUC with DeLong's variance on the logit scale
(a score interval for a small class), a mean's normal interval, R²'s delta-method interval
from sums, and a percentile bootstrap of the rows (or of counts, drawn again).
Before labels, CBPE after NannyML: a binary classifier's expected accuracy, ROC AUC and log
loss if each row's label follows its calibrated score, with intervals from labels simulated
the same way, each simulation calibrated by a calibrator refitted on a resample of the
evaluation's calibration set. When the scores are a uniform sample of a bigger window (a
summary's), each simulation also draws the rows not kept, each sampled row standing for a
geometric count of them, so that the intervals are of the whole window's metrics. They are
small enough to write here and are tested against known distributions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flywheel.monitoring.twosample import average_ranks
from flywheel.records import Record

Floats = npt.NDArray[np.float64]


class Interval(Record):
    """A value with its confidence interval."""

    value: float
    low: float
    high: float


# --- performance with intervals -----------------------------------------------------


def _z(confidence: float) -> float:
    """The standard normal's quantile at (1 + confidence) / 2."""
    from scipy.special import ndtri

    return float(ndtri(0.5 + confidence / 2))


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
    y = np.asarray(labels, dtype=int) == 1
    s = np.asarray(scores, dtype=float)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = average_ranks(s)
    auc = float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    if min(n1, n0) < AUC_SMALL_CLASS or auc in (0.0, 1.0):
        return auc_score_interval(auc, n1, n0, confidence)
    # Each positive's share of negatives below it, each negative's of positives above it.
    below = (ranks[y] - average_ranks(s[y])) / n0
    above = 1 - (ranks[~y] - average_ranks(s[~y])) / n1
    variance = float(below.var(ddof=1) / n1 + above.var(ddof=1) / n0)
    return _logit_interval(auc, variance, confidence)


def auc_of_counts(
    positives: npt.ArrayLike, negatives: npt.ArrayLike, confidence: float
) -> Interval | None:
    """`auc_interval` of scores given only as counts of positives and negatives on the same
    ascending bins: the rows of one bin count as tied, so it is the AUC of the binned
    scores, with DeLong's variance of their placements."""
    p = np.asarray(positives, dtype=float)
    q = np.asarray(negatives, dtype=float)
    n1, n0 = int(p.sum()), int(q.sum())
    if n1 == 0 or n0 == 0:
        return None
    negatives_below = np.cumsum(q) - q
    positives_above = n1 - np.cumsum(p)
    # Each positive's share of negatives below it (ties half), each negative's of positives
    # above it: the same for every row of a bin.
    below = (negatives_below + q / 2) / n0
    above = (positives_above + p / 2) / n1
    auc = float((p * below).sum() / n1)
    if min(n1, n0) < AUC_SMALL_CLASS or auc in (0.0, 1.0):
        return auc_score_interval(auc, n1, n0, confidence)

    def spread(values: Floats, weights: Floats, n: int) -> float:
        mean = float((values * weights).sum() / n)
        return float((weights * (values - mean) ** 2).sum() / (n - 1))

    variance = spread(below, p, n1) / n1 + spread(above, q, n0) / n0
    return _logit_interval(auc, variance, confidence)


def _logit_interval(auc: float, variance: float, confidence: float) -> Interval:
    """An AUC's normal interval on the logit scale, mapped back."""
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
    return _percentiles(found, value, confidence)


def bootstrap_counts(
    statistic: Callable[[npt.NDArray[np.int64]], Floats],
    counts: npt.ArrayLike,
    value: float,
    confidence: float,
    *,
    resamples: int = 200,
    seed: int = 0,
) -> Interval:
    """`bootstrap` of a statistic of counts alone, such as a confusion matrix: resampling
    the rows draws the counts again from their multinomial. `statistic` takes every resample
    at once, stacked on a first axis, and gives one value each."""
    cells = np.asarray(counts, dtype=np.int64)
    n = int(cells.sum())
    drawn = np.random.default_rng(seed).multinomial(n, cells.ravel() / n, size=resamples)
    found = np.asarray(statistic(drawn.reshape(resamples, *cells.shape)), dtype=float)
    return _percentiles(found, value, confidence)


def _percentiles(found: Floats, value: float, confidence: float) -> Interval:
    """`value` with the percentile interval of its resamples' values (NaN left out)."""
    found = found[np.isfinite(found)]
    if len(found) == 0:
        return Interval(value=value, low=value, high=value)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(found, [tail, 100 - tail])
    return Interval(value=value, low=float(min(low, value)), high=float(max(high, value)))


def mean_of_intervals(each: Sequence[Interval | None]) -> Interval | None:
    """The mean of several estimates made on the same rows (the classes' one-vs-rest AUCs),
    with the mean of their bounds: the interval their errors would have if they moved
    together, the widest their covariances allow (the standard deviation of a mean is at
    most the mean of the standard deviations), so it covers at least its level. None when
    one of them is."""
    if not each or any(one is None for one in each):
        return None
    known = [one for one in each if one is not None]
    return Interval(
        value=float(np.mean([one.value for one in known])),
        low=float(np.mean([one.low for one in known])),
        high=float(np.mean([one.high for one in known])),
    )


def mean_interval(values: npt.ArrayLike, confidence: float) -> Interval:
    """A mean with its normal-approximation interval."""
    array = np.asarray(values, dtype=float)
    spread = float(array.var(ddof=1)) if len(array) > 1 else 0.0
    return _normal(float(array.mean()), spread, len(array), confidence)


def mean_of_sums(n: int, total: float, squares: float, confidence: float) -> Interval:
    """`mean_interval` of n values given only their sum and their squares' sum (counts that
    merge; the variance is floored at zero against rounding)."""
    mean = total / n
    spread = max(squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0
    return _normal(mean, spread, n, confidence)


def r2_of_sums(
    n: int,
    errors: tuple[float, float],
    labels: Sequence[float],
    cross: tuple[float, float],
    confidence: float,
) -> Interval | None:
    """R² (1 - the mean squared error over the labels' variance) of n rows given only sums:
    of the squared errors e² and e⁴; of the labels y, y², y³ and y⁴ (shifted by any one
    constant, which R² does not see: a shift near their mean keeps the sums exact); and of
    e²y and e²y². Its interval is the delta method's: the variance of each row's influence
    on the ratio. None when the labels do not vary, or with two rows or fewer."""
    if n <= 2:
        return None
    mse, e4 = errors[0] / n, errors[1] / n
    m1, m2, m3, m4 = (total / n for total in labels)
    spread = m2 - m1 * m1
    if spread <= 0:
        return None
    # The central moments the influence needs: Var(e²), Var((y - mean)²), and their
    # covariance.
    fourth = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1**4
    together = cross[1] / n - 2 * m1 * cross[0] / n + m1 * m1 * mse - mse * spread
    a, b = 1 / spread, mse / spread**2
    variance = a * a * (e4 - mse * mse) + b * b * (fourth - spread**2) - 2 * a * b * together
    # Student's t on n - 2 degrees of freedom, not the normal: in `make bench-stats` it
    # covered 93.7% at 20 rows where the normal's covered 92.5%, and is the normal's from a
    # few hundred rows.
    from scipy.special import stdtrit

    r2 = 1 - mse / spread
    half = float(stdtrit(n - 2, 0.5 + confidence / 2)) * math.sqrt(max(variance, 0.0) / (n - 1))
    return Interval(value=r2, low=r2 - half, high=r2 + half)


def r2_interval(
    labels: npt.ArrayLike, predicted: npt.ArrayLike, confidence: float, shift: float | None = None
) -> Interval | None:
    """R² of rows, with `r2_of_sums`' interval, the labels shifted by `shift` in the sums
    (None: by their mean)."""
    y = np.asarray(labels, dtype=float)
    e = np.asarray(predicted, dtype=float) - y
    s = y - (shift if shift is not None else y.mean() if len(y) else 0.0)
    return r2_of_sums(
        len(y),
        (float(np.sum(e**2)), float(np.sum(e**4))),
        [float(np.sum(s**power)) for power in (1, 2, 3, 4)],
        (float(np.sum(e**2 * s)), float(np.sum(e**2 * s**2))),
        confidence,
    )


def _normal(mean: float, variance: float, n: int, confidence: float) -> Interval:
    """A mean of n values of `variance` with its normal interval."""
    half = _z(confidence) * math.sqrt(variance / n)
    return Interval(value=mean, low=mean - half, high=mean + half)


def rooted(squared: Interval) -> Interval:
    """A mean squared error's interval as a root mean squared error's."""
    return Interval(
        value=math.sqrt(squared.value),
        low=math.sqrt(max(squared.low, 0.0)),
        high=math.sqrt(squared.high),
    )


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


# Every window of a version refits the same calibrators on its evaluation's calibration set:
# the newest few are kept, by that set's content.
_RESAMPLED: dict[tuple[str, int, int], Resampled] = {}
_RESAMPLED_KEPT = 8


def resampled(
    sample: Sequence[tuple[float, int]] | Floats, simulations: int, *, seed: int = 0
) -> Resampled:
    """`simulations` calibrators, each refitted on a bootstrap resample of the calibration set
    `sample` of (score, label)."""
    import hashlib

    pairs = np.asarray(sample, dtype=float).reshape(-1, 2)
    key = (hashlib.sha256(pairs.tobytes()).hexdigest(), simulations, seed)
    kept = _RESAMPLED.pop(key, None)
    if kept is None:
        kept = _refitted(pairs, simulations, seed)
    _RESAMPLED[key] = kept  # the most recently used last
    while len(_RESAMPLED) > _RESAMPLED_KEPT:
        del _RESAMPLED[next(iter(_RESAMPLED))]
    return kept


def _refitted(pairs: Floats, simulations: int, seed: int) -> Resampled:
    """`resampled`'s fits, every resample binned at once as `evaluation.calibration` bins
    one: each bin's mean score and observed rate, from sums by (resample, bin)."""
    from flywheel.evaluation import CALIBRATION_BINS, bin_of

    rng = np.random.default_rng(seed)
    n, bins = len(pairs), CALIBRATION_BINS
    picks = np.stack([rng.integers(0, n, n) for _ in range(simulations)])
    which = (np.arange(simulations)[:, None] * bins + bin_of(pairs[:, 0], bins)[picks]).ravel()
    size = simulations * bins
    counts = np.bincount(which, minlength=size).reshape(simulations, bins)
    scores = np.bincount(which, pairs[picks, 0].ravel(), size).reshape(simulations, bins)
    rates = np.bincount(which, pairs[picks, 1].ravel(), size).reshape(simulations, bins)
    fitted = []
    for count, score, rate in zip(counts, scores, rates, strict=True):
        held = count > 0
        refitted = calibrator(
            list(zip(score[held] / count[held], rate[held] / count[held], strict=True))
        )
        assert refitted is not None  # a resample has rows
        fitted.append(refitted)
    return Resampled(tuple(fitted))


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


def stood_for(rng: np.random.Generator, shape: tuple[int, int], rows: int) -> Floats:
    """How many of a window's `rows` each of a uniform sample's `shape[1]` rows stands for,
    itself included, in each of `shape[0]` simulations: one, and the rows not sampled that are
    like it, a Bayesian bootstrap of the sample (Dirichlet(1, ..., 1) shares) with Poisson
    counts on those shares, which is a geometric count of mean (rows - n) / n (drawn as an
    exponential's floor). The window's mean of any row's figure then varies by (1 - n/rows)
    of its variance over n, as a uniform sample's mean varies about its population's."""
    scale = -1 / math.log1p(-shape[1] / rows)
    weight: Floats = 1 + np.floor(rng.standard_exponential(shape) * scale)
    return weight


class Sorted:
    """Scores sorted once, where rows stand for several (a window beyond its sample): the
    rank sums of their positives are running sums in this order."""

    def __init__(self, scores: Floats) -> None:
        self.order = np.argsort(scores, kind="stable")
        self.scores = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, self.scores[1:] != self.scores[:-1]])

    def rank_sums(self, weight: Floats, positive: Floats) -> Floats:
        """Each simulation's sum of its positives' mid-ranks among all the rows the weights
        stand for (ties share theirs): `weight` and `positive` (simulations, n), in this
        order."""
        if len(self.starts) < len(self.scores):  # ties share their rank: sum them first
            weight = np.add.reduceat(weight, self.starts, axis=1)
            positive = np.add.reduceat(positive, self.starts, axis=1)
        mid = np.cumsum(weight, axis=1) - (weight - 1) / 2
        sums: Floats = (positive * mid).sum(axis=1)
        return sums


class _Window(Sorted):
    """A binary classifier's window simulated from a uniform sample of its rows (`cbpe` with
    `rows`), in score order."""

    def __init__(self, p: Floats, rows: int, loss_if_1: Floats, loss_if_0: Floats) -> None:
        super().__init__(p)
        self.rows = rows
        self.predicted = self.scores >= 0.5
        self.loss_if_1, self.loss_if_0 = loss_if_1[self.order], loss_if_0[self.order]

    def simulate(self, rng: np.random.Generator, chance: Floats) -> tuple[Floats, ...]:
        """Each simulation's accuracy, log loss, positives, rows and rank sum of positives,
        its labels drawn with `chance` (simulations, n in score order). Each row's count of
        positives among those it stands for is drawn from the normal of its binomial's mean
        and variance: every figure is a sum over the sample's rows, whose distribution that
        keeps."""
        weight = stood_for(rng, (len(chance), len(self.scores)), self.rows)
        mean = weight * chance
        positive = mean + np.sqrt(mean * (1 - chance)) * rng.standard_normal(chance.shape)
        total = weight.sum(axis=1)
        right = np.where(self.predicted, positive, weight - positive).sum(axis=1) / total
        loss = (positive @ self.loss_if_1 + (weight - positive) @ self.loss_if_0) / total
        return right, loss, positive.sum(axis=1), total, self.rank_sums(weight, positive)


_CHUNK = 20  # simulations drawn at a time: their arrays stay in the cache


def cbpe(
    scores: npt.ArrayLike,
    calibrated: npt.ArrayLike,
    confidence: float,
    *,
    draws: Floats | Resampled | None = None,
    simulations: int = 300,
    seed: int = 0,
    rows: int | None = None,
) -> dict[str, Interval | None]:
    """Expected accuracy (at 0.5), ROC AUC and log loss of `scores` if each row's label is
    Bernoulli(`calibrated`); intervals from labels simulated the same way, each simulation's
    from its own calibrator when the calibrator is uncertain: a row of `draws`
    (`calibration_draws`), or a calibrator of `resampled`, applied a few at a time.

    With `rows` above their number, `scores` are a uniform sample of a window of that many
    rows (a summary's): each simulation also draws the rows the sample stands for
    (`_Window`), and the intervals are of the whole window's metrics."""
    p = np.asarray(scores, dtype=float)
    q = np.clip(np.asarray(calibrated, dtype=float), 0.0, 1.0)
    predicted = p >= 0.5
    n = len(p)
    rng = np.random.default_rng(seed)
    count = len(draws) if draws is not None else simulations
    loss_if_1, loss_if_0 = row_log_loss(np.ones(n), p), row_log_loss(np.zeros(n), p)
    window = _Window(p, rows, loss_if_1, loss_if_0) if rows is not None and rows > n else None
    # In the window's score order when the sample stands for a window.
    at = window.order if window is not None else slice(None)
    ranks = average_ranks(p) if window is None else np.empty(0)
    right, loss, n1 = np.empty(count), np.empty(count), np.empty(count)
    total, rank_sums = np.full(count, float(n)), np.empty(count)
    # The same random numbers, in the same order, as drawing all simulations at once.
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        if draws is None:
            chance: Floats = np.broadcast_to(q[at], (stop - start, n))
        elif isinstance(draws, Resampled):
            chance = Resampled(draws.fitted[start:stop])(p[at])
        else:
            chance = np.minimum(np.maximum(draws[start:stop][:, at], 0.0), 1.0)
        if window is not None:
            simulated = window.simulate(rng, chance)
            right[start:stop], loss[start:stop], n1[start:stop] = simulated[:3]
            total[start:stop], rank_sums[start:stop] = simulated[3:]
            continue
        labels = rng.random((stop - start, n)) < chance
        right[start:stop] = (labels == predicted).mean(axis=1)
        loss[start:stop] = np.where(labels, loss_if_1, loss_if_0).mean(axis=1)
        n1[start:stop] = labels.sum(axis=1)
        rank_sums[start:stop] = labels @ ranks
    tail = (1 - confidence) / 2 * 100

    def interval(value: float, simulated: Floats) -> Interval:
        low, high = np.percentile(simulated, [tail, 100 - tail], method="weibull")
        return Interval(value=value, low=float(low), high=float(high))

    accuracy = interval(float(np.where(predicted, q, 1 - q).mean()), right)
    log_loss = interval(float(np.mean(q * loss_if_1 + (1 - q) * loss_if_0)), loss)
    usable = (n1 > 0) & (n1 < total)
    auc: Interval | None = None
    if usable.any():
        positives, size = n1[usable], total[usable]
        simulated = (rank_sums[usable] - positives * (positives + 1) / 2) / (
            positives * (size - positives)
        )
        auc = interval(expected_auc(p, q), simulated)
    return {"accuracy": accuracy, "roc_auc": auc, "log_loss": log_loss}


def f1_scores(true_positive: npt.ArrayLike, called: npt.ArrayLike, actual: npt.ArrayLike) -> Floats:
    """Each class's F1 from its (expected or simulated) true positives, rows called it and
    rows of it, along the last axis: 2 tp / (called + actual), 0 for a class neither called
    nor present (scikit-learn's)."""
    both = np.asarray(called, dtype=float) + np.asarray(actual, dtype=float)
    twice = 2 * np.asarray(true_positive, dtype=float)
    f1: Floats = np.divide(twice, both, out=np.zeros(both.shape), where=both > 0)
    return f1


def expected_auc(p: Floats, q: Floats) -> float:
    """NannyML's CBPE ROC AUC: the ROC curve of expected true and false positives."""
    order = np.argsort(-p, kind="stable")
    tp = np.concatenate([[0.0], np.cumsum(q[order])])
    fp = np.concatenate([[0.0], np.cumsum(1 - q[order])])
    if tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    tpr, fpr = tp / tp[-1], fp / fp[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
