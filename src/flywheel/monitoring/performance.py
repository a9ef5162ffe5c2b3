"""Metrics on delayed labels, per task, with confidence intervals, and the version's own
offline figures beside them.

A binary classifier gets accuracy at 0.5 (Wilson interval), ROC AUC (DeLong's variance on
the logit scale; a score interval for a small class, `intervals.auc_interval`) and log loss
(normal interval). A multiclass one gets accuracy at its most probable class, macro F1
and the one-vs-rest macro ROC AUC (percentile bootstrap intervals), log loss, and per class
its recall, precision and ROC AUC. A regression gets RMSE, MAE and MAPE (normal intervals on
the mean squared, absolute and relative error) and R² (the delta method's interval,
`intervals.r2_interval`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from flywheel.config import MONITORED_METRICS, MonitoredMetric, Task
from flywheel.monitoring import intervals
from flywheel.monitoring.intervals import Interval
from flywheel.monitoring.twosample import average_ranks
from flywheel.records import Record

if TYPE_CHECKING:
    from flywheel.evaluation import ModelEvaluation

Floats = npt.NDArray[np.float64]
Codes = npt.NDArray[np.int64]


class ClassPerformance(Record):
    """One class of a multiclass model on the window's labels, against the rest."""

    support: int
    recall: Interval | None  # None: no labelled row of the class
    precision: Interval | None  # None: the class was never predicted
    roc_auc: Interval | None  # None: the class is absent, or alone


class Joined(Record):
    """The task's metrics over every labelled row of a window, from exact counts and sums.

    A classifier gets accuracy (Wilson interval), log loss (normal interval) and the
    confusion counts (`confusion[true][predicted]`, in the classes' order). Its ROC AUC is
    of its scores counted on 4,096 bins (a bin's scores tie), with DeLong's variance: a
    binary one's of the positive class, a multiclass one's one-vs-rest per class, and their
    macro average with the mean of the classes' bounds (`intervals.mean_of_intervals`). A
    multiclass one also gets macro F1 (the confusion counts bootstrapped) and per class its
    recall, precision and AUC. A regression gets RMSE, MAE and MAPE (normal intervals of the
    mean squared, absolute and relative error; no MAPE when a label is zero), R² (the delta
    method's interval) and the mean label and prediction."""

    labelled: int
    unusable_labels: int = 0
    accuracy: Interval | None = None
    roc_auc: Interval | None = None
    log_loss: Interval | None = None
    macro_f1: Interval | None = None
    per_class: dict[str, ClassPerformance] = Field(default={})
    confusion: tuple[tuple[int, ...], ...] | None = None
    rmse: Interval | None = None
    mae: Interval | None = None
    r2: Interval | None = None
    mape: Interval | None = None
    mean_label: float | None = None
    mean_prediction: float | None = None


class Performance(Record):
    """Metrics on the rows whose labels arrived, with confidence intervals; a metric of
    another task is None. `unusable_labels` counts labels that fit no row of the task: a class
    the version never learned, or a regression label that is not a number."""

    labelled: int
    accuracy: Interval | None = None
    roc_auc: Interval | None = None
    log_loss: Interval | None = None
    macro_f1: Interval | None = None
    per_class: dict[str, ClassPerformance] = Field(default={})
    rmse: Interval | None = None
    mae: Interval | None = None
    r2: Interval | None = None
    mape: Interval | None = None
    mean_label: float | None = None
    mean_prediction: float | None = None
    unusable_labels: int = 0
    # Over every labelled row, not the sample's (`monitoring.label_join: every`).
    every_label: Joined | None = None

    def get(self, metric: MonitoredMetric) -> Interval | None:
        """The interval of one monitored metric, over every labelled row when it was
        measured there, else over the sample's; or None."""
        value: Interval | None = getattr(self, metric)
        return getattr(self.every_label, metric, None) or value

    @property
    def classes(self) -> dict[str, ClassPerformance]:
        """Each class's figures, over every labelled row when they were measured there."""
        every = self.every_label
        return every.per_class if every is not None and every.per_class else self.per_class

    def labelled_for(self, metric: MonitoredMetric) -> int:
        """The labelled rows `get(metric)` measured."""
        every = self.every_label
        if every is not None and getattr(every, metric, None) is not None:
            return every.labelled
        return self.labelled


class Offline(Record):
    """The same metrics from the version's own evaluation, for comparison."""

    newest: dict[str, float | None]
    holdout: dict[str, float | None] | None
    # The rows `newest` was measured on: it is an estimate too (None: a record from before).
    newest_rows: int | None = None


def measure(
    task: Task,
    labels: npt.ArrayLike,
    outputs: Floats,
    confidence: float,
    *,
    classes: tuple[str, ...] = (),
    unusable: int = 0,
) -> Performance:
    """The task's metrics of `outputs` (n rows of class probabilities, or of one predicted
    value) against `labels` (class codes in `classes`' order, or values)."""
    if len(outputs) == 0:
        return Performance(labelled=0, unusable_labels=unusable)
    if task == "binary":
        found = _binary(np.asarray(labels, dtype=np.int64), outputs[:, -1], confidence)
    elif task == "multiclass":
        found = _multiclass(np.asarray(labels, dtype=np.int64), outputs, classes, confidence)
    else:
        found = _regression(np.asarray(labels, dtype=float), outputs[:, 0], confidence)
    return Performance(labelled=len(outputs), unusable_labels=unusable, **found)


def _binary(y: Codes, p: Floats, confidence: float) -> dict[str, Any]:
    right = int(((p >= 0.5).astype(int) == y).sum())
    return {
        "accuracy": intervals.wilson(right, len(y), confidence),
        "roc_auc": intervals.auc_interval(y, p, confidence),
        "log_loss": intervals.mean_interval(intervals.row_log_loss(y, p), confidence),
    }


def macro_f1(y: Codes, predicted: Codes, k: int) -> float:
    """scikit-learn's macro F1 over `k` classes (an absent, never predicted class scores 0)."""
    return float(macro_f1_of_counts(confusion(y, predicted, k)))


def confusion(y: Codes, predicted: Codes, k: int) -> Codes:
    """The confusion counts of `k` classes, `[true][predicted]`."""
    return np.bincount(y * k + predicted, minlength=k * k).reshape(k, k)


def macro_f1_of_counts(counts: npt.ArrayLike) -> Floats:
    """`macro_f1` of confusion counts (`[..., true, predicted]`), one per leading index."""
    cells = np.asarray(counts, dtype=float)
    hits = np.diagonal(cells, axis1=-2, axis2=-1)
    f1 = intervals.f1_scores(hits, cells.sum(axis=-2), cells.sum(axis=-1))
    return np.asarray(f1.mean(axis=-1), dtype=np.float64)


def class_performance(
    counts: Codes, c: int, roc_auc: Interval | None, confidence: float
) -> ClassPerformance:
    """Class `c`'s support, recall and precision from confusion counts, beside its AUC."""
    hits, support, called = int(counts[c, c]), int(counts[c].sum()), int(counts[:, c].sum())
    return ClassPerformance(
        support=support,
        recall=intervals.wilson(hits, support, confidence) if support else None,
        precision=intervals.wilson(hits, called, confidence) if called else None,
        roc_auc=roc_auc,
    )


def _auc(positive: npt.NDArray[np.bool_], scores: Floats) -> float:
    """ROC AUC by ranks (Mann-Whitney); NaN with one class."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def macro_auc(y: Codes, p: Floats) -> float:
    """The one-vs-rest ROC AUC, macro averaged (NaN unless every class is present)."""
    return float(np.mean([_auc(y == c, p[:, c]) for c in range(p.shape[1])]))


def _multiclass(y: Codes, p: Floats, classes: tuple[str, ...], confidence: float) -> dict[str, Any]:
    n, k = p.shape
    predicted = p.argmax(axis=1)
    chosen = np.clip(p[np.arange(n), y], 1e-15, 1.0)
    counts = confusion(y, predicted, k)
    per_class = {
        name: class_performance(
            counts, c, intervals.auc_interval((y == c).astype(int), p[:, c], confidence), confidence
        )
        for c, name in enumerate(classes or tuple(str(i) for i in range(k)))
    }
    auc = macro_auc(y, p)
    return {
        "accuracy": intervals.wilson(int(np.sum(predicted == y)), n, confidence),
        "log_loss": intervals.mean_interval(-np.log(chosen), confidence),
        "macro_f1": intervals.bootstrap(
            lambda i: macro_f1(y[i], predicted[i], k), n, macro_f1(y, predicted, k), confidence
        ),
        "roc_auc": None
        if math.isnan(auc)
        else intervals.bootstrap(lambda i: macro_auc(y[i], p[i]), n, auc, confidence),
        "per_class": per_class,
    }


def _regression(y: Floats, predicted: Floats, confidence: float) -> dict[str, Any]:
    errors = predicted - y
    squared = intervals.mean_interval(errors**2, confidence)
    zero = bool(np.isclose(y, 0.0).any())
    return {
        "rmse": intervals.rooted(squared),
        "mae": intervals.mean_interval(np.abs(errors), confidence),
        "r2": intervals.r2_interval(y, predicted, confidence),
        "mape": None if zero else intervals.mean_interval(np.abs(errors) / np.abs(y), confidence),
        "mean_label": float(y.mean()),
        "mean_prediction": float(predicted.mean()),
    }


def offline(evaluation: ModelEvaluation | None, task: Task) -> Offline | None:
    """The task's monitored metrics from the version's own evaluation."""
    if evaluation is None:
        return None

    def pick(scores: Any) -> dict[str, float | None]:
        values = {m: getattr(scores, m, None) for m in MONITORED_METRICS[task]}
        return {
            m: float(v) if isinstance(v, int | float) and math.isfinite(v) else None
            for m, v in values.items()
        }

    return Offline(
        newest=pick(evaluation.newest),
        holdout=pick(evaluation.holdout) if evaluation.holdout else None,
        newest_rows=evaluation.newest.rows,
    )
