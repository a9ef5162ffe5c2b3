"""Training on small real data: seeded fits, the search, estimators from config, baselines,
and errors."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from flywheel.config import (
    BaselineSettings,
    FeatureSettings,
    GeneratorSettings,
    ModelSettings,
    SearchSettings,
)
from flywheel.evaluation import score
from flywheel.synthetic import generate_day
from flywheel.training import (
    TrainingError,
    baseline_name,
    build_pipeline,
    estimator_class,
    split,
    train,
)

FEATURES = FeatureSettings()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    gen = GeneratorSettings(rows_per_day=700)
    return pd.concat(
        [generate_day(date(2026, 1, 1) + timedelta(i), gen) for i in range(4)], ignore_index=True
    )


def test_training_is_seeded_and_learns(frame: pd.DataFrame) -> None:
    # given the same rows and settings twice
    settings = ModelSettings(params={"max_iter": 50})
    # when trained twice
    first = train(frame, FEATURES, settings, "roc_auc")
    second = train(frame, FEATURES, settings, "roc_auc")
    # then both models give identical scores, which separate the classes
    p1 = first.model.predict_proba(first.holdout)[:, 1]
    np.testing.assert_array_equal(p1, second.model.predict_proba(second.holdout)[:, 1])
    assert score(first.holdout["defaulted"], p1).roc_auc > 0.75
    assert len(first.holdout) == pytest.approx(0.2 * len(frame), abs=2)


def test_the_split_is_stratified_and_seeded(frame: pd.DataFrame) -> None:
    # given the default settings (20% held out)
    settings = ModelSettings()
    # when the rows are split twice
    train_rows, holdout = split(frame, FEATURES, settings, "binary")
    again, _ = split(frame, FEATURES, settings, "binary")
    # then every row is in exactly one part, the same each time, with the same default rate
    assert len(train_rows) + len(holdout) == len(frame)
    assert set(train_rows.index).isdisjoint(holdout.index)
    assert list(train_rows.index) == list(again.index)
    assert holdout["defaulted"].mean() == pytest.approx(frame["defaulted"].mean(), abs=0.005)
    # and another seed holds out other rows
    other, _ = split(frame, FEATURES, settings.model_copy(update={"seed": 7}), "binary")
    assert list(other.index) != list(train_rows.index)


def test_the_search_picks_from_the_space_and_records_scores(frame: pd.DataFrame) -> None:
    space = {"learning_rate": (0.05, 0.2), "max_leaf_nodes": (7, 15)}
    settings = ModelSettings(
        params={"max_iter": 30}, search=SearchSettings(enabled=True, n_iter=2, cv=2, space=space)
    )
    result = train(frame, FEATURES, settings, "roc_auc")
    assert result.best_params["learning_rate"] in (0.05, 0.2)
    assert len(result.search_scores) == 2
    assert {s["params"]["max_leaf_nodes"] for s in result.search_scores} <= {7, 15}


def test_another_estimator_from_config(frame: pd.DataFrame) -> None:
    settings = ModelSettings(
        estimator="sklearn.linear_model.LogisticRegression", params={"C": 0.5, "max_iter": 500}
    )
    result = train(frame, FEATURES, settings, "roc_auc")
    assert type(result.model.steps[-1][1]).__name__ == "LogisticRegression"
    # and other estimators get one-hot encoding, not the ordinal codes of gradient boosting
    assert [t[0] for t in result.model.steps[0][1].transformers] == [
        "numeric",
        "categorical",
    ]


def test_estimator_class_imports_classifiers_only() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    assert (
        estimator_class("sklearn.ensemble.HistGradientBoostingClassifier", "binary")
        is HistGradientBoostingClassifier
    )
    with pytest.raises(TrainingError, match=r"'sklearn\.nowhere\.Thing' does not exist"):
        estimator_class("sklearn.nowhere.Thing", "binary")


@pytest.mark.parametrize(
    ("estimator", "params", "message"),
    [
        ("sklearn.ensemble.NoSuchThing", {}, "does not exist in scikit-learn"),
        (
            "sklearn.linear_model.LinearRegression",
            {},
            "LinearRegression is not a classifier, and the task is binary",
        ),
        ("sklearn.linear_model.LogisticRegression", {"bogus": 1}, "model.params"),
    ],
)
def test_bad_estimator_settings_are_named(
    estimator: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(TrainingError, match=message):
        build_pipeline(FEATURES, ModelSettings(estimator=estimator, params=params), "binary")  # type: ignore[arg-type]


def test_invalid_parameter_values_fail_at_fit_with_the_name(frame: pd.DataFrame) -> None:
    settings = ModelSettings(
        estimator="sklearn.linear_model.LogisticRegression", params={"C": "big"}
    )
    with pytest.raises(TrainingError, match="'C' parameter"):
        train(frame, FEATURES, settings, "roc_auc")


def test_monotonic_features_become_the_estimators_constraints_in_column_order() -> None:
    # given late_payments must only raise the risk, and income only lower it
    features = FEATURES.model_copy(
        update={"monotonic": {"late_payments": "increasing", "income": "decreasing"}}
    )
    model = build_pipeline(features, ModelSettings(), "binary")
    # then the estimator gets one sign per column as the ColumnTransformer orders them:
    # the categorical columns (never constrained) first, then the numeric ones
    constraints = model.named_steps["model"].monotonic_cst
    order = [*FEATURES.categorical, *FEATURES.numeric]
    assert dict(zip(order, constraints, strict=True)) == {
        **{name: 0 for name in order},
        "late_payments": 1,
        "income": -1,
    }


def test_monotonic_features_with_an_estimator_that_cannot_honour_them() -> None:
    features = FEATURES.model_copy(update={"monotonic": {"late_payments": "increasing"}})
    with pytest.raises(
        TrainingError, match="supported for histogram gradient boosting, not LogisticRegression"
    ):
        build_pipeline(
            features, ModelSettings(estimator="sklearn.linear_model.LogisticRegression"), "binary"
        )


def test_the_baselines_share_the_candidates_rows_and_preprocessing(frame: pd.DataFrame) -> None:
    # given a policy with a logistic regression baseline and the majority class
    baseline = BaselineSettings()
    # when trained with the candidate
    result = train(frame, FEATURES, ModelSettings(params={"max_iter": 30}), "roc_auc", baseline)
    # then the logistic regression went through the same builder (imputation, scaling, one-hot)
    linear = result.baselines["logistic_regression"]
    assert type(linear.named_steps["model"]).__name__ == "LogisticRegression"
    assert linear.named_steps["model"].C == 1.0  # scikit-learn's default L2 penalty
    assert set(linear.named_steps["preprocess"].named_transformers_) == {"numeric", "categorical"}
    # and the majority class predicts the training rows' base rate for every row
    train_rows, _ = split(frame, FEATURES, ModelSettings(), "binary")
    p = result.baselines["majority_class"].predict_proba(result.holdout)[:, 1]
    np.testing.assert_allclose(p, train_rows["defaulted"].mean())
    assert (
        score(result.holdout["defaulted"], linear.predict_proba(result.holdout)[:, 1]).roc_auc > 0.7
    )


def test_without_a_baseline_policy_nothing_more_is_fitted(frame: pd.DataFrame) -> None:
    result = train(frame, FEATURES, ModelSettings(params={"max_iter": 10}), "roc_auc")
    assert result.baselines == {}


def test_the_majority_class_alone_and_monotonic_features_are_not_asked_of_the_baseline(
    frame: pd.DataFrame,
) -> None:
    features = FEATURES.model_copy(update={"monotonic": {"late_payments": "increasing"}})
    baseline = BaselineSettings(majority_class=False)
    result = train(frame, features, ModelSettings(params={"max_iter": 10}), "roc_auc", baseline)
    assert list(result.baselines) == ["logistic_regression"]


@pytest.mark.parametrize(
    ("estimator", "params", "message"),
    [
        ("sklearn.linear_model.Nope", {}, "promotion.baseline.estimator: .* does not exist"),
        (
            "sklearn.linear_model.LinearRegression",
            {},
            "promotion.baseline.estimator: LinearRegression is not a classifier",
        ),
        ("sklearn.linear_model.LogisticRegression", {"bogus": 1}, "promotion.baseline.params"),
        ("sklearn.linear_model.LogisticRegression", {"C": "big"}, "promotion.baseline: fitting"),
    ],
)
def test_a_baseline_that_cannot_be_used_is_named_by_its_key(
    frame: pd.DataFrame, estimator: str, params: dict[str, object], message: str
) -> None:
    # given settings that skipped the load-time check (built in code)
    baseline = BaselineSettings.model_construct(
        estimator=estimator, params=params, majority_class=True, margin=0.0
    )
    with pytest.raises(TrainingError, match=message):
        train(frame, FEATURES, ModelSettings(params={"max_iter": 10}), "roc_auc", baseline)


def test_baseline_names_come_from_the_class() -> None:
    assert baseline_name("sklearn.linear_model.LogisticRegression") == "logistic_regression"
    assert baseline_name("sklearn.naive_bayes.GaussianNB") == "gaussian_nb"
    assert baseline_name("sklearn.svm.SVC") == "svc"
