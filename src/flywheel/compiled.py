"""The compiled scorer: a fitted scikit-learn pipeline turned into lookups and plain arithmetic.

scikit-learn spends milliseconds on one row (the ColumnTransformer and its encoders,
then the estimator's input checks); serving pays that on every request. Here the
fitted encoders become dictionaries built from their categories, the numeric steps
become the fitted medians, means and scales, and the estimator becomes a treelite
model (tree ensembles, classifiers and regressors) or its own coefficients (logistic
regression, binary or multinomial, and linear regressors). It answers what
`Predictor.outputs` does: class probabilities in the order of the model's classes_,
or a regressor's predicted value in one column. Anything else is not compiled:
`compile_model` raises NotCompilable saying why, and serving keeps scikit-learn. The
artifact holds no pickle: a JSON header, then treelite's bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from flywheel.errors import FlywheelError

# Beside model.joblib in a registry version; its sha256 is in the manifest.
COMPILED_FILE = "scorer.compiled"
# Above this, the compiled answers are not scikit-learn's and serving keeps scikit-learn;
# relative to the largest answer beyond 1 (a regressor's values), as float64's rounding is.
TOLERANCE = 1e-9
# 2: any task (format 1 was a binary classifier's, read as one). A serving image that
# knows only format 1 refuses format 2 and keeps scikit-learn, rather than misreading it.
_FORMAT = 2
_READS = (1, 2)
_ROWS_PER_THREAD = 256
_TREES = tuple(
    f"{family}{kind}"
    for family in ("HistGradientBoosting", "RandomForest", "ExtraTrees", "GradientBoosting")
    for kind in ("Classifier", "Regressor")
)


class NotCompilable(FlywheelError, ValueError):
    """The model has a step the compiled scorer does not reproduce; the message says which."""


class CompiledScorer:
    """A model's outputs from rows with no scikit-learn: column steps, then the estimator."""

    def __init__(self, header: dict[str, Any], trees: bytes = b"") -> None:
        self.header = header
        self.trees = trees
        self._columns: list[tuple[str, str, Any]] = []
        for step in header["steps"]:
            if step["kind"] == "lookup":
                table = {str(k): float(v) for k, v in step["codes"].items()}
                self._columns.append(
                    (step["column"], "lookup", (table, _float(step["missing"]), step["at"]))
                )
            elif step["kind"] == "onehot":
                self._columns.append(
                    (
                        step["column"],
                        "onehot",
                        ({str(k): i for i, k in enumerate(step["categories"])}, step),
                    )
                )
            else:
                self._columns.append((step["column"], "number", step))
        self.width = int(header["width"])
        # What a format 1 header leaves out: it was a binary classifier's.
        self.outputs_per_row = int(header.get("outputs", 2))
        self.link = str(header.get("link", "logistic" if header["estimator"] == "linear" else ""))
        self._model: _Trees | None = None
        if header["estimator"] == "treelite":
            import treelite

            self._model = _Trees(
                treelite.Model.deserialize_bytes(trees), margin=self.link == "softmax"
            )
        else:
            self._coef = np.asarray(header["coef"], dtype=np.float64)
            self._intercept = np.asarray(header["intercept"], dtype=np.float64)

    @property
    def kind(self) -> str:
        """What scores: 'treelite' or 'linear'."""
        return str(self.header["estimator"])

    def to_bytes(self) -> bytes:
        """The artifact stored beside model.joblib."""
        return json.dumps(self.header, separators=(",", ":")).encode() + b"\n" + self.trees

    @classmethod
    def from_bytes(cls, raw: bytes) -> CompiledScorer:
        """Load an artifact written by `to_bytes`."""
        head, _, trees = raw.partition(b"\n")
        try:
            header = json.loads(head)
            if header.get("format") not in _READS:
                raise NotCompilable(
                    f"compiled scorer format {header.get('format')!r} is not one of {_READS}"
                )
            return cls(header, trees)
        except (ValueError, KeyError, TypeError) as error:
            raise NotCompilable(f"cannot load the compiled scorer: {error}") from None

    def features(self, frame: Any) -> npt.NDArray[np.float64]:
        """The estimator's input matrix, as the fitted ColumnTransformer would make it."""
        # One conversion for all columns: a pandas column access per feature costs
        # more than the whole compiled model on one row.
        cells = frame.to_numpy(dtype=object)
        position = {name: i for i, name in enumerate(frame.columns)}
        return self._matrix(
            len(frame), {column: cells[:, position[column]].tolist() for column in position}
        )

    def features_of_rows(
        self, rows: Sequence[Sequence[Any]], columns: Sequence[str]
    ) -> npt.NDArray[np.float64]:
        """`features` for rows already checked against the contract, each a sequence of
        values in `columns` order (None for missing): no DataFrame in between."""
        if len(rows) == 1:
            x = self._one_row(dict(zip(columns, rows[0], strict=True)))
            if x is not None:
                return x
        cells = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
        return self._matrix(len(rows), dict(zip(columns, cells, strict=True)))

    def _one_row(self, row: dict[str, Any]) -> npt.NDArray[np.float64] | None:
        """`_matrix` of one row in plain floats (numpy's per-column calls cost more than the
        arithmetic), the same operations in the same order; None for a number that is
        not an int, float or None, which `_matrix` coerces as pandas does."""
        x = [0.0] * self.width
        for column, kind, spec in self._columns:
            v = row[column]
            if kind == "number":
                if v is None:
                    number = math.nan
                elif type(v) is float or type(v) is int:
                    number = float(v)
                else:
                    return None
                if "median" in spec and math.isnan(number):
                    number = spec["median"]
                if "mean" in spec:
                    number = (number - spec["mean"]) / spec["scale"]
                x[spec["at"]] = number
            elif kind == "lookup":
                table, missing, at = spec
                x[at] = (
                    table.get(v, math.nan)
                    if isinstance(v, str)
                    else _missing_or_unknown(v, missing)
                )
            else:
                index, step = spec
                if not isinstance(v, str) and _is_missing(v):
                    v = step["fill"]
                hit = index.get(v) if isinstance(v, str) else None
                if hit is not None:
                    x[step["at"] + hit] = 1.0
        return np.array([x], dtype=np.float64)

    def _matrix(self, n: int, cells: dict[str, Sequence[Any]]) -> npt.NDArray[np.float64]:
        x = np.zeros((n, self.width), dtype=np.float64)
        for column, kind, spec in self._columns:
            values = cells[column]
            if kind == "number":
                x[:, spec["at"]] = _numbers(values, spec)
            elif kind == "lookup":
                table, missing, at = spec
                x[:, at] = [
                    table.get(v, math.nan)
                    if isinstance(v, str)
                    else _missing_or_unknown(v, missing)
                    for v in values
                ]
            else:
                index, step = spec
                at = step["at"]
                fill = step["fill"]
                for row, v in enumerate(values):
                    if not isinstance(v, str) and _is_missing(v):
                        v = fill
                    hit = index.get(v) if isinstance(v, str) else None
                    if hit is not None:
                        x[row, at + hit] = 1.0
        return x

    def outputs(self, frame: Any) -> npt.NDArray[np.float64]:
        """`Predictor.outputs`: per row, a classifier's class probabilities in the order of
        its classes_, or a regressor's predicted value (one column)."""
        return self._outputs(self.features(frame))

    def predict_rows(
        self, rows: Sequence[Sequence[Any]], columns: Sequence[str]
    ) -> npt.NDArray[np.float64]:
        """`outputs` of checked rows (see `features_of_rows`): the same numbers."""
        return self._outputs(self.features_of_rows(rows, columns))

    def _outputs(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.header.get("float32"):
            x = x.astype(np.float32).astype(np.float64)
        if self._model is not None:
            # Threads cost more than they save on the few rows of a request.
            threads = 1 if len(x) <= _ROWS_PER_THREAD else -1
            z = np.asarray(self._model.predict(x, threads), dtype=np.float64).reshape(len(x), -1)
            if self.link == "softmax":
                return _softmax(z)
            if z.shape[1] == self.outputs_per_row:
                return z
            positive = z[:, -1]  # a binary model's one output, P(classes_[1])
        elif self.link == "softmax":
            return _softmax(x @ self._coef.T + self._intercept)
        elif self.link == "identity":
            return (x @ self._coef + self._intercept).reshape(len(x), 1)
        else:
            # scipy's expit, as scikit-learn scores: a margin below about -709 overflows
            # exp to inf and gives exactly 0, which is the answer, not a fault to warn of.
            with np.errstate(over="ignore"):
                positive = 1.0 / (1.0 + np.exp(-(x @ self._coef + self._intercept)))
        return np.column_stack([1.0 - positive, positive])


def _softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per row, as scikit-learn's multinomial models take it. treelite's own softmax differs
    from scikit-learn's by up to 1e-7, so a softmax tree model is asked for its margins."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


class _Trees:
    """`treelite.gtil.predict` without what it redoes on every call.

    Each call builds its configuration (a dataclass, serialised to JSON and parsed by
    the library) and asks the model for its types three times: more than half of the
    time it takes on one row. Here that is done once and the library's predict is
    called directly, as `treelite.gtil.gtil._predict_impl` calls it (treelite 4.8.1,
    pinned for serving); a test checks the answers are treelite's own.
    """

    def __init__(self, model: Any, margin: bool = False) -> None:
        import ctypes

        from treelite import util
        from treelite.core import _LIB
        from treelite.gtil.gtil import GTILConfig

        types: Any = util  # untyped

        self.model = model
        self.margin = margin
        self._lib = _LIB
        kind = "raw" if margin else "default"
        self._configs = {n: GTILConfig(nthread=n, predict_type=kind) for n in (1, -1)}
        self._input_type = model.input_type.encode()
        self._input = types.typestr_to_numpy_type(model.input_type)
        self._output = types.typestr_to_numpy_type(model.output_type)
        self._input_pointer = ctypes.POINTER(types.typestr_to_ctypes_type(model.input_type))
        self._output_pointer = ctypes.POINTER(types.typestr_to_ctypes_type(model.output_type))
        self._uint64 = ctypes.c_uint64
        self.num_feature = model.num_feature
        # The output's shape past its rows, asked of the library once.
        shape = ctypes.POINTER(ctypes.c_uint64)()
        ndim = ctypes.c_uint64()
        self._check(
            _LIB.TreeliteGTILGetOutputShape(
                model.handle,
                ctypes.c_uint64(1),
                self._configs[1].handle,
                ctypes.byref(shape),
                ctypes.byref(ndim),
            )
        )
        self._per_row = tuple(int(shape[i]) for i in range(1, ndim.value))

    def _check(self, status: int) -> None:
        from treelite.core import _check_call

        _check_call(status)

    def predict(self, x: npt.NDArray[np.float64], nthread: int) -> npt.NDArray[Any]:
        """What `treelite.gtil.predict(model, x, nthread=nthread, pred_margin=margin)` returns."""
        if x.ndim != 2 or x.shape[1] != self.num_feature:
            import treelite.gtil

            return np.asarray(
                treelite.gtil.predict(self.model, x, nthread=nthread, pred_margin=self.margin)
            )
        data = np.ascontiguousarray(x, dtype=self._input)
        out = np.zeros((len(data), *self._per_row), dtype=self._output)
        self._check(
            self._lib.TreeliteGTILPredict(
                self.model.handle,
                data.ctypes.data_as(self._input_pointer),
                self._input_type,
                self._uint64(len(data)),
                out.ctypes.data_as(self._output_pointer),
                self._configs[1 if nthread == 1 else -1].handle,
            )
        )
        return out


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _missing_or_unknown(value: Any, missing: float) -> float:
    return missing if _is_missing(value) else math.nan


def _numbers(values: Sequence[Any], step: dict[str, Any]) -> npt.NDArray[np.float64]:
    try:
        x: npt.NDArray[np.float64] = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):  # text or pandas' NA: coerced as feature_frame does
        import pandas as pd

        x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
    if "median" in step:
        x = np.where(np.isnan(x), step["median"], x)
    if "mean" in step:
        x = (x - step["mean"]) / step["scale"]
    return x


def compile_model(model: Any, numeric: Sequence[str], categorical: Sequence[str]) -> CompiledScorer:
    """Compile a fitted Pipeline(preprocess=ColumnTransformer, model=estimator) built by training.

    Raises NotCompilable naming the first step it cannot reproduce exactly.
    """
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        raise NotCompilable(
            f"{type(model).__name__} is not a two-step preprocess/estimator Pipeline"
        )
    preprocess, estimator = model.steps[0][1], model.steps[1][1]
    steps, width = _preprocess(preprocess, list(numeric), list(categorical))
    name = type(estimator).__name__
    classes = getattr(estimator, "classes_", None)
    if classes is not None and len(classes) < 2:
        raise NotCompilable(f"{name} has classes {classes}, fewer than two")
    task = "regression" if classes is None else "binary" if len(classes) == 2 else "multiclass"
    outputs = 1 if classes is None else len(classes)
    header: dict[str, Any] = {
        "format": _FORMAT,
        "steps": steps,
        "width": width,
        "task": task,
        "outputs": outputs,
    }
    if name in _TREES:
        import treelite.sklearn

        try:
            trees = treelite.sklearn.import_model(estimator)
            # treelite's softmax is not scikit-learn's to 1e-9: the scorer takes the margins.
            softmax = trees.get_header_accessor().get_field("postprocessor") == "softmax"
            raw = trees.serialize_bytes()
        except Exception as error:  # treelite refuses what it does not support
            raise NotCompilable(f"treelite cannot import {name}: {error}") from None
        # scikit-learn's own trees compare float32 inputs; the histogram ones, float64.
        single = not name.startswith("HistGradientBoosting")
        return CompiledScorer(
            {
                **header,
                "estimator": "treelite",
                "source": name,
                "float32": single,
                "link": "softmax" if softmax else "",
            },
            raw,
        )
    if name == "LogisticRegression":
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        rows = 1 if outputs == 2 else outputs
        if coef.shape != (rows, width) or intercept.shape != (rows,):
            raise NotCompilable(
                f"LogisticRegression has coefficients {coef.shape}, not ({rows}, {width})"
            )
        binary = outputs == 2
        return CompiledScorer(
            {
                **header,
                "estimator": "linear",
                "source": name,
                "link": "logistic" if binary else "softmax",
                "coef": coef[0].tolist() if binary else coef.tolist(),
                "intercept": float(intercept[0]) if binary else intercept.tolist(),
            }
        )
    if classes is None and _linear_regressor(estimator):
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        if coef.size != width or coef.ndim > 2 or intercept.size != 1:
            raise NotCompilable(
                f"{name} has coefficients {coef.shape} and intercept {intercept.shape}, "
                f"not ({width},) and one"
            )
        return CompiledScorer(
            {
                **header,
                "estimator": "linear",
                "source": name,
                "link": "identity",
                "coef": coef.reshape(width).tolist(),
                "intercept": float(intercept.reshape(())),
            }
        )
    raise NotCompilable(
        f"{name} has no compiled scorer "
        "(tree ensembles, LogisticRegression and linear regressors do)"
    )


def _linear_regressor(estimator: Any) -> bool:
    """Whether `predict` is `x @ coef_ + intercept_`: scikit-learn's linear regressors, but
    not its generalised linear models, whose prediction goes through a link."""
    from sklearn.base import is_regressor
    from sklearn.linear_model import GammaRegressor, PoissonRegressor, TweedieRegressor

    module = type(estimator).__module__
    return (
        is_regressor(estimator)
        and module.startswith(("sklearn.linear_model.", "sklearn.svm."))
        and not isinstance(estimator, PoissonRegressor | GammaRegressor | TweedieRegressor)
        and hasattr(estimator, "coef_")
        and hasattr(estimator, "intercept_")
    )


def _preprocess(
    preprocess: Any, numeric: list[str], categorical: list[str]
) -> tuple[list[dict[str, Any]], int]:
    from sklearn.compose import ColumnTransformer

    if not isinstance(preprocess, ColumnTransformer):
        raise NotCompilable(f"the preprocessing step is a {type(preprocess).__name__}")
    steps: list[dict[str, Any]] = []
    width = 0
    for label, transformer, columns in preprocess.transformers_:
        columns = list(columns)
        if label == "remainder":
            if transformer == "drop" or not columns:
                continue
            if transformer != "passthrough" and not _identity(transformer):
                raise NotCompilable(f"the remainder is {transformer!r}")
            columns = [(numeric + categorical)[i] if isinstance(i, int) else i for i in columns]
            for column in columns:
                if column not in numeric:
                    raise NotCompilable(f"column {column!r} passes through unencoded")
                steps.append({"column": column, "kind": "number", "at": width})
                width += 1
            continue
        if not columns:
            continue  # a transformer given no columns is left unfitted and adds none
        inner = list(transformer.steps) if hasattr(transformer, "steps") else [(label, transformer)]
        kinds = [type(t).__name__ for _, t in inner]
        if kinds == ["OrdinalEncoder"]:
            width = _ordinal(inner[0][1], columns, steps, width)
        elif kinds == ["SimpleImputer", "OneHotEncoder"]:
            width = _onehot(inner[0][1], inner[1][1], columns, steps, width)
        elif kinds == ["SimpleImputer", "StandardScaler"]:
            width = _scaled(inner[0][1], inner[1][1], columns, steps, width)
        else:
            raise NotCompilable(f"the {label!r} steps {kinds} have no compiled form")
    return steps, width


def _ordinal(encoder: Any, columns: list[str], steps: list[dict[str, Any]], width: int) -> int:
    if encoder.handle_unknown != "use_encoded_value" or not _is_nan(encoder.unknown_value):
        raise NotCompilable("OrdinalEncoder must encode unknown categories as NaN")
    if getattr(encoder, "_infrequent_enabled", False):
        raise NotCompilable("OrdinalEncoder groups infrequent categories")
    for column, categories in zip(columns, encoder.categories_, strict=True):
        known = [c for c in categories.tolist() if isinstance(c, str)]
        if len(known) != sum(1 for c in categories.tolist() if not _is_missing(c)):
            raise NotCompilable(f"column {column!r} has categories that are not strings")
        # A missing value is encoded as such only if training saw one; else it is unknown.
        seen_missing = any(_is_missing(c) for c in categories.tolist())
        missing = encoder.encoded_missing_value if seen_missing else math.nan
        codes = {c: i for i, c in enumerate(categories.tolist()) if isinstance(c, str)}
        steps.append(
            {
                "column": column,
                "kind": "lookup",
                "codes": codes,
                "missing": None if _is_nan(missing) else float(missing),
                "at": width,
            }
        )
        width += 1
    return width


def _onehot(
    imputer: Any, encoder: Any, columns: list[str], steps: list[dict[str, Any]], width: int
) -> int:
    if (
        imputer.strategy != "constant"
        or imputer.add_indicator
        or not isinstance(imputer.fill_value, str)
    ):
        raise NotCompilable("categorical imputation must fill a constant string with no indicator")
    if encoder.handle_unknown != "ignore" or encoder.drop is not None:
        raise NotCompilable("OneHotEncoder must ignore unknown categories and drop none")
    if getattr(encoder, "_infrequent_enabled", False):
        raise NotCompilable("OneHotEncoder groups infrequent categories")
    for column, categories in zip(columns, encoder.categories_, strict=True):
        values = categories.tolist()
        if not all(isinstance(c, str) for c in values):
            raise NotCompilable(f"column {column!r} has categories that are not strings")
        steps.append(
            {
                "column": column,
                "kind": "onehot",
                "categories": values,
                "fill": imputer.fill_value,
                "at": width,
            }
        )
        width += len(values)
    return width


def _scaled(
    imputer: Any, scaler: Any, columns: list[str], steps: list[dict[str, Any]], width: int
) -> int:
    if imputer.add_indicator or imputer.strategy not in ("median", "mean"):
        raise NotCompilable("numeric imputation must be a median or mean with no indicator")
    if not (scaler.with_mean and scaler.with_std):
        raise NotCompilable("StandardScaler must centre and scale")
    for i, column in enumerate(columns):
        steps.append(
            {
                "column": column,
                "kind": "number",
                "at": width,
                "median": float(imputer.statistics_[i]),
                "mean": float(scaler.mean_[i]),
                "scale": float(scaler.scale_[i]),
            }
        )
        width += 1
    return width


def _identity(transformer: Any) -> bool:
    """scikit-learn 1.9 fits a 'passthrough' remainder as a FunctionTransformer doing nothing."""
    return (
        type(transformer).__name__ == "FunctionTransformer"
        and transformer.func is None
        and transformer.inverse_func is None
    )


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def tolerance(expected: npt.NDArray[np.float64]) -> float:
    """TOLERANCE for scikit-learn's answers `expected`: absolute for probabilities, relative
    to the largest value of a regressor's (1e-9 of 3e8 is below one float64 step)."""
    largest = float(np.abs(expected).max(initial=0.0)) if np.isfinite(expected).all() else 0.0
    return TOLERANCE * max(1.0, largest)


def max_difference(scorer: CompiledScorer, expected: npt.NDArray[np.float64], frame: Any) -> float:
    """The largest absolute difference between the scorer's outputs and `expected`."""
    got = scorer.outputs(frame)
    if got.shape != expected.shape:
        return math.inf
    difference = np.abs(got - expected)
    return math.inf if np.isnan(difference).any() else float(difference.max(initial=0.0))
