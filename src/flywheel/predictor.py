"""The one code path that turns a stored model and rows into probabilities.

Training, infra-validation and the serving runtime all load models and shape
their input here, so a model that passes infra-validation loads in serving.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

MODEL_FILE = "model.joblib"


class ModelLoadError(ValueError):
    """The stored model cannot be loaded or is not a probabilistic classifier."""


def feature_frame(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """The model's input: numeric columns as float64, categorical as object with NaN for missing."""
    data: dict[str, Any] = {}
    for name in numeric:
        column = frame[name]
        if not pd.api.types.is_numeric_dtype(column):
            column = pd.to_numeric(column, errors="coerce")
        data[name] = column.to_numpy(dtype="float64", na_value=np.nan)
    for name in categorical:
        values = frame[name].to_numpy(dtype=object, copy=True)
        values[pd.isna(values)] = np.nan
        data[name] = values
    # Built from arrays in one go: per-column assignment costs milliseconds per request.
    return pd.DataFrame(data, index=frame.index, copy=False)


def dump_model(model: Any) -> bytes:
    """Serialise a fitted estimator with joblib."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def load_model(raw: bytes) -> Any:
    """Load a model written by `dump_model`; refuses anything without predict_proba."""
    import joblib

    try:
        model = joblib.load(io.BytesIO(raw))
    except Exception as error:  # unpickling can fail in many ways
        raise ModelLoadError(
            f"cannot load the model file: {type(error).__name__}: {error}"
        ) from None
    if not callable(getattr(model, "predict_proba", None)):
        raise ModelLoadError(f"the model file holds a {type(model).__name__}, not a classifier")
    return model


class Predictor:
    """A loaded model and the columns it expects."""

    def __init__(self, model: Any, numeric: Sequence[str], categorical: Sequence[str]) -> None:
        self.model = model
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)

    @property
    def columns(self) -> tuple[str, ...]:
        """Input columns in order."""
        return (*self.numeric, *self.categorical)

    def predict_proba(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Class probabilities, one row per input row, columns [P(0), P(1)]."""
        features = feature_frame(frame, self.numeric, self.categorical)
        return np.asarray(self.model.predict_proba(features), dtype=np.float64)
