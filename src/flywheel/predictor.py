"""The one code path that turns a stored model and rows into answers: class probabilities
from a classifier, predicted values from a regressor.

Training, infra-validation and the serving runtime all load models and shape
their input here, so a model that passes infra-validation loads in serving.
"""

from __future__ import annotations

import io
import json
import logging
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from flywheel.compiled import (
    CompiledScorer,
    NotCompilable,
    compile_model,
    max_difference,
    tolerance,
)
from flywheel.errors import FlywheelError
from flywheel.problem import Problem, from_model

if TYPE_CHECKING:
    from flywheel.config import FeatureSettings

# The versions the serving image pins. A model must be trained with exactly these,
# or it may not load (or may behave differently) in serving. A unit test keeps
# this in step with requirements/serving.txt.
SERVING_PINS = {"scikit-learn": "1.9.1", "numpy": "1.26.4"}

log = logging.getLogger(__name__)


class ModelLoadError(FlywheelError, ValueError):
    """The stored model cannot be loaded, or is neither a probabilistic classifier nor a
    regressor."""


def feature_frame(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """The model's input: numeric columns as float64, categorical as strings with NaN for missing."""
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


def rows_frame(
    rows: Sequence[Sequence[Any]], numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """Checked rows (values in numeric then categorical order, None for missing) as the
    input frame scikit-learn takes: numbers as float64 with NaN, categories as objects."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in (*numeric, *categorical)]
    n_numeric = len(numeric)
    data: dict[str, Any] = {
        name: np.array([math.nan if v is None else v for v in values], dtype="float64")
        for name, values in zip(numeric, columns[:n_numeric], strict=True)
    }
    for name, values in zip(categorical, columns[n_numeric:], strict=True):
        data[name] = np.array(values, dtype=object)
    return pd.DataFrame(data, copy=False)


def dump_model(model: Any) -> bytes:
    """Serialise a fitted estimator with joblib."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def load_model(raw: bytes) -> Any:
    """Load a model written by `dump_model`; refuses anything that is neither a classifier
    with predict_proba nor a regressor with predict."""
    import joblib

    try:
        model = joblib.load(io.BytesIO(raw))
    except Exception as error:  # unpickling can fail in many ways
        raise ModelLoadError(
            f"cannot load the model file: {type(error).__name__}: {error}"
        ) from None
    classifier = getattr(model, "classes_", None) is not None
    if classifier and not callable(getattr(model, "predict_proba", None)):
        raise ModelLoadError(
            f"the model file holds a {type(model).__name__}, a classifier without predict_proba"
        )
    if not callable(getattr(model, "predict", None)):
        raise ModelLoadError(f"the model file holds a {type(model).__name__}, not a model")
    return model


class InfraValidationError(FlywheelError, RuntimeError):
    """The model does not load or score through the serving code path."""


class Predictor:
    """A loaded model and the columns it expects.

    With `compiled` (the artifact registered beside model.joblib) it scores through
    the compiled scorer, which registration checked against scikit-learn; without it,
    or if the artifact does not load, through scikit-learn.
    """

    def __init__(
        self,
        model: Any,
        numeric: Sequence[str],
        categorical: Sequence[str],
        compiled: bytes | None = None,
    ) -> None:
        self.model = model
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.scorer: CompiledScorer | None = None
        if compiled is not None:
            try:
                self.scorer = CompiledScorer.from_bytes(compiled)
            except (
                Exception
            ) as error:  # a stale format or treelite build: scikit-learn still answers
                log.warning("serving through scikit-learn: %s", error)

    @classmethod
    def from_bytes(cls, raw: bytes, features: FeatureSettings) -> Predictor:
        """Load a stored model for the configured feature columns."""
        return cls(load_model(raw), features.numeric, features.categorical)

    @property
    def columns(self) -> tuple[str, ...]:
        """Input columns in order."""
        return (*self.numeric, *self.categorical)

    @property
    def problem(self) -> Problem:
        """What the model predicts: its classes, or a regression."""
        return from_model(self.model)

    @property
    def is_classifier(self) -> bool:
        """Whether the model answers class probabilities (else predicted values)."""
        return getattr(self.model, "classes_", None) is not None

    def predict_proba(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """A classifier's class probabilities, one row per input row, one column per class
        in the order of the model's classes_."""
        if not self.is_classifier:
            raise TypeError(f"{type(self.model).__name__} is a regressor: use outputs")
        return self.outputs(frame)

    def outputs(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """The model's answer, one row per input row: a classifier's class probabilities,
        a regressor's predicted value (one column)."""
        if self.scorer is not None:
            return self.scorer.outputs(frame)
        features = feature_frame(frame, self.numeric, self.categorical)
        if self.is_classifier:
            return np.asarray(self.model.predict_proba(features), dtype=np.float64)
        return np.asarray(self.model.predict(features), dtype=np.float64).reshape(-1, 1)

    def predictions(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """One score per row: P(positive class) of a binary classifier, the predicted value
        of a regressor. A multiclass model has no single score: a TypeError."""
        out = self.outputs(frame)
        if out.shape[1] == 1:
            return out[:, 0]
        if out.shape[1] == 2:
            return out[:, 1]
        raise TypeError("a multiclass model has one probability per class, not one score")

    def predict_rows(self, rows: Sequence[Sequence[Any]]) -> npt.NDArray[np.float64]:
        """`outputs` of rows checked against the contract, each a sequence of values in
        `columns` order (None for missing). The compiled scorer takes them as they are:
        a DataFrame costs more than scoring one row; scikit-learn gets `rows_frame`."""
        if self.scorer is not None:
            return self.scorer.predict_rows(rows, self.columns)
        return self.outputs(rows_frame(rows, self.numeric, self.categorical))


def check_serving(
    raw: bytes, features: FeatureSettings, sample: pd.DataFrame, installed: dict[str, str]
) -> dict[str, Any]:
    """Load a model the way serving will and score `sample` as requests carry it.

    `installed` are the package versions it was trained with; they must equal
    SERVING_PINS. Raises InfraValidationError naming the first problem.
    """
    from sklearn.exceptions import InconsistentVersionWarning

    for package, pinned in SERVING_PINS.items():
        if installed.get(package) != pinned:
            raise InfraValidationError(
                f"trained with {package} {installed.get(package)}, but serving pins {pinned}: "
                "the model would be unpickled by another version"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            model = Predictor.from_bytes(raw, features)
        except (ModelLoadError, InconsistentVersionWarning) as error:
            raise InfraValidationError(
                f"the serving code path cannot load the model: {error}"
            ) from None
    # Round-trip through JSON, as a REST request would carry the rows.
    records = json.loads(sample[list(model.columns)].to_json(orient="records"))
    answers = model.outputs(pd.DataFrame.from_records(records))
    width = model.problem.width
    if answers.shape != (len(records), width):
        kind = "probabilities" if model.is_classifier else "predicted values"
        raise InfraValidationError(f"expected {len(records)}x{width} {kind}, got {answers.shape}")
    if not np.isfinite(answers).all():
        raise InfraValidationError("the model returned answers that are not finite")
    if model.is_classifier:
        if (answers < 0).any() or (answers > 1).any():
            raise InfraValidationError("the model returned probabilities outside [0, 1]")
        if not np.allclose(answers.sum(axis=1), 1.0):
            raise InfraValidationError("class probabilities do not sum to 1")
    single = model.outputs(pd.DataFrame.from_records(records[:1]))
    if not np.allclose(single[0], answers[0]):
        raise InfraValidationError("scoring one row alone gives a different answer than in a batch")
    return {"rows_scored": len(records), "packages": {k: installed.get(k) for k in SERVING_PINS}}


def compile_checked(
    raw: bytes, features: FeatureSettings, sample: pd.DataFrame
) -> tuple[bytes | None, dict[str, Any]]:
    """Compile a stored model for serving and check it against scikit-learn on `sample`.

    Returns the artifact to register beside model.joblib, or None when serving must
    keep scikit-learn, and the record for the version's lineage saying which and why.
    The artifact is checked after a round trip through bytes, as serving will load it.
    """
    model = load_model(raw)
    reference = Predictor(model, features.numeric, features.categorical)
    try:
        artifact = compile_model(model, features.numeric, features.categorical).to_bytes()
        scorer = CompiledScorer.from_bytes(artifact)
    except NotCompilable as error:
        return None, {"scorer": "scikit-learn", "reason": str(error)}
    except Exception as error:  # the compiler's own failure is a fallback, never a failed run
        name = type(getattr(model, "steps", [(None, model)])[-1][1]).__name__
        reason = f"the compiler failed on {name}: {type(error).__name__}: {error}"
        return None, {"scorer": "scikit-learn", "reason": " ".join(reason.split())[:300]}
    frame = sample[list(reference.columns)]
    try:
        expected = reference.outputs(frame)
        difference = max_difference(scorer, expected, frame)
    except Exception as error:  # the compiled scorer failing is a refusal, never a failed run
        reason = f"the compiled {scorer.kind} scorer failed on the newest batch: {error}"
        return None, {"scorer": "scikit-learn", "reason": " ".join(reason.split())[:300]}
    allowed = tolerance(expected)
    checked = {
        "rows": len(frame),
        # JSON has no infinity or NaN: a difference that is not finite is recorded as null
        "max_abs_difference": difference if math.isfinite(difference) else None,
        "tolerance": allowed,
    }
    if not difference <= allowed:
        reason = (
            f"the compiled {scorer.kind} scorer differs from scikit-learn by {difference:.3g} "
            f"(above {allowed:.3g}) on {len(frame)} rows of the newest batch"
        )
        return None, {"scorer": "scikit-learn", "reason": reason, **checked}
    return artifact, {
        "scorer": f"compiled {scorer.kind}",
        "source": scorer.header["source"],
        **checked,
    }
