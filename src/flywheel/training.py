"""Training: a scikit-learn Pipeline (preprocessing plus the configured estimator), seeded."""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flywheel.config import BaselineSettings, FeatureSettings, Metric, ModelSettings, Task
from flywheel.errors import FlywheelError
from flywheel.predictor import feature_frame
from flywheel.problem import Problem, ProblemError, check_estimator, resolve

log = logging.getLogger(__name__)

# scikit-learn scorer names for the promotion metrics (greater is better for each; the
# errors are negated). A multiclass roc_auc is one-vs-rest, macro averaged.
SCORERS: dict[Metric, str] = {
    "roc_auc": "roc_auc",
    "average_precision": "average_precision",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1": "f1",
    "macro_f1": "f1_macro",
    "weighted_f1": "f1_weighted",
    "log_loss": "neg_log_loss",
    "rmse": "neg_root_mean_squared_error",
    "mae": "neg_mean_absolute_error",
    "r2": "r2",
    "mape": "neg_mean_absolute_percentage_error",
}
NATIVE = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


def scorer(metric: Metric, task: Task) -> str:
    """The scikit-learn scorer a search ranks settings by."""
    if metric == "roc_auc" and task == "multiclass":
        return "roc_auc_ovr"
    return SCORERS[metric]


class TrainingError(FlywheelError, ValueError):
    """The estimator or its parameters from the configuration cannot be used."""


def estimator_class(path: str, task: Task, key: str = "model") -> type[Any]:
    """Import `sklearn.module.Class` and check that it can learn `task`: a classifier with
    predict_proba, or a regressor.

    `key` is the configuration section the path came from, for the error.
    """
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise TrainingError(f"{key}.estimator: {path!r} does not exist in scikit-learn") from None
    if not inspect.isclass(cls):
        raise TrainingError(f"{key}.estimator: {path!r} is not an estimator class")
    try:
        check_estimator(cls, task, key)
    except ProblemError as error:
        raise TrainingError(str(error)) from None
    return cls


def build_pipeline(
    features: FeatureSettings, settings: ModelSettings, task: Task, key: str = "model"
) -> Any:
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

    path = settings.estimator_for(task)
    cls = estimator_class(path, task, key)
    params: dict[str, Any] = dict(settings.params)
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", settings.seed)
    native = cls.__name__ in NATIVE
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
            f"features.monotonic is supported for histogram gradient boosting, not {cls.__name__}"
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
    task: Task,
) -> dict[str, Any]:
    """The simpler models the candidate must beat, fitted on the candidate's training rows.

    The estimator goes through the candidate's preprocessing builder, so only the model
    differs; monotonic constraints are the candidate's and are not asked of it. The constant
    models predict the same for every row: a classifier's class priors (DummyClassifier
    "prior"), a regression's training mean and median (DummyRegressor).
    """
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.pipeline import Pipeline

    path = baseline.estimator_for(task)
    settings = model.model_copy(update={"estimator": path, "params": baseline.params})
    pipeline = build_pipeline(
        features.model_copy(update={"monotonic": {}}), settings, task, BASELINE_KEY
    )
    try:
        pipeline.fit(x, y)
    except (ValueError, TypeError) as error:
        raise TrainingError(f"{BASELINE_KEY}: fitting {path} failed: {error}") from None
    fitted = {baseline_name(path): pipeline}
    if baseline.majority_class and task == "regression":
        for strategy in ("mean", "median"):
            dummy = DummyRegressor(strategy=strategy)
            fitted[f"{strategy}_value"] = Pipeline([("model", dummy)]).fit(x, y)
    elif baseline.majority_class:
        fitted[MAJORITY_CLASS] = Pipeline([("model", DummyClassifier(strategy="prior"))]).fit(x, y)
    return fitted


def split(
    frame: pd.DataFrame, features: FeatureSettings, settings: ModelSettings, task: Task
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded train/holdout split, stratified by class for a classifier."""
    from sklearn.model_selection import train_test_split

    train, holdout = train_test_split(
        frame,
        test_size=settings.test_size,
        random_state=settings.seed,
        stratify=None if task == "regression" else frame[features.label],
    )
    return train, holdout


def labels(frame: pd.DataFrame, problem: Problem) -> pd.Series:
    """The label column as the estimator learns it: the classes as they are (so the model's
    classes_ are the contract's), or floats for a regression."""
    column = frame[problem.label]
    if problem.is_classifier:
        if pd.api.types.is_float_dtype(column):
            return column.astype("int64")
        return column
    return pd.to_numeric(column).astype("float64")


def train(
    frame: pd.DataFrame,
    features: FeatureSettings,
    settings: ModelSettings,
    metric: Metric,
    baseline: BaselineSettings | None = None,
    problem: Problem | None = None,
) -> TrainResult:
    """Fit on all but a held-out share of `frame`, with the optional search, and the
    `baseline` models on the same rows. `problem` is the label's (default: resolved from
    `frame` and `settings.task`)."""
    if problem is None:
        problem = resolve(settings.task, frame[features.label], features.label)
    task = problem.task
    train_rows, holdout = split(frame, features, settings, task)
    x = feature_frame(train_rows, features.numeric, features.categorical)
    y = labels(train_rows, problem)
    if problem.is_classifier and y.nunique() < len(problem.classes):
        missing = sorted({str(c) for c in problem.classes} - {str(v) for v in y.unique()})
        raise TrainingError(
            f"{problem.label}: class {', '.join(missing)} has too few rows to be in the "
            "training split; more rows of it are needed"
        )
    pipeline = build_pipeline(features, settings, task)
    estimator = settings.estimator_for(task)
    baselines = {} if baseline is None else fit_baselines(x, y, features, settings, baseline, task)
    if not settings.search.enabled or not settings.search.space:
        log.info("fitting %s on %d rows", estimator, len(x))
        try:
            pipeline.fit(x, y)
        except (ValueError, TypeError) as error:
            raise TrainingError(f"fitting {estimator} failed: {error}") from None
        return TrainResult(model=pipeline, holdout=holdout, baselines=baselines)
    from sklearn.model_selection import KFold, RandomizedSearchCV, StratifiedKFold

    space = {f"model__{name}": list(values) for name, values in settings.search.space.items()}
    folds = StratifiedKFold if problem.is_classifier else KFold
    search = RandomizedSearchCV(
        pipeline,
        space,
        n_iter=settings.search.n_iter,
        scoring=scorer(metric, task),
        cv=folds(settings.search.cv, shuffle=True, random_state=settings.seed),
        random_state=settings.seed,
        n_jobs=1,
        refit=True,
    )
    log.info(
        "searching %d of %s settings with %d-fold CV on %d rows",
        settings.search.n_iter,
        estimator,
        settings.search.cv,
        len(x),
    )
    try:
        search.fit(x, y)
    except (ValueError, TypeError) as error:
        raise TrainingError(f"searching {estimator} failed: {error}") from None
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
