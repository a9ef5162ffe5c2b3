"""The learning problem: binary, multiclass or regression, from `model.task` or inferred from
the label as scikit-learn's `type_of_target` does, and for a classifier the class set and its
order, which the contract fixes.

Classifiers are scored on class codes (a label's index in `classes`, the order of the fitted
model's `classes_`); regressions on the label as floats.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flywheel.config import Task
from flywheel.errors import FlywheelError
from flywheel.records import Record

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

log = logging.getLogger(__name__)

# Integer labels with more distinct values than this could be classes or quantities: the task
# must be said (model.task).
MAX_INFERRED_CLASSES = 20

Label = str | int | float | bool


class ProblemError(FlywheelError, ValueError):
    """The label cannot be the configured (or inferred) task."""


class Problem(Record):
    """What is predicted: the task, the label's column and, for a classifier, its classes."""

    task: Task
    label: str
    classes: tuple[Label, ...] = ()
    inferred: bool = False

    @property
    def is_classifier(self) -> bool:
        """Whether the task is binary or multiclass."""
        return self.task != "regression"

    @property
    def width(self) -> int:
        """How many numbers a served answer has for each row: one per class, or one."""
        return len(self.classes) if self.is_classifier else 1

    @property
    def output_names(self) -> list[str]:
        """The names of a served answer's columns: one per class, or the label's."""
        return [str(c) for c in self.classes] if self.is_classifier else [self.label]

    def describe(self) -> str:
        """The problem in a few words, for run output and reports."""
        if not self.is_classifier:
            return f"regression of {self.label!r}"
        shown = ", ".join(str(c) for c in self.classes[:6])
        more = f" (+{len(self.classes) - 6} more)" if len(self.classes) > 6 else ""
        return f"{self.task} classification of {self.label!r}: {shown}{more}"

    def codes(self, values: Any, where: str = "") -> npt.NDArray[np.int64]:
        """Each label's index in `classes`; a ProblemError naming a class never seen in
        training (and `where` it was found)."""
        import numpy as np
        import pandas as pd

        series = pd.Series(values)
        keys = self._codes_by_key()
        out = np.empty(len(series), dtype=np.int64)
        unseen: list[str] = []
        seen: dict[tuple[type, Any], int | None] = {}
        for i, value in enumerate(series.tolist()):
            # Keyed by type too, so that 1 and True (equal, with one hash) stay apart.
            try:
                code = seen[(type(value), value)]
            except KeyError:
                code = seen.setdefault((type(value), value), keys.get(_key(value)))
            except TypeError:  # unhashable
                code = keys.get(_key(value))
            if code is None:
                unseen.append(repr(value))
                code = -1
            out[i] = code
        if unseen:
            shown = ", ".join(sorted(set(unseen))[:5])
            place = f" in {where}" if where else ""
            raise ProblemError(
                f"{self.label}: class {shown}{place} was never seen in training "
                f"(classes: {', '.join(str(c) for c in self.classes)})"
            )
        return out

    def known(self, values: Any) -> npt.NDArray[np.bool_]:
        """Whether each label is one of `classes` (every one, for a regression)."""
        import numpy as np
        import pandas as pd

        series = pd.Series(values)
        if not self.is_classifier:
            return np.ones(len(series), dtype=bool)
        codes = self._codes_by_key()
        seen: dict[tuple[type, Any], bool] = {}
        out = np.empty(len(series), dtype=bool)
        for i, value in enumerate(series.tolist()):
            try:
                out[i] = seen[(type(value), value)]
            except KeyError:
                out[i] = seen.setdefault((type(value), value), _key(value) in codes)
            except TypeError:  # unhashable
                out[i] = _key(value) in codes
        return out

    def _codes_by_key(self) -> dict[Any, int]:
        """Each class's code by its comparable key (`_key`)."""
        return {_key(c): i for i, c in enumerate(self.classes)}

    def targets(self, values: Any) -> npt.NDArray[np.float64]:
        """A regression's label as floats."""
        import numpy as np
        import pandas as pd

        return np.asarray(pd.to_numeric(pd.Series(values)), dtype=np.float64)


def _key(value: Any) -> Any:
    """A label as a comparable key: 1 and 1.0 are one, '1' another; numpy scalars become
    Python's."""
    value = _python(value)
    if isinstance(value, float) and value.is_integer():
        return ("number", int(value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("number", value)
    return (type(value).__name__, value)


def _python(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else as it is."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _plain(value: Any) -> Label:
    """A label as the contract stores it: whole floats as ints, anything odd as its str."""
    plain = _python(value)
    if isinstance(plain, float) and plain.is_integer():
        return int(plain)
    if isinstance(plain, str | int | float | bool):
        return plain
    return str(plain)


def infer_task(values: pd.Series, label: str) -> Task:
    """The task a label's values make, as scikit-learn's `type_of_target` reads them; a
    ProblemError when they could be several (integers with many values) or none."""
    import pandas as pd
    from sklearn.utils.multiclass import type_of_target

    clean = values.dropna()
    if clean.empty:
        raise ProblemError(f"{label}: the label has no values to infer model.task from")
    kind = type_of_target(clean.to_numpy())
    distinct = clean.nunique()
    if kind == "binary":
        return "binary"
    if kind == "continuous":
        return "regression"
    if kind == "multiclass":
        numeric = pd.api.types.is_numeric_dtype(clean)
        if numeric and distinct > MAX_INFERRED_CLASSES:
            raise ProblemError(
                f"{label}: {distinct} distinct whole numbers could be classes or a quantity; "
                "set model.task to multiclass or regression"
            )
        return "multiclass"
    raise ProblemError(
        f"{label}: a label scikit-learn reads as {kind!r} is not binary, multiclass or regression"
    )


def check_label(values: pd.Series, task: Task, label: str, where: str = "the window") -> None:
    """A ProblemError naming the first way `values` cannot be `task`'s label."""
    import numpy as np
    import pandas as pd

    clean = values.dropna()
    if task == "regression":
        numbers = pd.to_numeric(clean, errors="coerce")
        if pd.api.types.is_bool_dtype(clean) or numbers.isna().any():
            bad = clean[numbers.isna()].astype(str).unique()[:3]
            raise ProblemError(
                f"{label}: a regression label must be numbers, found "
                f"{', '.join(repr(v) for v in bad) or 'booleans'} in {where}"
            )
        if not np.isfinite(numbers.to_numpy(dtype=float)).all():
            raise ProblemError(f"{label}: a regression label must be finite, in {where}")
        return
    distinct = clean.nunique()
    if distinct < 2:
        seen = ", ".join(repr(_plain(v)) for v in clean.unique()) or "none"
        raise ProblemError(
            f"{label}: a {task} label needs at least two classes, {where} has {distinct} ({seen})"
        )
    if task == "binary" and distinct > 2:
        raise ProblemError(
            f"{label}: a binary label has two classes, {where} has {distinct}; "
            "set model.task: multiclass"
        )
    if pd.api.types.is_float_dtype(clean) and not (clean == clean.round()).all():
        raise ProblemError(
            f"{label}: a {task} label takes whole numbers or names, {where} has fractions; "
            "set model.task: regression"
        )


def classes_of(values: pd.Series) -> tuple[Label, ...]:
    """The classes of a label in scikit-learn's order (numpy's sorted unique values)."""
    import numpy as np

    return tuple(_plain(v) for v in np.unique(values.dropna().to_numpy()))


def resolve(configured: Task | None, values: pd.Series, label: str) -> Problem:
    """The problem of a window's label: the configured task, or the one inferred (logged), with
    the label checked to fit it."""
    task = configured or infer_task(values, label)
    check_label(values, task, label)
    problem = Problem(
        task=task,
        label=label,
        classes=() if task == "regression" else classes_of(values),
        inferred=configured is None,
    )
    if configured is None:
        log.info("model.task is not set: inferred %s from the label", problem.describe())
    return problem


def check_estimator(cls: type[Any], task: Task, key: str) -> None:
    """A ProblemError when the estimator class cannot learn `task`: a regressor for a
    classification, a classifier without predict_proba, or a classifier for a regression."""
    from sklearn.base import is_classifier, is_regressor

    name = cls.__name__
    try:
        instance = cls()
    except TypeError:
        instance = None
    classifier = is_classifier(instance) if instance is not None else hasattr(cls, "classes_")
    if task == "regression":
        if classifier or (instance is not None and not is_regressor(instance)):
            raise ProblemError(
                f"{key}.estimator: {name} is not a regressor, and the task is {task}"
            )
        return
    if not classifier:
        raise ProblemError(f"{key}.estimator: {name} is not a classifier, and the task is {task}")
    if not hasattr(cls, "predict_proba"):
        raise ProblemError(f"{key}.estimator: {name} is a classifier without predict_proba")


def from_model(model: Any, label: str = "prediction") -> Problem:
    """The problem a fitted model was trained for: its classes, or a regression."""
    classes: Sequence[Any] | None = getattr(model, "classes_", None)
    if classes is None:
        return Problem(task="regression", label=label)
    return Problem(
        task="binary" if len(classes) == 2 else "multiclass",
        label=label,
        classes=tuple(_plain(c) for c in classes),
    )
