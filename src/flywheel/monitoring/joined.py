"""Delayed labels joined to every served row of the windows, not only to their samples
(`monitoring.label_join: every`): exact counts and sums of the task's headline metrics.

The join is by request key and row, over every prediction file of the windows' days and
every feedback file the look reads, and it is bounded in memory whatever the traffic: a
grace hash join. One pass spills each side's few columns (key, row, window and outputs;
key, row, time and label) to `BUCKETS` files on local disk by the top bits of the key, a
million rows at a time; then each bucket's two files are joined alone, so that the join
holds a 64th of the rows at once. Keys are the logs' 64-bit hashes of the request ids
(`logformat.request_key`), never their text.

The join keeps what the sample's join keeps (`feedback.sampled_labels` and the analysis):
a request logged twice counts its first copy; a request's newest feedback wins, and within
it a row's last label; a request's labels count only when they are exactly its rows; a row
whose answer is unusable (not finite, or a probability outside [0, 1]) is left out, and a
label the task cannot use (a class never learned, a regression label that is not a
number) is counted as unusable. On a window the sample holds whole, the figures are
therefore the sample's (the tests compare them).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from flywheel import logformat
from flywheel.contract import Contract
from flywheel.monitoring import intervals, logs
from flywheel.monitoring.intervals import Interval
from flywheel.monitoring.logs import Skipped
from flywheel.monitoring.performance import Joined
from flywheel.monitoring.tables import feedback_table, log_files, prediction_tables
from flywheel.problem import Problem
from flywheel.storage import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

_BUCKET_BITS = 6
BUCKETS = 1 << _BUCKET_BITS
_BUFFER_ROWS = 1_000_000  # rows gathered before they are spilled to the buckets' files

_LABELS = np.dtype([("key", "<u8"), ("row", "<u4"), ("time", "<f8"), ("label", "<f8")])


def _answers_dtype(width: int) -> np.dtype[Any]:
    return np.dtype([("key", "<u8"), ("row", "<u4"), ("window", "<u4"), ("out", "<f8", (width,))])


@dataclass
class _Sums:
    """Each window's sums, in arrays indexed by window."""

    windows: int
    classes: int
    values: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)

    def add(self, name: str, window: npt.NDArray[Any], weights: npt.ArrayLike | None) -> None:
        size = self.windows * (self.classes**2 if name == "confusion" else 1)
        found = np.bincount(window, weights=weights, minlength=size).astype(np.float64)
        have = self.values.get(name)
        self.values[name] = found if have is None else have + found

    def get(self, name: str, at: int) -> float:
        have = self.values.get(name)
        return 0.0 if have is None else float(have[at])


@dataclass(frozen=True)
class Reach:
    """What a look joins: its windows, the days of prediction files they read, the days of
    feedback files, and the time labels count until."""

    spans: Sequence[tuple[datetime, datetime]]
    prediction_days: Sequence[date]
    label_days: Sequence[date]
    labelled_until: datetime


def join_labels(
    store: ObjectStore,
    model: str,
    served: Mapping[str, Contract],
    known: Sequence[str],
    reach: Reach,
    confidence: float,
) -> dict[str, dict[int, Joined]]:
    """Every labelled row of each window of each `served` version (by version, then by the
    window start's timestamp), joined as the module says. A request's feedback is looked
    for in every `known` version's log, as the sample's join does. What cannot be read was
    counted by the summaries, and is not counted again here."""
    problems = {c.problem.model_dump_json(): c.problem for c in served.values()}
    if len(problems) > 1:  # versions of other classes: each one's labels coded its way
        out: dict[str, dict[int, Joined]] = {}
        for name in problems:
            alike = {v: c for v, c in served.items() if c.problem.model_dump_json() == name}
            out |= join_labels(store, model, alike, known, reach, confidence)
        return out
    if not served:
        return {}
    problem = next(iter(served.values())).problem
    spans = reach.spans
    starts = np.array([s.timestamp() for s, _ in spans], dtype=np.float64)
    ends = np.array([e.timestamp() for _, e in spans], dtype=np.float64)
    versions = list(served)
    sums = _Sums(len(spans) * len(versions), problem.width if problem.is_classifier else 1)
    answers = _answers_dtype(problem.width)
    skipped = Skipped()  # the summaries count what is skipped: not twice
    with tempfile.TemporaryDirectory(prefix="flywheel-join-") as scratch:
        folder = Path(scratch)
        labelled, labels = _spill(
            folder / "labels",
            _LABELS,
            (
                _label_rows(table, problem, reach.labelled_until)
                for version in known
                for day in reach.label_days
                for file in log_files(store, logs.FEEDBACK, model, version, day)
                if (table := feedback_table(store, file, model, skipped)) is not None
            ),
        )
        # No feedback: no prediction file needs reading.
        rows, _ = _spill(
            folder / "served",
            answers,
            ()
            if not labels
            else (
                _answer_rows(table, answers, starts, ends, slot * len(spans))
                for slot, (version, contract) in enumerate(served.items())
                for day in reach.prediction_days
                for file in log_files(store, logs.PREDICTIONS, model, version, day)
                for table in prediction_tables(store, file, model, contract, skipped, answers=True)
            ),
        )
        for bucket in range(BUCKETS):
            pairs = _join_bucket(
                np.fromfile(rows[bucket], dtype=answers),
                np.fromfile(labelled[bucket], dtype=_LABELS),
            )
            _add(sums, pairs, problem)
    joined: dict[str, dict[int, Joined]] = {}
    for slot, version in enumerate(versions):
        for i in range(len(spans)):
            at = slot * len(spans) + i
            if sums.get("labelled", at) or sums.get("unusable", at):
                joined.setdefault(version, {})[int(starts[i])] = _joined(
                    sums, at, problem, confidence
                )
    return joined


def _answer_rows(
    table: pa.Table,
    dtype: np.dtype[Any],
    starts: npt.NDArray[np.float64],
    ends: npt.NDArray[np.float64],
    first: int,
) -> npt.NDArray[Any]:
    """A prediction table's rows inside the windows, as `dtype`'s records (the window's
    slot counted from `first`)."""
    time = table.column(logformat.TIME).to_numpy()
    window = np.searchsorted(starts, time, side="right") - 1
    inside = (window >= 0) & (time < ends[np.maximum(window, 0)])
    out = np.empty(int(inside.sum()), dtype=dtype)
    out["key"] = table.column(logformat.KEY).to_numpy()[inside]
    out["row"] = table.column(logformat.ROW).to_numpy()[inside]
    out["window"] = window[inside] + first
    names = [c for c in table.column_names if c.startswith(logformat.OUTPUT)]
    for i, name in enumerate(names):
        out["out"][:, i] = table.column(name).to_numpy(zero_copy_only=False)[inside]
    return out


def _label_rows(table: pa.Table, problem: Problem, until: datetime) -> npt.NDArray[Any]:
    """A feedback table's rows before `until`, each label as the task scores it: a class's
    code, or a regression's number; NaN for a label the task cannot use."""
    import pyarrow.compute as pc

    time = table.column(logformat.TIME).to_numpy()
    kept = time < until.timestamp()
    out = np.empty(int(kept.sum()), dtype=_LABELS)
    out["key"] = table.column(logformat.KEY).to_numpy()[kept]
    out["row"] = table.column(logformat.ROW).to_numpy()[kept]
    out["time"] = time[kept]
    number = table.column(logformat.LABEL_NUMBER).to_numpy(zero_copy_only=False)[kept]
    text = table.column(logformat.LABEL_TEXT)
    label = np.full(len(out), np.nan)
    has_text = pc.is_valid(text).to_numpy(zero_copy_only=False)[kept]
    if problem.is_classifier:
        # A label is read as the sample's join reads it (its text, else its number), and
        # each distinct value coded once.
        encoded = pc.dictionary_encode(text).combine_chunks()
        names = encoded.dictionary.to_pylist()
        by_name = np.array([_code(problem, n) for n in names] + [math.nan])
        at = pc.fill_null(encoded.indices, len(names)).to_numpy()[kept]
        label[has_text] = by_name[at[has_text]]
        numbered = ~has_text & ~np.isnan(number)
        values, inverse = np.unique(number[numbered], return_inverse=True)
        label[numbered] = np.array([_code(problem, float(v)) for v in values])[inverse]
    else:
        label[~has_text] = number[~has_text]
    out["label"] = label
    return out


def _code(problem: Problem, value: Any) -> float:
    return float(problem.codes([value])[0]) if problem.known([value])[0] else math.nan


def _spill(
    folder: Path, dtype: np.dtype[Any], parts: Iterable[npt.NDArray[Any]]
) -> tuple[list[Path], int]:
    """`parts`' records appended to `BUCKETS` files by the top bits of their keys, a buffer
    of about `_BUFFER_ROWS` at a time; the files, by bucket, and how many records."""
    folder.mkdir()
    paths = [folder / f"{b:02d}" for b in range(BUCKETS)]
    with ExitStack() as stack:
        handles: list[IO[bytes]] = [stack.enter_context(p.open("wb")) for p in paths]
        pending: list[npt.NDArray[Any]] = []
        held = total = 0

        def flush() -> None:
            if not pending:
                return
            rows = np.concatenate(pending)
            pending.clear()
            bucket = (rows["key"] >> np.uint64(64 - _BUCKET_BITS)).astype(np.intp)
            order = np.argsort(bucket, kind="stable")
            bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
            rows = rows[order]
            for b in range(BUCKETS):
                if bounds[b + 1] > bounds[b]:
                    rows[bounds[b] : bounds[b + 1]].tofile(handles[b])

        for part in parts:
            pending.append(part)
            held += len(part)
            total += len(part)
            if held >= _BUFFER_ROWS:
                flush()
                held = 0
        flush()
    return paths, total


def _runs(*columns: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """For rows sorted by `columns`, True where a run of equal values starts."""
    n = len(columns[0])
    starts = np.zeros(n, dtype=bool)
    if n:
        starts[0] = True
        for column in columns:
            starts[1:] |= column[1:] != column[:-1]
    return starts


def _join_bucket(served: npt.NDArray[Any], labels: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """One bucket's served rows with their labels: (window, outputs, label) records of the
    rows joined, each request's first copy with its newest feedback, whole requests only."""
    # A row's first copy, in the order the files were read (the sorts are stable).
    served = served[np.lexsort((served["row"], served["key"]))]
    served = served[_runs(served["key"], served["row"])]
    # A request's newest feedback, and within it each row's last label.
    labels = labels[np.lexsort((labels["time"], labels["key"]))]
    # Sorted by time within a request: its newest is its last.
    first = _runs(labels["key"])
    request = np.cumsum(first) - 1
    last = np.r_[np.flatnonzero(first)[1:] - 1, len(labels) - 1] if len(labels) else first
    labels = labels[labels["time"] == labels["time"][last][request]]
    labels = labels[np.lexsort((labels["row"], labels["key"]))[::-1]]
    labels = labels[_runs(labels["key"], labels["row"])][::-1]
    # Both sides are sorted by (key, row), each pair once: a row matches where the next
    # record of the two together is its label.
    key = np.concatenate([served["key"], labels["key"]])
    row = np.concatenate([served["row"], labels["row"]])
    side = np.concatenate([np.zeros(len(served), np.int8), np.ones(len(labels), np.int8)])
    order = np.lexsort((side, row, key))
    at = np.flatnonzero(
        (side[order][:-1] == 0)
        & (key[order][1:] == key[order][:-1])
        & (row[order][1:] == row[order][:-1])
    )
    left, right = order[at], order[at + 1] - len(served)
    # A request counts when its labels are exactly its rows: as many rows, labels and pairs.
    matched = served["key"][left]
    whole = (_count(served["key"], matched) == _count(labels["key"], matched)) & (
        _count(matched, matched) == _count(served["key"], matched)
    )
    pair = np.dtype([("window", "<u4"), ("out", served.dtype["out"]), ("label", "<f8")])
    out = np.empty(int(whole.sum()), dtype=pair)
    out["window"] = served["window"][left[whole]]
    out["out"] = served["out"][left[whole]]
    out["label"] = labels["label"][right[whole]]
    return out


def _count(sorted_keys: npt.NDArray[np.uint64], keys: npt.NDArray[np.uint64]) -> Any:
    """How many times each of `keys` is in `sorted_keys`."""
    return np.searchsorted(sorted_keys, keys, side="right") - np.searchsorted(sorted_keys, keys)


def _add(sums: _Sums, pairs: npt.NDArray[Any], problem: Problem) -> None:
    """One bucket's pairs added to each window's sums."""
    outputs = pairs["out"]
    usable = np.isfinite(outputs).all(axis=1)
    if problem.is_classifier:
        usable &= ((outputs >= 0) & (outputs <= 1)).all(axis=1)
    pairs, outputs = pairs[usable], outputs[usable]
    known = ~np.isnan(pairs["label"])
    window = pairs["window"].astype(np.intp)
    sums.add("unusable", window[~known], None)
    pairs, outputs, window = pairs[known], outputs[known], window[known]
    sums.add("labelled", window, None)
    if problem.is_classifier:
        y = pairs["label"].astype(np.intp)
        if problem.task == "binary":
            predicted = (outputs[:, -1] >= 0.5).astype(np.intp)
            loss = intervals.row_log_loss(y, outputs[:, -1])
        else:
            predicted = outputs.argmax(axis=1)
            chosen = outputs[np.arange(len(y)), y]
            loss = -np.log(np.clip(chosen, 1e-15, 1.0))
        k = sums.classes
        sums.add("confusion", window * k * k + y * k + predicted, None)
        sums.add("loss", window, loss)
        sums.add("loss_squares", window, loss**2)
        return
    y, error = pairs["label"], outputs[:, 0] - pairs["label"]
    zero = np.isclose(y, 0.0)
    relative = np.where(zero, 0.0, np.abs(error) / np.where(zero, 1.0, np.abs(y)))
    for name, values in (
        ("squared", error**2),
        ("squared_squares", error**4),
        ("absolute", np.abs(error)),
        ("relative", relative),
        ("relative_squares", relative**2),
        ("zero_labels", zero.astype(float)),
        ("label", y),
        ("prediction", outputs[:, 0]),
    ):
        sums.add(name, window, values)


def _joined(sums: _Sums, at: int, problem: Problem, confidence: float) -> Joined:
    """One window's `Joined` from its sums."""
    n = int(sums.get("labelled", at))
    unusable = int(sums.get("unusable", at))
    if n == 0:
        return Joined(labelled=0, unusable_labels=unusable)

    def mean(total: str, squares: str) -> Interval:
        return intervals.mean_of_sums(n, sums.get(total, at), sums.get(squares, at), confidence)

    if problem.is_classifier:
        k = sums.classes
        counts = sums.values["confusion"][at * k * k : (at + 1) * k * k].reshape(k, k)
        return Joined(
            labelled=n,
            unusable_labels=unusable,
            accuracy=intervals.wilson(int(np.trace(counts)), n, confidence),
            log_loss=mean("loss", "loss_squares"),
            confusion=tuple(tuple(int(c) for c in line) for line in counts),
        )
    squared = mean("squared", "squared_squares")
    return Joined(
        labelled=n,
        unusable_labels=unusable,
        rmse=intervals.rooted(squared),
        mae=mean("absolute", "squared"),
        mape=None if sums.get("zero_labels", at) else mean("relative", "relative_squares"),
        mean_label=sums.get("label", at) / n,
        mean_prediction=sums.get("prediction", at) / n,
    )
