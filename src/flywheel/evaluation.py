"""Evaluation of a candidate and the production model on the same rows.

The candidate is scored on its held-out split and on the newest batch. The
production model is scored on the newest batch only: the held-out rows may
overlap the data it was trained on, so only the newest batch is fair to both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from flywheel.config import FairnessSettings, FeatureSettings, Metric, Task
from flywheel.problem import Problem, from_model
from flywheel.records import Record

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from flywheel.predictor import Predictor

    Probabilities = npt.NDArray[np.float64]

log = logging.getLogger(__name__)

# The models below are all the gate needs; numpy, pandas and scikit-learn are
# imported by the functions that compute scores, so the gate step starts quickly.
_CURVE_POINTS = 101


class ClassScores(Record):
    """One class of a multiclass model, against the rest."""

    support: int
    precision: float
    recall: float
    f1: float
    roc_auc: float | None  # None: the class is absent, or alone


class Scores(Record):
    """The task's metrics on one set of rows; a metric of another task is None.

    A classifier's are at its most probable class (a binary one's at P >= 0.5), its
    roc_auc one-vs-rest, macro averaged, for more than two classes; `confusion` is N x N,
    actual by predicted, in the classes' order. A regression's mape is None when a label
    is zero.
    """

    rows: int
    task: Task = "binary"
    positive_rate: float | None = None
    roc_auc: float | None = None
    average_precision: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    f1: float | None = None
    macro_f1: float | None = None
    weighted_f1: float | None = None
    log_loss: float | None = None
    brier: float | None = None
    confusion: tuple[tuple[int, ...], ...] = ()
    per_class: dict[str, ClassScores] = Field(default={})
    rmse: float | None = None
    mae: float | None = None
    r2: float | None = None
    mape: float | None = None
    mean_label: float | None = None
    mean_prediction: float | None = None

    def get(self, metric: Metric) -> float:
        """The value of a promotion metric (NaN when it is undefined on these rows)."""
        value = getattr(self, metric)
        return float("nan") if value is None else float(value)


class Curve(Record):
    """An ROC curve, thinned to at most about a hundred points for the Kubeflow UI."""

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    thresholds: tuple[float, ...]


class SliceScore(Record):
    """The promotion metric on the rows of one categorical value."""

    rows: int
    value: float | None


class FeatureImportance(Record):
    """What one feature adds to the model, and what it costs (see flywheel.importance).

    `mean` and `std` are the drop in the promotion metric when the feature is shuffled,
    over the repeats; `low` and `high` bound a t interval: with `resample` (the default),
    each repeat scores a bootstrap resample of the holdout and the interval is the
    importance's own (mean plus or minus t times `std`); without it, the interval is of
    the mean drop on these rows (t times `std` over the square root of the repeats). The
    shares are of the model's whole preprocessing time and scoring work, summing to 1
    over features.
    """

    mean: float
    std: float
    low: float
    high: float
    preprocess_us_per_row: float
    preprocess_share: float
    scoring_share: float
    bytes_per_row: float
    encoded_columns: int

    @property
    def matters(self) -> bool:
        """The interval lies above zero: shuffling the feature measurably hurts the model."""
        return self.low > 0


class GroupScores(Record):
    """One group of a protected attribute: a binary classifier's rates at the 0.5 threshold,
    and any task's error (misclassification rate, or mean absolute error)."""

    rows: int
    positives: int = 0
    true_positive_rate: float | None = None  # None: no positive rows, or not binary
    selection_rate: float | None = None  # the share predicted positive
    calibration_error: float | None = None  # expected calibration error, 10 probability bins
    error: float | None = None
    compared: bool  # enough rows (fairness.min_rows) to count in the gaps


class Fairness(Record):
    """Per-group scores and the gaps between the compared groups (largest minus smallest,
    Fairlearn's `between_groups` differences); a gap is None with fewer than two groups,
    and the equal-opportunity gap also with fewer than two holding actual positives. The
    rate gaps are a binary classifier's; the error gap is any task's."""

    attribute: str
    groups: dict[str, GroupScores]
    equal_opportunity_difference: float | None = None
    demographic_parity_difference: float | None = None
    calibration_gap: float | None = None
    error_gap: float | None = None


class ModelEvaluation(Record):
    """Everything measured about one model on the newest batch: a binary classifier's ROC
    curve and calibration; a multiclass one's per class, one-vs-rest; a regression's
    predicted against actual values (a sample of at most RESIDUAL_POINTS)."""

    role: Literal["candidate", "production"]
    version: str | None
    newest: Scores
    holdout: Scores | None
    roc: Curve | None = None
    calibration: tuple[tuple[float, float], ...] = ()
    # A binary classifier's (score, label) on the newest batch, a seeded sample of at most
    # SCORE_SAMPLE: prediction drift's reference and the calibration set CBPE resamples.
    scores_sample: tuple[tuple[float, int], ...] = ()
    roc_per_class: dict[str, Curve] = Field(default={})
    calibration_per_class: dict[str, tuple[tuple[float, float], ...]] = Field(default={})
    # A multiclass one's (probabilities, class code), as scores_sample: the calibration set
    # multiclass CBPE resamples.
    probabilities_sample: tuple[tuple[tuple[float, ...], int], ...] = ()
    predicted_actual: tuple[tuple[float, float], ...] = ()
    slices: dict[str, dict[str, SliceScore]]
    fairness: Fairness | None = None
    # The candidate's, on its holdout; how it was measured is in importance_method.
    importance: dict[str, FeatureImportance] | None = None
    importance_method: str | None = None


class BaselineEvaluation(Record):
    """A simpler model (promotion.baseline) scored on the candidate's rows."""

    newest: Scores
    holdout: Scores


class Evaluation(Record):
    """The candidate and, when there is one, the production model, side by side; and the
    simpler models the candidate must beat, by name."""

    metric: Metric
    task: Task = "binary"
    classes: tuple[str, ...] = ()
    newest_batch: str
    candidate: ModelEvaluation
    production: ModelEvaluation | None
    baselines: dict[str, BaselineEvaluation] = Field(default={})


RESIDUAL_POINTS = 400
SCORE_SAMPLE = 5000


def score(y: npt.ArrayLike, p: Probabilities, task: Task = "binary") -> Scores:
    """The task's metrics for labels `y` and answers `p`: class codes and P(positive)
    (or both columns) for binary; class codes and an (n, k) probability array for
    multiclass; values and predicted values for regression."""
    import numpy as np

    answers = np.asarray(p, dtype=float)
    if task == "regression":
        return _regression_scores(
            np.asarray(y, dtype=float), answers.reshape(len(answers), -1)[:, 0]
        )
    y_true = np.asarray(y, dtype=int)
    if task == "binary":
        positive = answers[:, -1] if answers.ndim == 2 else answers
        return _binary_scores(y_true, positive)
    return _multiclass_scores(y_true, answers)


def _binary_scores(y_true: npt.NDArray[np.int_], p: Probabilities) -> Scores:
    import numpy as np
    from sklearn import metrics

    predicted = (p >= 0.5).astype(int)
    both = len(np.unique(y_true)) == 2
    matrix = metrics.confusion_matrix(y_true, predicted, labels=[0, 1])
    f1 = float(metrics.f1_score(y_true, predicted, zero_division=0))
    return Scores(
        rows=len(y_true),
        task="binary",
        positive_rate=float(y_true.mean()) if len(y_true) else 0.0,
        roc_auc=float(metrics.roc_auc_score(y_true, p)) if both else None,
        average_precision=float(metrics.average_precision_score(y_true, p)) if both else None,
        accuracy=float(metrics.accuracy_score(y_true, predicted)),
        balanced_accuracy=float(metrics.balanced_accuracy_score(y_true, predicted)),
        f1=f1,
        macro_f1=float(metrics.f1_score(y_true, predicted, average="macro", zero_division=0)),
        weighted_f1=float(metrics.f1_score(y_true, predicted, average="weighted", zero_division=0)),
        log_loss=float(metrics.log_loss(y_true, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        brier=float(metrics.brier_score_loss(y_true, p, pos_label=1)),
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
    )


def _multiclass_scores(y_true: npt.NDArray[np.int_], p: Probabilities) -> Scores:
    import numpy as np
    from sklearn import metrics

    k = p.shape[1]
    labels = list(range(k))
    predicted = p.argmax(axis=1)
    present = np.unique(y_true)
    roc_auc = None
    if len(present) == k:
        roc_auc = float(metrics.roc_auc_score(y_true, p, multi_class="ovr", average="macro"))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0
    )
    per_class = {}
    for c in labels:
        actual = y_true == c
        alone = actual.all() or not actual.any()
        per_class[str(c)] = ClassScores(
            support=int(support[c]),
            precision=float(precision[c]),
            recall=float(recall[c]),
            f1=float(f1[c]),
            roc_auc=None if alone else float(metrics.roc_auc_score(actual, p[:, c])),
        )
    matrix = metrics.confusion_matrix(y_true, predicted, labels=labels)
    return Scores(
        rows=len(y_true),
        task="multiclass",
        roc_auc=roc_auc,
        accuracy=float(metrics.accuracy_score(y_true, predicted)),
        balanced_accuracy=float(metrics.balanced_accuracy_score(y_true, predicted)),
        macro_f1=float(metrics.f1_score(y_true, predicted, average="macro", zero_division=0)),
        weighted_f1=float(metrics.f1_score(y_true, predicted, average="weighted", zero_division=0)),
        log_loss=float(metrics.log_loss(y_true, np.clip(p, 1e-15, 1), labels=labels)),
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
        per_class=per_class,
    )


def _regression_scores(y_true: npt.NDArray[np.float64], predicted: Probabilities) -> Scores:
    import numpy as np
    from sklearn import metrics

    if not len(y_true):
        return Scores(rows=0, task="regression")
    errors = predicted - y_true
    zero = np.isclose(y_true, 0.0).any()
    return Scores(
        rows=len(y_true),
        task="regression",
        rmse=float(np.sqrt(np.mean(errors**2))),
        mae=float(np.mean(np.abs(errors))),
        r2=float(metrics.r2_score(y_true, predicted)) if len(y_true) > 1 else None,
        mape=None if zero else float(metrics.mean_absolute_percentage_error(y_true, predicted)),
        mean_label=float(y_true.mean()),
        mean_prediction=float(predicted.mean()),
    )


def roc(y: npt.ArrayLike, p: Probabilities) -> Curve:
    """The ROC curve, thinned to evenly spaced points."""
    import numpy as np
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(y, dtype=int), p)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), _CURVE_POINTS)).astype(int))
    # The first threshold is +inf; the Kubeflow UI wants finite numbers.
    finite = np.minimum(thresholds[keep], 1.0)
    return Curve(
        fpr=tuple(float(v) for v in fpr[keep]),
        tpr=tuple(float(v) for v in tpr[keep]),
        thresholds=tuple(float(v) for v in finite),
    )


# Bins of a reliability curve (`calibration`), equal widths of probability.
CALIBRATION_BINS = 10


def bin_of(p: Probabilities, bins: int) -> npt.NDArray[np.int_]:
    """Each probability's bin of `bins` equal widths, 1.0 in the last."""
    import numpy as np

    which: npt.NDArray[np.int_] = np.minimum((p * bins).astype(int), bins - 1)
    return which


def calibration(
    y: npt.ArrayLike, p: Probabilities, bins: int = CALIBRATION_BINS
) -> tuple[tuple[float, float], ...]:
    """(mean predicted, observed rate) per probability bin that has rows."""
    import numpy as np

    y_true = np.asarray(y, dtype=float)
    which = bin_of(p, bins)
    # By sums per bin: a version's resampled calibrators fit hundreds of curves.
    counts = np.bincount(which, minlength=bins)
    scores = np.bincount(which, weights=p, minlength=bins)
    rates = np.bincount(which, weights=y_true, minlength=bins)
    return tuple(
        (float(scores[b] / counts[b]), float(rates[b] / counts[b]))
        for b in range(bins)
        if counts[b]
    )


def slice_scores(
    frame: pd.DataFrame,
    y: npt.ArrayLike,
    p: Probabilities,
    columns: Sequence[str],
    metric: Metric,
    task: Task = "binary",
) -> dict[str, dict[str, SliceScore]]:
    """The promotion metric for every value of each categorical column."""
    import numpy as np

    out: dict[str, dict[str, SliceScore]] = {}
    y_arr = np.asarray(y)
    for column in columns:
        values = frame[column].astype(object).where(frame[column].notna(), "(missing)")
        out[column] = {}
        for value in sorted({str(v) for v in values}):
            mask = (values.astype(str) == value).to_numpy()
            rows = int(mask.sum())
            if rows == 0:
                continue
            result = score(y_arr[mask], p[mask], task).get(metric)
            out[column][value] = SliceScore(rows=rows, value=None if np.isnan(result) else result)
    return out


def expected_calibration_error(y: npt.ArrayLike, p: Probabilities, bins: int = 10) -> float:
    """The rows' weighted mean gap between predicted and observed rates, per probability bin."""
    import numpy as np

    y_true = np.asarray(y, dtype=float)
    if not len(y_true):
        return 0.0
    which = bin_of(p, bins)
    gaps = np.abs(
        np.bincount(which, weights=p, minlength=bins)
        - np.bincount(which, weights=y_true, minlength=bins)
    )
    return float(gaps.sum() / len(y_true))


def group_fairness(
    frame: pd.DataFrame,
    y: npt.ArrayLike,
    p: Probabilities,
    settings: FairnessSettings,
    task: Task = "binary",
) -> Fairness:
    """Per-group rates and errors of one protected attribute, and the gaps between groups of
    enough rows."""
    import numpy as np

    column = frame[settings.attribute]
    values = column.astype(object).where(column.notna(), "(missing)").astype(str).to_numpy()
    binary = task == "binary"
    positive = None  # a binary classifier's P(positive class)
    if task == "regression":
        y_arr = np.asarray(y, dtype=float)
        errors = np.abs(p.reshape(len(p), -1)[:, 0] - y_arr)
    else:
        y_arr = np.asarray(y, dtype=int)
        positive = (p[:, -1] if p.ndim == 2 else p) if binary else None
        predicted = (positive >= 0.5).astype(int) if positive is not None else p.argmax(axis=1)
        errors = (predicted != y_arr).astype(float)
    groups: dict[str, GroupScores] = {}
    for value in sorted(set(values)):
        mask = values == value
        rows = int(mask.sum())
        group = GroupScores(
            rows=rows, error=float(errors[mask].mean()), compared=rows >= settings.min_rows
        )
        if positive is not None:
            positives = int(y_arr[mask].sum())
            chosen = positive >= 0.5
            group = group.model_copy(
                update={
                    "positives": positives,
                    "true_positive_rate": float(chosen[mask & (y_arr == 1)].mean())
                    if positives
                    else None,
                    "selection_rate": float(chosen[mask].mean()),
                    "calibration_error": expected_calibration_error(y_arr[mask], positive[mask]),
                }
            )
        groups[value] = group

    def gap(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) - min(known) if len(known) >= 2 else None

    compared = [g for g in groups.values() if g.compared]
    return Fairness(
        attribute=settings.attribute,
        groups=groups,
        equal_opportunity_difference=gap([g.true_positive_rate for g in compared]),
        demographic_parity_difference=gap([g.selection_rate for g in compared]),
        calibration_gap=gap([g.calibration_error for g in compared]),
        error_gap=gap([g.error for g in compared]),
    )


def evaluate_baseline(
    predictor: Predictor, newest: pd.DataFrame, holdout: pd.DataFrame, features: FeatureSettings
) -> BaselineEvaluation:
    """Score a baseline on the candidate's two sets of rows."""
    problem = _problem(predictor, features)
    return BaselineEvaluation(
        newest=score(*labelled(predictor, newest, problem), problem.task),
        holdout=score(*labelled(predictor, holdout, problem), problem.task),
    )


def _problem(predictor: Predictor, features: FeatureSettings) -> Problem:
    return from_model(predictor.model, features.label)


def labelled(
    predictor: Predictor, rows: pd.DataFrame, problem: Problem
) -> tuple[npt.NDArray[Any], Probabilities]:
    """The rows' true labels (class codes, or values) and the model's answers for them."""
    column = rows[problem.label]
    labels = problem.codes(column) if problem.is_classifier else problem.targets(column)
    return labels, predictor.outputs(rows)


def evaluate_model(
    predictor: Predictor,
    role: Literal["candidate", "production"],
    version: str | None,
    newest: pd.DataFrame,
    holdout: pd.DataFrame | None,
    features: FeatureSettings,
    metric: Metric,
    fairness: FairnessSettings | None = None,
) -> ModelEvaluation:
    """Score one model on the newest batch (and the holdout, for the candidate), with the
    gaps between the groups of `fairness.attribute` there. Rows of a class the model never
    learned (a production model, after a class was added) are left out of its scores."""
    problem = _problem(predictor, features)
    task = problem.task
    known = problem.known(newest[problem.label])
    if not known.all():
        log.info(
            "%s: %d rows of a class it never learned are left out of its scores",
            role,
            int((~known).sum()),
        )
        newest = newest[known]
    y_new, p_new = labelled(predictor, newest, problem)
    holdout_scores = (
        None if holdout is None else score(*labelled(predictor, holdout, problem), task)
    )
    return ModelEvaluation(
        role=role,
        version=version,
        newest=score(y_new, p_new, task),
        holdout=holdout_scores,
        **_curves(y_new, p_new, problem),
        slices=slice_scores(newest, y_new, p_new, features.categorical, metric, task),
        fairness=None if fairness is None else group_fairness(newest, y_new, p_new, fairness, task),
    )


def _curves(y: npt.NDArray[Any], p: Probabilities, problem: Problem) -> dict[str, Any]:
    """The task's plots' data: ROC and calibration (per class, one-vs-rest, for more than two
    classes), or a sample of predicted against actual values."""
    import numpy as np

    if problem.task == "binary":
        positive = p[:, -1]
        curve = roc(y, positive) if len(np.unique(y)) == 2 else None
        kept = np.random.default_rng(0).permutation(len(y))[:SCORE_SAMPLE]
        return {
            "roc": curve,
            "calibration": calibration(y, positive),
            "scores_sample": tuple((round(float(positive[i]), 9), int(y[i])) for i in sorted(kept)),
        }
    if problem.task == "multiclass":
        rocs, calibrations = {}, {}
        for code, name in enumerate(problem.output_names):
            actual = (np.asarray(y) == code).astype(int)
            if 0 < actual.sum() < len(actual):
                rocs[name] = roc(actual, p[:, code])
            calibrations[name] = calibration(actual, p[:, code])
        kept = np.random.default_rng(0).permutation(len(y))[:SCORE_SAMPLE]
        sample = tuple((tuple(round(float(v), 9) for v in p[i]), int(y[i])) for i in sorted(kept))
        return {
            "roc_per_class": rocs,
            "calibration_per_class": calibrations,
            "probabilities_sample": sample,
        }
    rng = np.random.default_rng(0)
    pick = rng.choice(len(y), size=min(len(y), RESIDUAL_POINTS), replace=False)
    return {
        "predicted_actual": tuple(
            (round(float(p[i, 0]), 6), round(float(y[i]), 6)) for i in sorted(pick)
        )
    }


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """An evaluation's headline numbers as flat names, for Kubeflow Metrics and the registry."""
    out: dict[str, float] = {}
    names = HEADLINE.get(result.get("task", "binary"), HEADLINE["binary"])
    for role in ("candidate", "production"):
        for split in ("newest", "holdout"):
            scores = (result.get(role) or {}).get(split) or {}
            for name in names:
                value = scores.get(name)
                if isinstance(value, float) and value == value:  # skip NaN
                    out[f"{role}_{split}_{name}"] = round(value, 6)
    for feature, measured in ((result.get("candidate") or {}).get("importance") or {}).items():
        out[f"candidate_importance_{feature}"] = round(measured["mean"], 6)
    metric = result.get("metric", "roc_auc")
    for name, baseline in sorted((result.get("baselines") or {}).items()):
        for shown in dict.fromkeys((metric, "accuracy" if metric != "r2" else "rmse")):
            value = baseline["newest"].get(shown)
            if isinstance(value, float) and value == value:
                out[f"baseline_{name}_newest_{shown}"] = round(value, 6)
    groups = (result.get("candidate") or {}).get("fairness") or {}
    for gap in (
        "equal_opportunity_difference",
        "demographic_parity_difference",
        "calibration_gap",
        "error_gap",
    ):
        if isinstance(groups.get(gap), float):
            out[f"candidate_{gap}"] = round(groups[gap], 6)
    return out


# The metrics each task's runs show in Kubeflow and the registry.
HEADLINE: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "average_precision", "accuracy", "f1", "log_loss"),
    "multiclass": ("roc_auc", "accuracy", "macro_f1", "weighted_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2", "mape"),
}
