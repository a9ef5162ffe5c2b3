"""The one model-loading path: input shaping, round trips, and infra-validation's refusals."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flywheel import lineage
from flywheel.config import FeatureSettings, GeneratorSettings, ModelSettings
from flywheel.predictor import (
    SERVING_PINS,
    InfraValidationError,
    ModelLoadError,
    Predictor,
    check_serving,
    dump_model,
    feature_frame,
    load_model,
)
from flywheel.synthetic import generate_day
from flywheel.training import train

FEATURES = FeatureSettings()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_day(date(2026, 1, 1), GeneratorSettings(rows_per_day=800))


@pytest.fixture(scope="module")
def model_bytes(frame: pd.DataFrame) -> bytes:
    return dump_model(
        train(frame, FEATURES, ModelSettings(params={"max_iter": 20}), "roc_auc").model
    )


class Answers:
    """A stand-in third-party classifier whose probabilities are whatever it was given.

    Pickled by joblib like any model, so the checks below see it exactly as serving would.
    """

    classes_ = np.array([0, 1])

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def predict(self, x: pd.DataFrame) -> Any:
        return self.predict_proba(x).argmax(axis=1)

    def predict_proba(self, x: pd.DataFrame) -> Any:
        n = len(x)
        if self.kind == "outside":
            return np.tile([-0.5, 1.5], (n, 1))
        if self.kind == "unnormalised":
            return np.tile([0.5, 0.6], (n, 1))
        if self.kind == "one column":
            return np.full((n, 1), 0.5)
        # "batch-dependent": the answer depends on how many rows came together
        p = 1 / (n + 1)
        return np.tile([1 - p, p], (n, 1))


def test_the_feature_frame_has_the_columns_in_order_with_the_model_types() -> None:
    # given rows as a request or a CSV may carry them: numbers as text, several kinds of null
    rows = pd.DataFrame(
        {
            "region": ["north", None, pd.NA],
            "age": ["41", "x", None],
            "extra": [1, 2, 3],
            "income": [52000, 61000.5, np.nan],
        },
        index=[7, 8, 9],
    )
    # when shaped for the model
    shaped = feature_frame(rows, ["income", "age"], ["region"])
    # then numeric columns are float64 (bad text is NaN), categories strings with NaN for null
    assert list(shaped.columns) == ["income", "age", "region"]
    assert list(shaped.index) == [7, 8, 9]
    assert shaped["age"].dtype == np.float64 and shaped["income"].dtype == np.float64
    assert shaped.loc[7, "age"] == 41.0 and np.isnan(shaped.loc[8, "age"])
    # (pandas 3 infers its `str` dtype here, not the `object` the docstring names; training
    # and serving both shape rows here, so they agree whichever it is)
    assert pd.api.types.is_string_dtype(shaped["region"])
    assert shaped.loc[7, "region"] == "north"
    assert all(isinstance(v, float) and np.isnan(v) for v in shaped["region"].iloc[1:])


def test_models_round_trip_and_corrupt_files_are_refused(
    frame: pd.DataFrame, model_bytes: bytes
) -> None:
    predictor = Predictor.from_bytes(model_bytes, FEATURES)
    assert predictor.columns == (*FEATURES.numeric, *FEATURES.categorical)
    probabilities = predictor.predict_proba(frame.head(3))
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    with pytest.raises(ModelLoadError, match="cannot load the model file: "):
        load_model(b"not a pickle at all")
    with pytest.raises(ModelLoadError, match="the model file holds a dict, not a model"):
        load_model(dump_model({"a": 1}))


def test_infra_validation_passes_a_good_model_with_this_environment(
    frame: pd.DataFrame, model_bytes: bytes
) -> None:
    # given a model trained here, with this environment's package versions
    installed = lineage.package_versions()
    # when checked through the serving path
    result = check_serving(model_bytes, FEATURES, frame.head(5), installed)
    # then it scored every row and names the pinned versions it was checked against
    assert result == {"rows_scored": 5, "packages": SERVING_PINS}


@pytest.mark.parametrize("package", sorted(SERVING_PINS))
def test_infra_validation_refuses_a_model_trained_with_other_pins(
    frame: pd.DataFrame, model_bytes: bytes, package: str
) -> None:
    installed = {**SERVING_PINS, package: "0.0.1"}
    with pytest.raises(InfraValidationError, match=f"trained with {package} 0.0.1, but serving"):
        check_serving(model_bytes, FEATURES, frame.head(5), installed)


def test_infra_validation_refuses_a_file_serving_cannot_load(frame: pd.DataFrame) -> None:
    with pytest.raises(InfraValidationError, match="the serving code path cannot load the model"):
        check_serving(b"corrupt", FEATURES, frame.head(5), dict(SERVING_PINS))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("outside", r"probabilities outside \[0, 1\]"),
        ("unnormalised", "class probabilities do not sum to 1"),
        ("one column", r"expected 5x2 probabilities, got \(5, 1\)"),
        ("batch-dependent", "scoring one row alone gives a different answer"),
    ],
)
def test_infra_validation_refuses_answers_serving_could_not_return(
    frame: pd.DataFrame, kind: str, message: str
) -> None:
    with pytest.raises(InfraValidationError, match=message):
        check_serving(dump_model(Answers(kind)), FEATURES, frame.head(5), dict(SERVING_PINS))
