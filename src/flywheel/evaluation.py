"""Evaluation of a candidate and the production model on the same rows.

The candidate is scored on its held-out split and on the newest batch. The
production model is scored on the newest batch only: the held-out rows may
overlap the data it was trained on, so only the newest batch is fair to both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from flywheel.config import FairnessSettings, FeatureSettings, Metric
from flywheel.records import Record

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from flywheel.predictor import Predictor

    Probabilities = npt.NDArray[np.float64]

# The models below are all the gate needs; numpy, pandas and scikit-learn are
# imported by the functions that compute scores, so the gate step starts quickly.
_CURVE_POINTS = 101


class Scores(Record):
    """Threshold-free and thresholded metrics on one set of rows."""

    rows: int
    positive_rate: float
    roc_auc: float
    average_precision: float
    accuracy: float
    balanced_accuracy: float
    f1: float
    log_loss: float
    brier: float
    confusion: tuple[tuple[int, int], tuple[int, int]]

    def get(self, metric: Metric) -> float:
        """The value of a promotion metric."""
        return float(getattr(self, metric))


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
    """One group of a protected attribute, at the 0.5 threshold."""

    rows: int
    positives: int
    true_positive_rate: float | None  # None: no positive rows
    selection_rate: float  # the share predicted positive
    calibration_error: float  # expected calibration error over 10 probability bins
    compared: bool  # enough rows (fairness.min_rows) to count in the gaps


class Fairness(Record):
    """Per-group scores and the gaps between the compared groups (largest minus smallest,
    Fairlearn's `between_groups` differences); a gap is None with fewer than two groups,
    and the equal-opportunity gap also with fewer than two holding actual positives."""

    attribute: str
    groups: dict[str, GroupScores]
    equal_opportunity_difference: float | None
    demographic_parity_difference: float | None
    calibration_gap: float | None


class ModelEvaluation(Record):
    """Everything measured about one model."""

    role: Literal["candidate", "production"]
    version: str | None
    newest: Scores
    holdout: Scores | None
    roc: Curve
    calibration: tuple[tuple[float, float], ...]
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
    newest_batch: str
    candidate: ModelEvaluation
    production: ModelEvaluation | None
    baselines: dict[str, BaselineEvaluation] = Field(default={})


def score(y: npt.ArrayLike, p: Probabilities, threshold: float = 0.5) -> Scores:
    """Metrics for labels `y` and positive-class probabilities `p`."""
    import numpy as np
    from sklearn import metrics

    y_true = np.asarray(y, dtype=int)
    predicted = (p >= threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    matrix = metrics.confusion_matrix(y_true, predicted, labels=[0, 1])
    return Scores(
        rows=len(y_true),
        positive_rate=float(y_true.mean()) if len(y_true) else 0.0,
        roc_auc=float(metrics.roc_auc_score(y_true, p)) if both else float("nan"),
        average_precision=float(metrics.average_precision_score(y_true, p))
        if both
        else float("nan"),
        accuracy=float(metrics.accuracy_score(y_true, predicted)),
        balanced_accuracy=float(metrics.balanced_accuracy_score(y_true, predicted)),
        f1=float(metrics.f1_score(y_true, predicted, zero_division=0)),
        log_loss=float(metrics.log_loss(y_true, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        brier=float(metrics.brier_score_loss(y_true, p)),
        confusion=((int(matrix[0, 0]), int(matrix[0, 1])), (int(matrix[1, 0]), int(matrix[1, 1]))),
    )


def roc(y: pd.Series, p: Probabilities) -> Curve:
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


def _bin(p: Probabilities, bins: int) -> npt.NDArray[np.int_]:
    """Each probability's bin of `bins` equal widths, 1.0 in the last."""
    import numpy as np

    which: npt.NDArray[np.int_] = np.minimum((p * bins).astype(int), bins - 1)
    return which


def calibration(y: pd.Series, p: Probabilities, bins: int = 10) -> tuple[tuple[float, float], ...]:
    """(mean predicted, observed rate) per probability bin that has rows."""
    import numpy as np

    y_true = np.asarray(y, dtype=float)
    which = _bin(p, bins)
    return tuple(
        (float(p[which == b].mean()), float(y_true[which == b].mean()))
        for b in range(bins)
        if (which == b).any()
    )


def slice_scores(
    frame: pd.DataFrame, y: pd.Series, p: Probabilities, columns: Sequence[str], metric: Metric
) -> dict[str, dict[str, SliceScore]]:
    """The promotion metric for every value of each categorical column."""
    import numpy as np

    out: dict[str, dict[str, SliceScore]] = {}
    y_arr = np.asarray(y, dtype=int)
    for column in columns:
        values = frame[column].astype(object).where(frame[column].notna(), "(missing)")
        out[column] = {}
        for value in sorted({str(v) for v in values}):
            mask = (values.astype(str) == value).to_numpy()
            rows = int(mask.sum())
            if rows == 0:
                continue
            result = score(y_arr[mask], p[mask]).get(metric)
            out[column][value] = SliceScore(rows=rows, value=None if np.isnan(result) else result)
    return out


def expected_calibration_error(y: npt.ArrayLike, p: Probabilities, bins: int = 10) -> float:
    """The rows' weighted mean gap between predicted and observed rates, per probability bin."""
    import numpy as np

    y_true = np.asarray(y, dtype=float)
    if not len(y_true):
        return 0.0
    which = _bin(p, bins)
    gaps = np.abs(
        np.bincount(which, weights=p, minlength=bins)
        - np.bincount(which, weights=y_true, minlength=bins)
    )
    return float(gaps.sum() / len(y_true))


def group_fairness(
    frame: pd.DataFrame, y: pd.Series, p: Probabilities, settings: FairnessSettings
) -> Fairness:
    """Per-group rates of one protected attribute, and the gaps between groups of enough rows."""
    import numpy as np

    column = frame[settings.attribute]
    values = column.astype(object).where(column.notna(), "(missing)").astype(str).to_numpy()
    y_arr = np.asarray(y, dtype=int)
    predicted = p >= 0.5
    groups: dict[str, GroupScores] = {}
    for value in sorted(set(values)):
        mask = values == value
        positives = int(y_arr[mask].sum())
        groups[value] = GroupScores(
            rows=int(mask.sum()),
            positives=positives,
            true_positive_rate=float(predicted[mask & (y_arr == 1)].mean()) if positives else None,
            selection_rate=float(predicted[mask].mean()),
            calibration_error=expected_calibration_error(y_arr[mask], p[mask]),
            compared=int(mask.sum()) >= settings.min_rows,
        )

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
    )


def evaluate_baseline(
    predictor: Predictor, newest: pd.DataFrame, holdout: pd.DataFrame, features: FeatureSettings
) -> BaselineEvaluation:
    """Score a baseline on the candidate's two sets of rows."""
    return BaselineEvaluation(
        newest=score(*_labelled(predictor, newest, features)),
        holdout=score(*_labelled(predictor, holdout, features)),
    )


def _labelled(
    predictor: Predictor, rows: pd.DataFrame, features: FeatureSettings
) -> tuple[pd.Series, Probabilities]:
    """The rows' true labels and the model's positive-class probabilities for them."""
    import pandas as pd

    return pd.to_numeric(rows[features.label]).astype(int), predictor.predict_proba(rows)[:, 1]


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
    gaps between the groups of `fairness.attribute` there."""
    y_new, p_new = _labelled(predictor, newest, features)
    holdout_scores = None if holdout is None else score(*_labelled(predictor, holdout, features))
    return ModelEvaluation(
        role=role,
        version=version,
        newest=score(y_new, p_new),
        holdout=holdout_scores,
        roc=roc(y_new, p_new),
        calibration=calibration(y_new, p_new),
        slices=slice_scores(newest, y_new, p_new, features.categorical, metric),
        fairness=None if fairness is None else group_fairness(newest, y_new, p_new, fairness),
    )


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """An evaluation's headline numbers as flat names, for Kubeflow Metrics and the registry."""
    out: dict[str, float] = {}
    for role in ("candidate", "production"):
        for split in ("newest", "holdout"):
            scores = (result.get(role) or {}).get(split) or {}
            for name in ("roc_auc", "average_precision", "accuracy", "f1", "log_loss"):
                value = scores.get(name)
                if isinstance(value, float) and value == value:  # skip NaN
                    out[f"{role}_{split}_{name}"] = round(value, 6)
    for feature, measured in ((result.get("candidate") or {}).get("importance") or {}).items():
        out[f"candidate_importance_{feature}"] = round(measured["mean"], 6)
    for name, baseline in sorted((result.get("baselines") or {}).items()):
        for metric in ("roc_auc", "accuracy"):
            value = baseline["newest"].get(metric)
            if isinstance(value, float) and value == value:
                out[f"baseline_{name}_newest_{metric}"] = round(value, 6)
    groups = (result.get("candidate") or {}).get("fairness") or {}
    for gap in ("equal_opportunity_difference", "demographic_parity_difference", "calibration_gap"):
        if isinstance(groups.get(gap), float):
            out[f"candidate_{gap}"] = round(groups[gap], 6)
    return out
