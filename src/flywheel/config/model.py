"""The model: the estimator and its search, and the gate a candidate must pass to be promoted."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from flywheel.config.base import Column, Fraction, Scalar, Strict
from flywheel.config.estimators import sklearn_name_exists, sklearn_path

Metric = Literal["roc_auc", "average_precision", "accuracy", "balanced_accuracy", "f1"]


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
    """The scikit-learn estimator at the end of the training Pipeline."""

    estimator: str = "sklearn.ensemble.HistGradientBoostingClassifier"
    params: dict[str, Scalar] = Field(default={})
    search: SearchSettings = SearchSettings()
    test_size: float = Field(default=0.2, gt=0, lt=0.9)
    seed: int = 42

    @field_validator("estimator")
    @classmethod
    def _sklearn_only(cls, value: str) -> str:
        return sklearn_path(value)


class SliceCheck(Strict):
    """A minimum metric on every value of one categorical column."""

    column: Column
    min_metric: Fraction
    min_rows: int = Field(default=100, ge=1)


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

    estimator: str = Field(
        default="sklearn.linear_model.LogisticRegression",
        description="A dotted path inside sklearn to a classifier with predict_proba",
    )
    params: dict[str, Scalar] = Field(
        default={},
        description="The estimator's parameters (LogisticRegression's own defaults are an L2 "
        "penalty with C=1.0: regularised)",
    )
    majority_class: bool = Field(
        default=True, description="Also the majority class: the training rows' base rate"
    )
    margin: Fraction = Field(
        default=0.01,
        description="The candidate's promotion metric on the newest batch must be at least "
        "each baseline's plus this",
    )

    @field_validator("estimator")
    @classmethod
    def _importable(cls, value: str) -> str:
        if not sklearn_name_exists(sklearn_path(value)):
            raise ValueError(f"{value!r} does not exist in the installed scikit-learn")
        return value


class FairnessSettings(Strict):
    """Gaps between the groups of a protected attribute that the candidate may not exceed
    (on the newest batch, at the 0.5 threshold; null turns one check off). Differences are
    Fairlearn's `between_groups`: the largest group's value minus the smallest's."""

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
    min_rows: int = Field(
        default=100, ge=1, description="A group with fewer rows is reported but not compared"
    )


class PromotionSettings(Strict):
    """The gate between a trained candidate and the registry."""

    metric: Metric = "roc_auc"
    min_metric: Fraction = 0.7
    max_regression: Fraction = 0.02
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
