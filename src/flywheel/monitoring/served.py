"""A window's served rows as the analysis reads them: from logged requests, or from a summary's
sample as columns.

Both give the same rows in the same order (requests oldest first, each request's rows in
order), so every test, metric and estimate is the same either way; a summary's sample is read
as columns because turning 20,000 rows into Python objects and back was most of a look's
analysis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from flywheel import logformat
from flywheel.config import Task
from flywheel.monitoring.logs import Prediction
from flywheel.monitoring.rescored import input_digest

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


@dataclass(frozen=True)
class Answers:
    """The window's served answers as one (rows, width) array, and which rows the task can use:
    finite, of its width (the classes, or one value) and, for a classifier, probabilities."""

    outputs: npt.NDArray[np.float64]
    usable: npt.NDArray[np.bool_]
    broken_requests: int


def answers(predictions: Sequence[Prediction], task: Task, width: int) -> Answers:
    """Every served row's answer; a row of another width is NaN, and its request broken."""
    rows: list[tuple[float, ...]] = []
    broken = 0
    for p in predictions:
        fits = [len(row) == width for row in p.outputs]
        rows.extend(
            row if ok else (math.nan,) * width for row, ok in zip(p.outputs, fits, strict=True)
        )
        values = np.array([row for row, ok in zip(p.outputs, fits, strict=True) if ok], dtype=float)
        finite = np.isfinite(values).all()
        bounded = task == "regression" or bool(((values >= 0) & (values <= 1)).all())
        broken += not (all(fits) and finite and bounded)
    outputs = np.array(rows, dtype=float).reshape(len(rows), width)
    return Answers(outputs, _usable(outputs, task), broken)


def _usable(outputs: npt.NDArray[np.float64], task: Task) -> npt.NDArray[np.bool_]:
    usable: npt.NDArray[np.bool_] = np.isfinite(outputs).all(axis=1)
    if task != "regression":
        usable &= ((outputs >= 0) & (outputs <= 1)).all(axis=1)
    return usable


class Served:
    """What the analysis reads of a window's rows (see the module)."""

    answers: Answers
    # Each request's id and number of rows, in order.
    requests: list[tuple[str, int]]

    @property
    def rows(self) -> int:
        """How many rows were served."""
        return len(self.answers.outputs)

    def numbers(self, feature: str) -> list[float]:
        """A numeric feature's value in every row that has it, as a float (NaN if not one)."""
        raise NotImplementedError

    def values(self, feature: str) -> list[Any]:
        """A feature's value in every row that has it, as logged."""
        raise NotImplementedError

    def scorable(self, features: set[str]) -> list[int]:
        """The rows with exactly `features`, and an answer of the task's width, all finite."""
        raise NotImplementedError

    def frame(self, rows: Sequence[int] | None = None) -> pd.DataFrame:
        """The features of `rows` (default: every row) as a frame, a column per feature."""
        raise NotImplementedError

    def outputs_of(self, rows: Sequence[int]) -> npt.NDArray[np.float64]:
        """The answers of `rows` (of `scorable`)."""
        return self.answers.outputs[list(rows)]

    def by_key(self, rows: Sequence[int]) -> list[int]:
        """`rows` by their request's key, then their place in the request: a uniform random
        order (the keys are hashes) that rows added later rarely change."""
        keys, places = self._keys
        chosen = np.asarray(rows, dtype=np.int64)
        return [int(i) for i in chosen[np.lexsort((places[chosen], keys[chosen]))]]

    def identities(self, rows: Sequence[int]) -> list[tuple[int, int, int]]:
        """Each row's request key, place in its request and a digest of its inputs."""
        keys, places = self._keys
        return [
            (int(keys[at]), int(places[at]), input_digest(values))
            for at, values in zip(rows, self._inputs(rows), strict=True)
        ]

    @cached_property
    def _keys(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """Every row's request key and place in its request (ordering and naming rows both
        read them)."""
        raise NotImplementedError

    def _inputs(self, rows: Sequence[int]) -> list[tuple[Any, ...]]:
        """The feature values of `rows`, in the order of their features."""
        raise NotImplementedError


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return math.nan
    try:
        return float(value)
    except ValueError:
        return math.nan


class Logged(Served):
    """Rows as logged requests carry them (a request may have features of its own)."""

    def __init__(self, predictions: Sequence[Prediction], task: Task, width: int) -> None:
        self.predictions = predictions
        self.width = width
        self.answers = answers(predictions, task, width)
        self.requests = [(p.request_id, len(p.outputs)) for p in predictions]
        self._rows = [(p, i) for p in predictions for i in range(len(p.inputs))]
        self._columns: dict[str, list[Any]] = {}
        for p in predictions:
            for row in p.inputs:
                for name, value in zip(p.features, row, strict=True):
                    self._columns.setdefault(name, []).append(value)

    def numbers(self, feature: str) -> list[float]:
        return [_as_float(v) for v in self._columns.get(feature, [])]

    def values(self, feature: str) -> list[Any]:
        return self._columns.get(feature, [])

    def columns(self) -> dict[str, list[Any]]:
        """Every feature's values, by name."""
        return self._columns

    def scorable(self, features: set[str]) -> list[int]:
        return [
            at
            for at, (p, i) in enumerate(self._rows)
            if set(p.features) == features
            and len(p.outputs[i]) == self.width
            and all(math.isfinite(v) for v in p.outputs[i])
        ]

    def outputs_of(self, rows: Sequence[int]) -> npt.NDArray[np.float64]:
        return np.array([self._rows[at][0].outputs[self._rows[at][1]] for at in rows], dtype=float)

    @cached_property
    def _keys(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        keys = {p.request_id: logformat.request_key(p.request_id) for p in self.predictions}
        return (
            np.array([keys[p.request_id] for p, _ in self._rows], dtype=np.uint64),
            np.array([i for _, i in self._rows], dtype=np.int64),
        )

    def _inputs(self, rows: Sequence[int]) -> list[tuple[Any, ...]]:
        return [tuple(self._rows[at][0].inputs[self._rows[at][1]]) for at in rows]

    def frame(self, rows: Sequence[int] | None = None) -> pd.DataFrame:
        import pandas as pd

        chosen = self._rows if rows is None else [self._rows[at] for at in rows]
        return pd.DataFrame.from_records(
            [dict(zip(p.features, p.inputs[i], strict=True)) for p, i in chosen]
        )


class Sampled(Served):
    """A summary's sample (`logformat` columns typed by the contract) as columns, in the order
    its requests would be read one by one."""

    def __init__(self, table: pa.Table, task: Task, width: int) -> None:
        import pyarrow as pa

        keys = table.column(logformat.KEY).to_numpy()
        row = table.column(logformat.ROW).to_numpy()
        times = table.column(logformat.TIME).to_numpy()
        at = np.arange(len(keys))
        # Requests by the time of their first row, ties by where each first appears; rows by
        # their place in the request.
        found, first, request = np.unique(keys, return_index=True, return_inverse=True)
        by_request = np.lexsort((at, row, request))
        grouped = request[by_request]
        head = by_request[np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])]
        rank = np.empty(len(found), dtype=np.int64)
        ordered = np.lexsort((first, times[head]))
        rank[ordered] = np.arange(len(found))
        order = np.lexsort((at, row, rank[request]))
        self.table = table.take(pa.array(order))
        self.inputs = [c for c in table.column_names if c.startswith(logformat.INPUT)]
        self.features = tuple(c[len(logformat.INPUT) :] for c in self.inputs)
        outputs = [c for c in table.column_names if c.startswith(logformat.OUTPUT)]
        if len(outputs) != width:
            raise ValueError(f"the sample has {len(outputs)} outputs, the task {width}")
        values = np.column_stack(
            [self.table.column(c).to_numpy(zero_copy_only=False).astype(float) for c in outputs]
        ).reshape(len(order), width)
        usable = _usable(values, task)
        sizes = np.bincount(rank[request], minlength=len(found))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        broken = int((np.add.reduceat(~usable, starts) > 0).sum()) if len(order) else 0
        self.answers = Answers(values, usable, broken)
        self.requests = [
            (f"{int(k):016x}", int(n)) for k, n in zip(found[ordered], sizes, strict=True)
        ]

    def numbers(self, feature: str) -> list[float]:
        name = logformat.input_column(feature)
        if name not in self.table.column_names:
            return []
        values: list[float] = (
            self.table.column(name).to_numpy(zero_copy_only=False).astype(float).tolist()
        )
        return values

    def values(self, feature: str) -> list[Any]:
        name = logformat.input_column(feature)
        return self.table.column(name).to_pylist() if name in self.table.column_names else []

    @cached_property
    def _keys(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        return (
            self.table.column(logformat.KEY).to_numpy().astype(np.uint64),
            self.table.column(logformat.ROW).to_numpy().astype(np.int64),
        )

    def _inputs(self, rows: Sequence[int]) -> list[tuple[Any, ...]]:
        import pyarrow as pa

        picked = self.table.select(self.inputs).take(pa.array(np.asarray(rows, dtype=np.int64)))
        return list(zip(*picked.to_pydict().values(), strict=True)) if rows else []

    def scorable(self, features: set[str]) -> list[int]:
        if set(self.features) != features:
            return []
        finite = np.isfinite(self.answers.outputs).all(axis=1)
        return [int(i) for i in np.flatnonzero(finite)]

    def frame(self, rows: Sequence[int] | None = None) -> pd.DataFrame:
        import pandas as pd
        import pyarrow as pa

        table = self.table.select(self.inputs)
        if rows is None:
            every: pd.DataFrame = table.rename_columns(list(self.features)).to_pandas()
            return every
        # A few rows, built from Python values as from logged requests.
        picked = table.take(pa.array(np.asarray(rows, dtype=np.int64))).to_pydict()
        return pd.DataFrame.from_records(
            [
                dict(zip(self.features, row, strict=True))
                for row in zip(*picked.values(), strict=True)
            ]
        )
