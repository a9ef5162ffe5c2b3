"""Training and evaluation on small real data, and the model loading path serving shares."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from flywheel.config import FeatureSettings, GeneratorSettings, ModelSettings, SearchSettings
from flywheel.evaluation import evaluate_model, score
from flywheel.predictor import ModelLoadError, Predictor, dump_model, load_model
from flywheel.report import evaluation_page
from flywheel.synthetic import generate_day
from flywheel.training import TrainingError, build_pipeline, train

FEATURES = FeatureSettings()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    gen = GeneratorSettings(rows_per_day=700)
    return pd.concat(
        [generate_day(date(2026, 1, 1) + timedelta(i), gen) for i in range(4)], ignore_index=True
    )


def test_training_is_seeded_and_learns(frame: pd.DataFrame) -> None:
    settings = ModelSettings(params={"max_iter": 50})
    first = train(frame, FEATURES, settings, "roc_auc")
    second = train(frame, FEATURES, settings, "roc_auc")
    p1 = first.model.predict_proba(first.holdout)[:, 1]
    np.testing.assert_array_equal(p1, second.model.predict_proba(second.holdout)[:, 1])
    assert score(first.holdout["defaulted"], p1).roc_auc > 0.75
    assert len(first.holdout) == pytest.approx(0.2 * len(frame), abs=2)


def test_the_search_picks_from_the_space_and_records_scores(frame: pd.DataFrame) -> None:
    space = {"learning_rate": (0.05, 0.2), "max_leaf_nodes": (7, 15)}
    settings = ModelSettings(
        params={"max_iter": 30}, search=SearchSettings(enabled=True, n_iter=2, cv=2, space=space)
    )
    result = train(frame, FEATURES, settings, "roc_auc")
    assert result.best_params["learning_rate"] in (0.05, 0.2)
    assert len(result.search_scores) == 2


def test_another_estimator_from_config(frame: pd.DataFrame) -> None:
    settings = ModelSettings(
        estimator="sklearn.linear_model.LogisticRegression", params={"C": 0.5, "max_iter": 500}
    )
    result = train(frame, FEATURES, settings, "roc_auc")
    assert type(result.model.steps[-1][1]).__name__ == "LogisticRegression"


@pytest.mark.parametrize(
    ("estimator", "params", "message"),
    [
        ("sklearn.ensemble.NoSuchThing", {}, "does not exist in scikit-learn"),
        ("sklearn.linear_model.LinearRegression", {}, "is not a classifier with predict_proba"),
        ("sklearn.linear_model.LogisticRegression", {"bogus": 1}, "model.params"),
    ],
)
def test_bad_estimator_settings_are_named(
    estimator: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(TrainingError, match=message):
        build_pipeline(FEATURES, ModelSettings(estimator=estimator, params=params))  # type: ignore[arg-type]


def test_invalid_parameter_values_fail_at_fit_with_the_name(frame: pd.DataFrame) -> None:
    settings = ModelSettings(
        estimator="sklearn.linear_model.LogisticRegression", params={"C": "big"}
    )
    with pytest.raises(TrainingError, match="'C' parameter"):
        train(frame, FEATURES, settings, "roc_auc")


def test_models_round_trip_and_corrupt_files_are_refused(frame: pd.DataFrame) -> None:
    result = train(frame, FEATURES, ModelSettings(params={"max_iter": 20}), "roc_auc")
    predictor = Predictor(
        load_model(dump_model(result.model)), FEATURES.numeric, FEATURES.categorical
    )
    assert predictor.predict_proba(frame.head(3)).shape == (3, 2)
    with pytest.raises(ModelLoadError, match="cannot load the model file"):
        load_model(b"not a pickle at all")
    with pytest.raises(ModelLoadError, match="not a classifier"):
        load_model(dump_model({"a": 1}))


def test_evaluation_and_report(frame: pd.DataFrame) -> None:
    result = train(frame, FEATURES, ModelSettings(params={"max_iter": 30}), "roc_auc")
    predictor = Predictor(result.model, FEATURES.numeric, FEATURES.categorical)
    newest = generate_day(date(2026, 1, 9), GeneratorSettings(rows_per_day=700))
    evaluated = evaluate_model(
        predictor, "candidate", None, newest, result.holdout, FEATURES, "roc_auc"
    )
    assert evaluated.holdout is not None and evaluated.newest.rows == 700
    assert set(evaluated.slices["region"]) == {"north", "south", "east", "west"}
    assert (
        evaluated.roc.fpr[0] == 0.0
        and evaluated.roc.tpr[-1] == 1.0
        and len(evaluated.roc.fpr) <= 101
    )
    from flywheel.evaluation import Evaluation

    html = evaluation_page(
        Evaluation(metric="roc_auc", newest_batch="d", candidate=evaluated, production=None), "t"
    )
    assert html.count("data:image/png;base64,") == 4
