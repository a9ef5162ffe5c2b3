"""Training: a scikit-learn Pipeline (preprocessing plus the configured estimator), seeded."""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flywheel.config import BaselineSettings, FeatureSettings, Metric, ModelSettings
from flywheel.errors import FlywheelError
from flywheel.predictor import feature_frame

log = logging.getLogger(__name__)

# scikit-learn scorer names for the promotion metrics.
SCORERS: dict[Metric, str] = {
    "roc_auc": "roc_auc",
    "average_precision": "average_precision",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1": "f1",
}


class TrainingError(FlywheelError, ValueError):
    """The estimator or its parameters from the configuration cannot be used."""


def estimator_class(path: str, key: str = "model") -> type[Any]:
    """Import `sklearn.module.Class` and check that it is a probabilistic classifier.

    `key` is the configuration section the path came from, for the error.
    """
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise TrainingError(f"{key}.estimator: {path!r} does not exist in scikit-learn") from None
    if not inspect.isclass(cls) or not hasattr(cls, "predict_proba"):
        raise TrainingError(f"{key}.estimator: {path!r} is not a classifier with predict_proba")
    return cls


def build_pipeline(features: FeatureSettings, settings: ModelSettings, key: str = "model") -> Any:
    """Preprocessing suited to the estimator from the configuration, then the estimator.

    Histogram gradient boosting handles missing values and categories itself, so it
    gets ordinal codes and raw numbers: fewer steps, and much cheaper per request.
    Every other estimator gets imputation, scaling and one-hot encoding.
    """
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    cls = estimator_class(settings.estimator, key)
    params: dict[str, Any] = dict(settings.params)
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", settings.seed)
    native = cls.__name__ == "HistGradientBoostingClassifier"
    if native:
        params.setdefault("categorical_features", list(range(len(features.categorical))))
        if features.monotonic:
            # The columns reach the estimator categorical first, then numeric (below).
            signs = {"increasing": 1, "decreasing": -1}
            params.setdefault(
                "monotonic_cst",
                [0] * len(features.categorical)
                + [signs.get(features.monotonic.get(n, ""), 0) for n in features.numeric],
            )
    elif features.monotonic:
        raise TrainingError(
            f"features.monotonic is supported for HistGradientBoostingClassifier, not {cls.__name__}"
        )
    try:
        estimator = cls(**params)
    except TypeError as error:
        raise TrainingError(f"{key}.params: {error}") from None
    if native:
        codes = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
        )
        preprocess = ColumnTransformer(
            [("categorical", codes, list(features.categorical))],
            remainder="passthrough",
            verbose_feature_names_out=False,
        )
        return Pipeline([("preprocess", preprocess), ("model", estimator)])
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", numeric, list(features.numeric)),
            ("categorical", categorical, list(features.categorical)),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


@dataclass
class TrainResult:
    """A fitted model, the rows held out from it, and the search it came from."""

    model: Any
    holdout: pd.DataFrame
    best_params: dict[str, Any] = field(default_factory=dict)
    search_scores: list[dict[str, Any]] = field(default_factory=list)
    baselines: dict[str, Any] = field(default_factory=dict)


MAJORITY_CLASS = "majority_class"
BASELINE_KEY = "promotion.baseline"


def baseline_name(path: str) -> str:
    """A baseline's name from its estimator path: LogisticRegression -> logistic_regression."""
    import re

    name = path.rpartition(".")[2]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def fit_baselines(
    x: pd.DataFrame,
    y: pd.Series,
    features: FeatureSettings,
    model: ModelSettings,
    baseline: BaselineSettings,
) -> dict[str, Any]:
    """The simpler models the candidate must beat, fitted on the candidate's training rows.

    The estimator goes through the candidate's preprocessing builder, so only the model
    differs; monotonic constraints are the candidate's and are not asked of it. The majority
    class predicts the training rows' base rate for every row (DummyClassifier "prior").
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    settings = model.model_copy(update={"estimator": baseline.estimator, "params": baseline.params})
    pipeline = build_pipeline(features.model_copy(update={"monotonic": {}}), settings, BASELINE_KEY)
    try:
        pipeline.fit(x, y)
    except (ValueError, TypeError) as error:
        raise TrainingError(
            f"{BASELINE_KEY}: fitting {baseline.estimator} failed: {error}"
        ) from None
    fitted = {baseline_name(baseline.estimator): pipeline}
    if baseline.majority_class:
        fitted[MAJORITY_CLASS] = Pipeline([("model", DummyClassifier(strategy="prior"))]).fit(x, y)
    return fitted


def split(
    frame: pd.DataFrame, features: FeatureSettings, settings: ModelSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified, seeded train/holdout split."""
    from sklearn.model_selection import train_test_split

    train, holdout = train_test_split(
        frame,
        test_size=settings.test_size,
        random_state=settings.seed,
        stratify=frame[features.label],
    )
    return train, holdout


def train(
    frame: pd.DataFrame,
    features: FeatureSettings,
    settings: ModelSettings,
    metric: Metric,
    baseline: BaselineSettings | None = None,
) -> TrainResult:
    """Fit on all but a held-out share of `frame`, with the optional search, and the
    `baseline` models on the same rows."""
    train_rows, holdout = split(frame, features, settings)
    x = feature_frame(train_rows, features.numeric, features.categorical)
    y = pd.to_numeric(train_rows[features.label]).astype("int64")
    pipeline = build_pipeline(features, settings)
    baselines = {} if baseline is None else fit_baselines(x, y, features, settings, baseline)
    if not settings.search.enabled or not settings.search.space:
        log.info("fitting %s on %d rows", settings.estimator, len(x))
        try:
            pipeline.fit(x, y)
        except (ValueError, TypeError) as error:
            raise TrainingError(f"fitting {settings.estimator} failed: {error}") from None
        return TrainResult(model=pipeline, holdout=holdout, baselines=baselines)
    from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold

    space = {f"model__{name}": list(values) for name, values in settings.search.space.items()}
    search = RandomizedSearchCV(
        pipeline,
        space,
        n_iter=settings.search.n_iter,
        scoring=SCORERS[metric],
        cv=StratifiedKFold(settings.search.cv, shuffle=True, random_state=settings.seed),
        random_state=settings.seed,
        n_jobs=1,
        refit=True,
    )
    log.info(
        "searching %d of %s settings with %d-fold CV on %d rows",
        settings.search.n_iter,
        settings.estimator,
        settings.search.cv,
        len(x),
    )
    try:
        search.fit(x, y)
    except (ValueError, TypeError) as error:
        raise TrainingError(f"searching {settings.estimator} failed: {error}") from None
    results = search.cv_results_
    scores = [
        {
            "params": {k.removeprefix("model__"): v for k, v in params.items()},
            "mean_score": float(mean),
            "std_score": float(std),
        }
        for params, mean, std in zip(
            results["params"], results["mean_test_score"], results["std_test_score"], strict=True
        )
    ]
    best = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
    log.info("best %s %.4f with %s", metric, search.best_score_, best)
    return TrainResult(
        model=search.best_estimator_,
        holdout=holdout,
        best_params=best,
        search_scores=scores,
        baselines=baselines,
    )
