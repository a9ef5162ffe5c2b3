"""The model: the estimator and its search, and the gate a candidate must pass to be promoted."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from flywheel.config.base import LOWER_IS_BETTER as LOWER_IS_BETTER
from flywheel.config.base import TASKS as TASKS
from flywheel.config.base import Column, Fraction, Scalar, Strict
from flywheel.config.base import Metric as Metric
from flywheel.config.base import Task as Task
from flywheel.config.estimators import sklearn_name_exists, sklearn_path

_CLASSIFICATION: frozenset[Task] = frozenset({"binary", "multiclass"})
# The tasks each metric is defined for. roc_auc of a multiclass model is one-vs-rest, macro
# averaged; f1 and average_precision are of the positive class, so binary only.
METRIC_TASKS: dict[Metric, frozenset[Task]] = {
    "roc_auc": _CLASSIFICATION,
    "average_precision": frozenset({"binary"}),
    "accuracy": _CLASSIFICATION,
    "balanced_accuracy": _CLASSIFICATION,
    "f1": frozenset({"binary"}),
    "macro_f1": _CLASSIFICATION,
    "weighted_f1": _CLASSIFICATION,
    "log_loss": _CLASSIFICATION,
    "rmse": frozenset({"regression"}),
    "mae": frozenset({"regression"}),
    "r2": frozenset({"regression"}),
    "mape": frozenset({"regression"}),
}
DEFAULT_METRIC: dict[Task, Metric] = {
    "binary": "roc_auc",
    "multiclass": "roc_auc",
    "regression": "r2",
}
DEFAULT_ESTIMATOR: dict[Task, str] = {
    "binary": "sklearn.ensemble.HistGradientBoostingClassifier",
    "multiclass": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}
DEFAULT_BASELINE: dict[Task, str] = {
    "binary": "sklearn.linear_model.LogisticRegression",
    "multiclass": "sklearn.linear_model.LogisticRegression",
    "regression": "sklearn.linear_model.Ridge",
}


def check_metric(metric: Metric, task: Task, key: str) -> None:
    """A ValueError naming `key` when `metric` is not defined for `task`."""
    if task not in METRIC_TASKS[metric]:
        fits = ", ".join(m for m, tasks in METRIC_TASKS.items() if task in tasks)
        raise ValueError(f"{key}: {metric} is not a {task} metric (one of: {fits})")


def better(metric: Metric) -> str:
    """'higher' or 'lower': which way `metric` improves."""
    return "lower" if metric in LOWER_IS_BETTER else "higher"


class SearchSettings(Strict):
    """An optional small randomized hyper-parameter search."""

    enabled: bool = False
    n_iter: int = Field(default=4, ge=1, le=200)
    cv: int = Field(default=3, ge=2, le=10)
    space: dict[str, tuple[Scalar, ...]] = Field(default={})

    @field_validator("space")
    @classmethod
    def _non_empty_choices(
        cls, space: dict[str, tuple[Scalar, ...]]
    ) -> dict[str, tuple[Scalar, ...]]:
        for name, choices in space.items():
            if not choices:
                raise ValueError(f"search space for {name!r} has no values")
        return space


class ModelSettings(Strict):
    """The learning problem and the scikit-learn estimator at the end of the training Pipeline."""

    task: Task | None = Field(
        default=None,
        description="binary, multiclass or regression; null: inferred from the label "
        "(scikit-learn's type_of_target), and the run says which",
    )
    estimator: str | None = Field(
        default=None,
        description="A dotted path inside sklearn; null: the task's default "
        "(HistGradientBoostingClassifier, or HistGradientBoostingRegressor for regression)",
    )
    params: dict[str, Scalar] = Field(default={})
    search: SearchSettings = SearchSettings()
    test_size: float = Field(default=0.2, gt=0, lt=0.9)
    seed: int = 42

    @field_validator("estimator")
    @classmethod
    def _sklearn_only(cls, value: str | None) -> str | None:
        return None if value is None else sklearn_path(value)

    def estimator_for(self, task: Task) -> str:
        """The configured estimator, or the task's default."""
        return self.estimator or DEFAULT_ESTIMATOR[task]


class SliceCheck(Strict):
    """A bound on the promotion metric on every value of one categorical column: a minimum
    for a metric where higher is better, a maximum for an error (rmse, mae, mape, log_loss)."""

    column: Column
    min_metric: float | None = None
    max_metric: float | None = None
    min_rows: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _one_bound(self) -> SliceCheck:
        if (self.min_metric is None) == (self.max_metric is None):
            raise ValueError("give min_metric or max_metric (one of them)")
        return self


class ImportanceSettings(Strict):
    """Permutation importance of each feature on the holdout, and what the gate does with it."""

    repeats: int = Field(default=5, ge=2, le=100, description="Shuffles per feature")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Of the t interval")
    resample: bool = Field(
        default=True,
        description="Score each repeat on a bootstrap resample of the holdout, so that the "
        "interval covers the holdout's sampling noise too, not only the shuffles'",
    )
    unimportant_features: Literal["allow", "refuse"] = Field(
        default="allow",
        description="refuse: the gate refuses a model with a feature whose importance "
        "interval does not lie above zero",
    )


class BaselineSettings(Strict):
    """The simpler models a candidate must beat: one estimator on the same features, through
    the same preprocessing as model.estimator, and, optionally, the majority class."""

    estimator: str | None = Field(
        default=None,
        description="A dotted path inside sklearn; null: the task's (LogisticRegression for a "
        "classifier, Ridge for regression)",
    )
    params: dict[str, Scalar] = Field(
        default={},
        description="The estimator's parameters (LogisticRegression's own defaults are an L2 "
        "penalty with C=1.0: regularised)",
    )
    majority_class: bool = Field(
        default=True,
        description="Also the constant models: the training rows' class priors for a "
        "classifier, their mean and median for regression",
    )
    margin: float = Field(
        default=0.01,
        ge=0,
        description="The candidate's promotion metric on the newest batch must beat each "
        "baseline's by this (in the metric's units)",
    )

    @field_validator("estimator")
    @classmethod
    def _importable(cls, value: str | None) -> str | None:
        if value is not None and not sklearn_name_exists(sklearn_path(value)):
            raise ValueError(f"{value!r} does not exist in the installed scikit-learn")
        return value

    def estimator_for(self, task: Task) -> str:
        """The configured estimator, or the task's default."""
        return self.estimator or DEFAULT_BASELINE[task]


class FairnessSettings(Strict):
    """Gaps between the groups of a protected attribute that the candidate may not exceed
    (on the newest batch; null turns one check off). Differences are Fairlearn's
    `between_groups`: the largest group's value minus the smallest's. The rate gaps are a
    binary classifier's, at the 0.5 threshold; the error gap is any task's."""

    attribute: Column = Field(description="A categorical feature whose values are the groups")
    max_equal_opportunity_difference: Fraction | None = Field(
        default=0.25, description="Largest gap in true positive rate between groups"
    )
    max_demographic_parity_difference: Fraction | None = Field(
        default=0.25, description="Largest gap in positive prediction rate between groups"
    )
    max_calibration_gap: Fraction | None = Field(
        default=0.1,
        description="Largest gap in expected calibration error (10 bins) between groups",
    )
    max_error_gap: float | None = Field(
        default=None,
        ge=0,
        description="Largest gap in error between groups: the misclassification rate of a "
        "classifier, the mean absolute error of a regression (in the label's units)",
    )
    min_rows: int = Field(
        default=100, ge=1, description="A group with fewer rows is reported but not compared"
    )


class PromotionSettings(Strict):
    """The gate between a trained candidate and the registry."""

    metric: Metric | None = Field(
        default=None,
        description="null: the task's default (roc_auc for a classifier, r2 for regression)",
    )
    min_metric: float | None = Field(
        default=None,
        description="The least the candidate may score, for a metric where higher is better "
        "(null: 0.7 for such a metric)",
    )
    max_metric: float | None = Field(
        default=None,
        description="The most the candidate may score, for an error such as rmse "
        "(required for one)",
    )
    max_regression: float = Field(
        default=0.02,
        ge=0,
        description="How much worse than production the candidate may be, in the metric's units",
    )
    slices: tuple[SliceCheck, ...] = ()
    importance: ImportanceSettings = ImportanceSettings()
    baseline: BaselineSettings | None = Field(
        default=None,
        description="Simpler models the candidate must beat ({} for a regularised logistic "
        "regression and the majority class; null: none)",
    )
    fairness: FairnessSettings | None = Field(
        default=None, description="Gaps between the groups of a protected attribute (null: off)"
    )

    @model_validator(mode="after")
    def _bounds_follow_the_metric(self) -> PromotionSettings:
        if self.metric is None:
            if self.max_metric is not None and self.min_metric is not None:
                raise ValueError("give min_metric or max_metric, not both")
            return self
        lower = self.metric in LOWER_IS_BETTER
        if lower and self.min_metric is not None:
            raise ValueError(
                f"promotion.min_metric: lower {self.metric} is better; bound it with max_metric"
            )
        if lower and self.max_metric is None:
            raise ValueError(f"promotion.max_metric: {self.metric} needs a maximum")
        if not lower and self.max_metric is not None:
            raise ValueError(
                f"promotion.max_metric: higher {self.metric} is better; bound it with min_metric"
            )
        for i, check in enumerate(self.slices):
            if lower and check.min_metric is not None:
                raise ValueError(f"promotion.slices.{i}: {self.metric} needs max_metric")
            if not lower and check.max_metric is not None:
                raise ValueError(f"promotion.slices.{i}: {self.metric} needs min_metric")
        return self

    def metric_for(self, task: Task) -> Metric:
        """The promotion metric: the configured one, or the task's default."""
        return self.metric or DEFAULT_METRIC[task]

    def threshold(self, task: Task) -> float:
        """The bound the candidate's metric must meet: a minimum or, for an error, a maximum."""
        metric = self.metric_for(task)
        check_metric(metric, task, "promotion.metric")
        if metric in LOWER_IS_BETTER:
            if self.max_metric is None:
                raise ValueError(f"promotion.max_metric: {metric} needs a maximum")
            return self.max_metric
        if self.max_metric is not None:
            raise ValueError(
                f"promotion.max_metric: higher {metric} is better; bound it with min_metric"
            )
        return 0.7 if self.min_metric is None else self.min_metric
