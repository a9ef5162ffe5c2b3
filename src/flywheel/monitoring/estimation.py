"""Performance before labels arrive: CBPE for a classifier, direct loss estimation (DLE) for a
regression, both after NannyML, both estimates that rest on stated assumptions.

CBPE of a binary classifier is `intervals.cbpe`. A multiclass one follows NannyML's
multiclass CBPE: each class's probability is recalibrated one-vs-rest, the row renormalised
to sum to 1, and the expected accuracy, macro F1 (from expected true and false positives per
class) and one-vs-rest ROC AUC follow; its intervals are those of labels drawn from the
calibrated probabilities. DLE fits models of a regression's absolute and squared error on rows
the version never trained on (its evaluation's newest batch), from the features and the
prediction, and averages their predictions over a window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from flywheel.monitoring import intervals
from flywheel.monitoring.intervals import Interval
from flywheel.monitoring.twosample import average_ranks
from flywheel.records import Record

if TYPE_CHECKING:
    import pandas as pd

Floats = npt.NDArray[np.float64]

ASSUMPTIONS = (
    "The scores, after recalibration on the version's evaluation, are calibrated on the "
    "serving population: P(label = 1 | score) is what it was at evaluation.",
    "Only the inputs drift (covariate shift): the relation between inputs and labels "
    "(concept) is unchanged. Under concept drift the estimate is wrong and only delayed "
    "labels show it.",
    "Each row's label is an independent Bernoulli draw; the interval covers that draw (beyond "
    "a summary's sample, the whole window's: the sampled rows stand for those not kept) and, "
    "when the evaluation stored a sample of its scores, the calibrator's own error (refitted "
    "on resamples of it), not a calibration that is wrong on the serving population.",
    "Accuracy is at the serving threshold of 0.5.",
)
MULTICLASS_ASSUMPTIONS = (
    "Each class's probability, recalibrated one-vs-rest on the version's evaluation and "
    "renormalised over the classes, is calibrated on the serving population.",
    ASSUMPTIONS[1],
    "Each row's label is an independent draw from its calibrated probabilities; the interval "
    "covers that draw (beyond a summary's sample, the whole window's) and, given the "
    "evaluation's sample of probabilities, the calibration's "
    "own error (refitted on resamples of it), not a calibration that is wrong on the serving "
    "population.",
    "Accuracy and F1 are at the most probable class.",
)
DLE_ASSUMPTIONS = (
    "The error models, fitted on the evaluation's newest batch (rows the version never "
    "trained on), predict each row's expected absolute and squared error on the serving "
    "population: only the inputs drift (covariate shift), and not beyond what the reference "
    "rows cover (tree models do not extrapolate). Under concept drift the estimate is wrong "
    "and only delayed labels show it.",
    "The interval covers the window's own draw of errors (the error models' out-of-fold "
    "residual spread on the reference, over the window's rows; beyond a summary's sample, "
    "the sample's own spread too) plus their out-of-fold bias there; not an error model "
    "that is wrong on inputs unlike the reference.",
)
# Fewer reference rows than this give error models too rough to report.
MIN_REFERENCE_ROWS = 50
_FOLDS = 5


class Estimate(Record):
    """Expected metrics before labels arrive: an estimate (`method`), with its assumptions."""

    method: Literal["CBPE", "DLE"] = "CBPE"
    calibration: Literal["evaluation", "none"] | None = None  # CBPE's; None for DLE
    rows: int
    accuracy: Interval | None = None
    roc_auc: Interval | None = None
    log_loss: Interval | None = None
    macro_f1: Interval | None = None
    rmse: Interval | None = None
    mae: Interval | None = None
    assumptions: tuple[str, ...] = ASSUMPTIONS

    def get(self, metric: str) -> Interval | None:
        """The interval of one estimated metric, or None."""
        value: Interval | None = getattr(self, metric, None)
        return value


def recalibrate(p: Floats, calibrations: Sequence[Sequence[tuple[float, float]]]) -> Floats:
    """Each class's probability through its one-vs-rest reliability curve (left as it is where
    the curve has no points), each row renormalised to sum to 1 (uniform where all are 0), as
    NannyML's `_calibrate_predicted_probabilities`."""
    return _recalibrated(p, [intervals.calibrator(pairs) for pairs in calibrations])


def _recalibrated(p: Floats, calibrators: Sequence[intervals.Calibrator | None]) -> Floats:
    q = np.array(p, dtype=float, copy=True)
    for c, calibrator in enumerate(calibrators):
        if calibrator is not None:
            q[:, c] = calibrator(p[:, c])
    total = q.sum(axis=1, keepdims=True)
    uniform = np.full_like(q, 1 / q.shape[1])
    return np.divide(q, total, out=uniform, where=total > 0)


Resampled = tuple[tuple[intervals.Calibrator | None, ...], ...]


def resampled(
    sample: Sequence[tuple[Sequence[float], int]], simulations: int, *, seed: int = 0
) -> Resampled:
    """For each of `simulations` bootstrap resamples of the calibration set `sample` of
    (class probabilities, class code), each class's one-vs-rest calibrator refitted as the
    evaluation fits its own (`evaluation.calibration`, then `intervals.calibrator`): the
    calibration's own uncertainty, as `intervals.resampled` for a binary classifier."""
    from flywheel.evaluation import calibration

    p = np.array([row for row, _ in sample], dtype=float)
    y = np.array([code for _, code in sample], dtype=np.int64)
    rng = np.random.default_rng(seed)
    fitted = []
    for _ in range(simulations):
        pick = rng.integers(0, len(y), len(y))
        drawn, codes = p[pick], y[pick]
        fitted.append(
            tuple(
                intervals.calibrator(calibration((codes == c).astype(int), drawn[:, c]))
                for c in range(p.shape[1])
            )
        )
    return tuple(fitted)


def _draw(
    q: Floats, simulations: int, rng: np.random.Generator, calibrators: Resampled | None = None
) -> npt.NDArray[np.int32]:
    """Labels drawn from each row's class probabilities, `simulations` times: (s, n); each
    simulation's probabilities `q` recalibrated by its own calibrators when given."""
    cumulative = np.cumsum(q, axis=1)
    drawn = []
    for s in range(simulations):
        if calibrators is not None:
            cumulative = np.cumsum(_recalibrated(q, calibrators[s]), axis=1)
        drawn.append((rng.random((len(q), 1)) * cumulative[:, -1:] > cumulative).sum(axis=1))
    labels: npt.NDArray[np.int32] = np.minimum(np.stack(drawn), q.shape[1] - 1).astype(np.int32)
    return labels


def _beyond_sample(
    p: Floats,
    q: Floats,
    rows: int,
    simulations: int,
    rng: np.random.Generator,
    calibrators: Resampled | None,
    predicted: npt.NDArray[np.intp],
    losses: Floats,
) -> dict[str, Floats]:
    """Each simulation's accuracy, macro F1, ROC AUC (NaN: a class without rows) and log loss
    of a window of `rows` rows of which `p` ((n, k) probabilities) are a uniform sample, as
    binary CBPE's with `rows`: each sampled row stands for `intervals.stood_for` rows, whose
    count in each class is drawn from the normal of its multinomial's mean and covariance
    (every figure is a sum over the sample's rows); `predicted` and `losses` are each row's
    class and log loss for each label."""
    n, k = p.shape
    at = np.arange(n)
    ranked = [intervals.Sorted(p[:, c]) for c in range(k)]
    found: dict[str, list[float]] = {"accuracy": [], "macro_f1": [], "roc_auc": [], "log_loss": []}
    weights = intervals.stood_for(rng, (simulations, n), rows)
    for s, weight in enumerate(weights):
        chance = q if calibrators is None else _recalibrated(p, calibrators[s])
        root = np.sqrt(chance)
        z = root * rng.standard_normal((n, k))
        # Covariance diag(q) - q q^T, a multinomial's, for each row's counts.
        counts = weight[:, None] * chance + np.sqrt(weight)[:, None] * (
            z - chance * z.sum(axis=1, keepdims=True)
        )
        total = weight.sum()
        hits = counts[at, predicted]
        true_positive = np.bincount(predicted, weights=hits, minlength=k)
        called = np.bincount(predicted, weights=weight, minlength=k)
        actual = counts.sum(axis=0)
        found["accuracy"].append(hits.sum() / total)
        found["macro_f1"].append(float(intervals.f1_scores(true_positive, called, actual).mean()))
        found["log_loss"].append(float((counts * losses).sum() / total))
        auc = []
        for c, sort in enumerate(ranked):
            n1 = actual[c]
            if not 0 < n1 < total:
                break
            ranks = sort.rank_sums(weight[None, sort.order], counts[sort.order, c][None])[0]
            auc.append((ranks - n1 * (n1 + 1) / 2) / (n1 * (total - n1)))
        found["roc_auc"].append(float(np.mean(auc)) if len(auc) == k else math.nan)
    return {name: np.array(values) for name, values in found.items()}


def cbpe_multiclass(
    scores: Floats,
    calibrated: Floats,
    confidence: float,
    *,
    calibrators: Resampled | None = None,
    simulations: int = 300,
    seed: int = 0,
    rows: int | None = None,
) -> dict[str, Interval | None]:
    """NannyML's multiclass CBPE of `scores` ((n, k) served probabilities) when each row's
    label is drawn from `calibrated`: expected accuracy, macro F1, one-vs-rest ROC AUC and
    log loss; intervals from labels simulated the same way, one simulation for each of
    `calibrators` when given (`resampled`, fitted once for any number of windows), from the
    scores recalibrated by it: the calibration's own uncertainty, as binary CBPE's `draws`.
    With `rows` above their number, `scores` are a uniform sample of a window of that many
    rows, and the intervals are of the whole window's metrics (`_beyond_sample`)."""
    # In rows' order, whatever the callers' layout, so that sums do not depend on it.
    p, q = np.ascontiguousarray(scores, dtype=float), np.ascontiguousarray(calibrated, dtype=float)
    n, k = p.shape
    predicted = p.argmax(axis=1)
    at = np.arange(n)
    f1 = intervals.f1_scores(
        np.bincount(predicted, weights=q[at, predicted], minlength=k),
        np.bincount(predicted, minlength=k),
        q.sum(axis=0),
    )
    losses = -np.log(np.clip(p, 1e-15, 1.0))
    count = len(calibrators) if calibrators else simulations
    rng = np.random.default_rng(seed)
    if rows is not None and rows > n:
        simulated = _beyond_sample(p, q, rows, count, rng, calibrators, predicted, losses)
    else:
        simulated = _simulated(p, _draw(p if calibrators else q, count, rng, calibrators))
    tail = (1 - confidence) / 2 * 100

    def interval(value: float, simulated: Floats) -> Interval:
        # Between the order statistics at (n + 1)·tail and (n + 1)·(1 - tail) of n simulations
        # lies a further draw with probability `confidence`, whatever n; numpy's default
        # positions hold (n - 1) / (n + 1) of it: 94.4% at 300 simulations, 93.7% at 150.
        low, high = np.percentile(simulated, [tail, 100 - tail], method="weibull")
        return Interval(value=value, low=float(low), high=float(high))

    aucs = [intervals.expected_auc(p[:, c], q[:, c]) for c in range(k)]
    simulated_auc = simulated["roc_auc"][np.isfinite(simulated["roc_auc"])]
    roc_auc = None
    if len(simulated_auc) and all(math.isfinite(a) for a in aucs):
        roc_auc = interval(float(np.mean(aucs)), simulated_auc)
    return {
        "accuracy": interval(float(q[at, predicted].mean()), simulated["accuracy"]),
        "macro_f1": interval(float(np.mean(f1)), simulated["macro_f1"]),
        "roc_auc": roc_auc,
        "log_loss": interval(float(np.sum(q * losses, axis=1).mean()), simulated["log_loss"]),
    }


def _simulated(p: Floats, labels: npt.NDArray[np.int32]) -> dict[str, Floats]:
    """Each simulation's accuracy, macro F1 (`macro_f1`'s), ROC AUC (NaN: a class without
    rows) and log loss of the rows `p` ((n, k) probabilities), labelled `labels`
    ((simulations, n)), a class at a time over every simulation."""
    n, k = p.shape
    predicted = p.argmax(axis=1)
    losses = -np.log(np.clip(p, 1e-15, 1.0))
    auc, f1 = np.empty((len(labels), k)), np.empty((len(labels), k))
    for c in range(k):
        positive = labels == c
        n1 = positive.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            auc[:, c] = (positive @ average_ranks(p[:, c]) - n1 * (n1 + 1) / 2) / (n1 * (n - n1))
        auc[(n1 == 0) | (n1 == n), c] = math.nan
        picked = predicted == c
        tp = (positive & picked).sum(axis=1).astype(float)
        f1[:, c] = intervals.f1_scores(tp, picked.sum(), n1)
    return {
        "accuracy": (labels == predicted).mean(axis=1),
        "macro_f1": f1.mean(axis=1),
        "roc_auc": auc.mean(axis=1),
        "log_loss": losses[np.arange(n), labels].mean(axis=1),
    }


def _matrix(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    categories: dict[str, list[str]],
    predictions: Floats,
) -> Floats:
    """The error models' inputs: numeric features, each category's index among the
    reference's (NaN when unseen or missing), and the prediction."""
    import pandas as pd

    columns = [
        pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float) for name in numeric
    ]
    for name in categorical:
        index = {value: i for i, value in enumerate(categories[name])}
        columns.append(
            np.array(
                [
                    index.get(str(v), np.nan) if v is not None and v == v else np.nan
                    for v in frame[name]
                ],
                dtype=float,
            )
        )
    columns.append(np.asarray(predictions, dtype=float))
    return np.column_stack(columns)


def _error_model(x: Floats, y: Floats, categorical: npt.NDArray[np.bool_], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(
        max_iter=100, categorical_features=categorical, random_state=seed, early_stopping=False
    )
    return model.fit(x, y)


@dataclass(frozen=True)
class DirectLoss:
    """NannyML's direct loss estimation for one regression version: models of each row's
    absolute and squared error, fitted on reference rows it never trained on, with their
    out-of-fold residual spread and bias there (the estimate's stated error)."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    categories: dict[str, list[str]]
    absolute: Any
    squared: Any
    spread: tuple[float, float]  # std of the out-of-fold residuals: absolute, squared
    bias: tuple[float, float]  # their mean
    rows: int

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        labels: Floats,
        predictions: Floats,
        numeric: Sequence[str],
        categorical: Sequence[str],
        *,
        seed: int = 0,
    ) -> DirectLoss:
        """Fit on reference rows with their labels and the version's predictions."""
        from sklearn.model_selection import KFold

        categories = {
            name: sorted({str(v) for v in frame[name] if v is not None and v == v})
            for name in categorical
        }
        x = _matrix(frame, numeric, categorical, categories, predictions)
        # A category index is a categorical split; a feature with too many values is ordinal.
        mask = np.array(
            [False] * len(numeric)
            + [len(categories[name]) <= 250 for name in categorical]
            + [False]
        )
        errors = np.asarray(predictions, dtype=float) - np.asarray(labels, dtype=float)
        targets = (np.abs(errors), errors**2)
        residuals = [np.zeros(len(x)), np.zeros(len(x))]
        for train, held in KFold(_FOLDS, shuffle=True, random_state=seed).split(x):
            for j, target in enumerate(targets):
                model = _error_model(x[train], target[train], mask, seed)
                residuals[j][held] = target[held] - np.maximum(model.predict(x[held]), 0.0)
        return cls(
            numeric=tuple(numeric),
            categorical=tuple(categorical),
            categories=categories,
            absolute=_error_model(x, targets[0], mask, seed),
            squared=_error_model(x, targets[1], mask, seed),
            spread=(float(residuals[0].std()), float(residuals[1].std())),
            bias=(float(residuals[0].mean()), float(residuals[1].mean())),
            rows=len(x),
        )

    def estimate(
        self,
        frame: pd.DataFrame,
        predictions: Floats,
        confidence: float,
        *,
        rows: int | None = None,
    ) -> dict[str, Interval]:
        """Expected MAE and RMSE of `predictions` on `frame`'s rows: the error models' mean,
        give or take their out-of-fold spread over the rows and their bias. With `rows`
        above their number, the rows are a uniform sample of a window of that many, and the
        interval is of the whole window's: the sample's expected error varies about the
        window's by (1 - n/rows) of its variance over n, and the residuals' spread is over
        `rows`."""
        from scipy.stats import norm

        x = _matrix(frame, self.numeric, self.categorical, self.categories, predictions)
        z = float(norm.ppf(0.5 + confidence / 2))
        n = len(x)
        found = []
        for j, model in enumerate((self.absolute, self.squared)):
            expected = np.maximum(model.predict(x), 0.0)
            value = float(expected.mean())
            variance = self.spread[j] ** 2 / n
            if rows is not None and rows > n:
                variance = (1 - n / rows) * float(expected.var()) / n + self.spread[j] ** 2 / rows
            half = z * math.sqrt(variance) + abs(self.bias[j])
            found.append((value, max(value - half, 0.0), value + half))
        (mae, mae_low, mae_high), (mse, mse_low, mse_high) = found
        return {
            "mae": Interval(value=mae, low=mae_low, high=mae_high),
            "rmse": Interval(
                value=math.sqrt(mse), low=math.sqrt(mse_low), high=math.sqrt(mse_high)
            ),
        }
