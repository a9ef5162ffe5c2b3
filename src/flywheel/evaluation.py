"""Evaluation of a candidate and the production model on the same rows.

The candidate is scored on its held-out split and on the newest batch. The
production model is scored on the newest batch only: the held-out rows may
overlap the data it was trained on, so only the newest batch is fair to both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from flywheel.config import FeatureSettings, Metric

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from flywheel.predictor import Predictor

    Probabilities = npt.NDArray[np.float64]

# The models below are all the gate needs; numpy, pandas and scikit-learn are
# imported by the functions that compute scores, so the gate step starts quickly.
_CURVE_POINTS = 101


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Scores(_Frozen):
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


class Curve(_Frozen):
    """An ROC curve, thinned to at most about a hundred points for the Kubeflow UI."""

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    thresholds: tuple[float, ...]


class SliceScore(_Frozen):
    """The promotion metric on the rows of one categorical value."""

    rows: int
    value: float | None


class FeatureImportance(_Frozen):
    """What one feature adds to the model, and what it costs (see flywheel.importance).

    `mean` and `std` are the drop in the promotion metric when the feature is shuffled,
    over the repeats; `low` and `high` bound a t interval of the mean. The shares are
    of the model's whole preprocessing time and scoring work, summing to 1 over features.
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


class ModelEvaluation(_Frozen):
    """Everything measured about one model."""

    role: Literal["candidate", "production"]
    version: str | None
    newest: Scores
    holdout: Scores | None
    roc: Curve
    calibration: tuple[tuple[float, float], ...]
    slices: dict[str, dict[str, SliceScore]]
    # The candidate's, on its holdout; how it was measured is in importance_method.
    importance: dict[str, FeatureImportance] | None = None
    importance_method: str | None = None


class Evaluation(_Frozen):
    """The candidate and, when there is one, the production model, side by side."""

    metric: Metric
    newest_batch: str
    candidate: ModelEvaluation
    production: ModelEvaluation | None


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


def calibration(y: pd.Series, p: Probabilities, bins: int = 10) -> tuple[tuple[float, float], ...]:
    """(mean predicted, observed rate) per probability bin that has rows."""
    import numpy as np

    y_true = np.asarray(y, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
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


def evaluate_model(
    predictor: Predictor,
    role: Literal["candidate", "production"],
    version: str | None,
    newest: pd.DataFrame,
    holdout: pd.DataFrame | None,
    features: FeatureSettings,
    metric: Metric,
) -> ModelEvaluation:
    """Score one model on the newest batch (and the holdout, for the candidate)."""
    import pandas as pd

    y_new = pd.to_numeric(newest[features.label]).astype(int)
    p_new = predictor.predict_proba(newest)[:, 1]
    holdout_scores = None
    if holdout is not None:
        p_hold = predictor.predict_proba(holdout)[:, 1]
        holdout_scores = score(pd.to_numeric(holdout[features.label]).astype(int), p_hold)
    return ModelEvaluation(
        role=role,
        version=version,
        newest=score(y_new, p_new),
        holdout=holdout_scores,
        roc=roc(y_new, p_new),
        calibration=calibration(y_new, p_new),
        slices=slice_scores(newest, y_new, p_new, features.categorical, metric),
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
    return out
