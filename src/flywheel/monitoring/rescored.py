"""The registered model's answers to the rows a skew check re-scored, kept from look to look.

A skew check re-scores a window's scorable rows with the smallest request keys (`Served.by_key`),
a uniform random choice that a window growing by a minute rarely changes. Their answers are kept
in the store beside the version's summaries, so a re-look finds them here and loads no model: it
scores only rows it has not seen, and loads the model only then. A version's model never changes,
and a row is named by its request key, its place in the request and a digest of its inputs, so a
duplicate request id with other inputs is scored afresh. A look that scored rows keeps only the
rows it used: at most `skew_sample` rows a window. A multiclass or regression version's answers
to its evaluation's newest batch (which its reference needs) are kept the same way, each row
named by the batch (`batch_rows`).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from flywheel import logformat
from flywheel.monitoring.summary import SUMMARIES
from flywheel.storage import ObjectStore

log = logging.getLogger(__name__)

# A served row: its request's key, its place in the request, a digest of its inputs.
RowId = tuple[int, int, int]
_ID = ("key", "row", "inputs")


def input_digest(values: tuple[Any, ...]) -> int:
    """64 bits naming a row's inputs (their types too: 1 and 1.0 are told apart), hashed as a
    request id is."""
    return logformat.request_key(repr(tuple((type(v).__name__, v) for v in values)))


def batch_rows(batch: str, inputs: Sequence[tuple[Any, ...]]) -> list[RowId]:
    """The rows of a stored batch (a version's evaluation's newest), named as served rows are:
    a key of the batch's name, each row's place in it, a digest of its inputs."""
    key = logformat.request_key(f"batch {batch}")
    return [(key, at, input_digest(values)) for at, values in enumerate(inputs)]


def rescored_key(model: str, version: str) -> str:
    """Where a version's re-scored rows are kept."""
    return f"{SUMMARIES}/{model}/{version}/rescored{logformat.SUFFIX}"


@dataclass
class Rescored:
    """A version's answers to re-scored rows (read from the store, or scored by this look),
    and the rows this look used."""

    known: dict[RowId, tuple[float, ...]] = field(default_factory=dict)
    used: set[RowId] = field(default_factory=set)
    scored: int = 0  # rows this look had to score

    def outputs(
        self,
        rows: Sequence[RowId],
        width: int,
        score: Callable[[list[int]], npt.NDArray[np.float64]],
    ) -> npt.NDArray[np.float64]:
        """The answers to `rows`, `width` outputs each; `score` answers the positions of those
        not known yet (or kept with another width: not this model's answers)."""
        missing = [at for at, row in enumerate(rows) if len(self.known.get(row, ())) != width]
        if missing:
            fresh = score(missing)
            for at, answer in zip(missing, fresh.tolist(), strict=True):
                self.known[rows[at]] = tuple(answer)
            self.scored += len(missing)
        self.used.update(rows)
        return np.array([self.known[row] for row in rows], dtype=float).reshape(len(rows), width)

    @property
    def changed(self) -> bool:
        """Whether this look scored rows, and so has other rows to keep than the stored ones
        (rows no longer used are dropped then, not before: a window an engine's cache served
        used its rows without asking)."""
        return self.scored > 0

    def to_bytes(self) -> bytes:
        """The rows this look used, as one Parquet file."""
        import pyarrow as pa

        ids = list(self.used)
        answers = np.array([self.known[row] for row in ids], dtype=float).reshape(len(ids), -1)
        types = (pa.uint64(), pa.int64(), pa.uint64())
        columns = {
            name: pa.array([row[i] for row in ids], kind)
            for i, (name, kind) in enumerate(zip(_ID, types, strict=True))
        }
        columns |= {
            logformat.output_column(j): pa.array(answers[:, j]) for j in range(answers.shape[1])
        }
        return logformat.to_parquet(pa.table(columns))

    @classmethod
    def from_bytes(cls, data: bytes) -> Rescored:
        """Read back what `to_bytes` wrote; a ValueError when it is not that."""
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
            key, row, inputs = (table.column(name).to_pylist() for name in _ID)
            outputs = [c for c in table.column_names if c.startswith(logformat.OUTPUT)]
            answers = zip(*(table.column(c).to_pylist() for c in outputs), strict=True)
            known = {
                (int(k), int(r), int(d)): tuple(float(v) for v in answer)
                for k, r, d, answer in zip(key, row, inputs, answers, strict=True)
            }
        except Exception as error:  # a damaged file is only a cost: the rows are scored again
            raise ValueError(f"not a file of re-scored rows ({error})") from None
        return cls(known=known)


def read_rescored(store: ObjectStore, model: str, version: str) -> Rescored:
    """A version's kept rows; none if there are none or they cannot be read (a store that is
    down still raises)."""
    key = rescored_key(model, version)
    data = store.read_optional(key)
    if data is None:
        return Rescored()
    try:
        return Rescored.from_bytes(data)
    except ValueError as error:
        log.warning("%s: %s; its rows are scored again", store.location(key), error)
        return Rescored()
