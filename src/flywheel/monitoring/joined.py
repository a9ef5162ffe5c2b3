"""Delayed labels joined to every served row of the windows, not only to their samples
(`monitoring.label_join: every`): exact counts and sums of the task's headline metrics,
and exact counts of two kinds of bad input, rows logged again and feedback for requests
never logged.

The join is by request key and row, over every prediction file of the windows' days and
every feedback file the look reads, and it is bounded in memory whatever the traffic: a
grace hash join. One pass spills each side's few columns (key, row, file, window and
outputs; key, row, file, version, time and label) to `BUCKETS` files on local disk by the
top bits of the key, a million rows at a time, in the look's worker processes when it has
them (each its share of the files, in files of its own); then each bucket's files are
joined alone, so that the join holds a 64th of the rows at once. Keys are the logs' 64-bit
hashes of the request ids (`logformat.request_key`), never their text.

The join keeps what the sample's join keeps (`feedback.sampled_labels` and the analysis):
a version's request logged twice counts its earliest copy (the summaries' rule); a request's
newest feedback wins, and within it a row's last label; a request's labels count only when
they are exactly its rows; a row whose answer is unusable (not finite, or a probability
outside [0, 1]) is left out, and a label the task cannot use (a class never learned, a
regression label that is not a number) is counted as unusable. On a window the sample
holds whole, the figures are therefore the sample's (the tests compare them). Unlike the
sample, which counts a copy within its window, the join counts every copy of a version's
row after the first, in the window the copy was logged in.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from flywheel import logformat
from flywheel.config import StorageSettings
from flywheel.contract import Contract
from flywheel.monitoring import intervals, logs
from flywheel.monitoring.intervals import Interval
from flywheel.monitoring.logs import Skipped
from flywheel.monitoring.performance import Joined, class_performance, macro_f1_of_counts
from flywheel.monitoring.reading import Pool
from flywheel.monitoring.tables import LogFile, feedback_tables, log_files, prediction_tables
from flywheel.problem import Problem
from flywheel.storage import ObjectStore, open_store

if TYPE_CHECKING:
    import pyarrow as pa

_BUCKET_BITS = 6
BUCKETS = 1 << _BUCKET_BITS
_BUFFER_ROWS = 1_000_000  # rows gathered before they are spilled to the buckets' files
_OUTSIDE = np.iinfo(np.uint32).max  # the slot of a served row outside every window
# A classifier's scores are counted on this many equal bins of [0, 1] for its ROC AUC: the
# scores of one bin count as tied.
SCORE_BINS = 1 << 12  # 64 KiB of counts a scored class and window

# A label's text as an index into the look's list of label texts (-1: none), its number
# (NaN: none), the version whose log it came in, and the file's place in the look's order.
_LABELS = np.dtype(
    [
        ("key", "<u8"),
        ("row", "<u4"),
        ("file", "<u4"),
        ("version", "<u2"),
        ("time", "<f8"),
        ("number", "<f8"),
        ("text", "<i4"),
    ]
)


def _answers_dtype(width: int) -> np.dtype[Any]:
    """A served row: its key, place, file, version (its place among those served), time,
    slot (the version's window) and outputs."""
    return np.dtype(
        [
            ("key", "<u8"),
            ("row", "<u4"),
            ("file", "<u4"),
            ("version", "<u2"),
            ("time", "<f8"),
            ("slot", "<u4"),
            ("out", "<f8", (width,)),
        ]
    )


@dataclass(frozen=True)
class Reach:
    """What a look joins: its windows, the days of prediction files they read, the days of
    feedback files, the time labels count until, and when feedback for a request that was
    never logged is certain (`feedback.sampled_labels` says when)."""

    spans: Sequence[tuple[datetime, datetime]]
    prediction_days: Sequence[date]
    label_days: Sequence[date]
    labelled_until: datetime
    unlogged: tuple[datetime, datetime]


@dataclass
class JoinedLook:
    """What the join measured, by version and window start (its timestamp): the metrics over
    every labelled row, and the rows logged again; and feedback for requests never logged,
    by the version whose log it came in and its time (whole seconds)."""

    performance: dict[str, dict[int, Joined]] = field(default_factory=dict)
    duplicates: dict[str, dict[int, int]] = field(default_factory=dict)
    never_logged: Counter[tuple[str, int]] = field(default_factory=Counter)


@dataclass
class _Sums:
    """Each window's sums, in arrays indexed by window; and a regression's label shift, the
    first labels' mean (subtracted from every label's powers, so that they stay exact).
    A classifier's scored classes (a binary one's positive class, a multiclass one's every
    class) have their probabilities counted on SCORE_BINS bins, for the rows of the class
    (`own`) and the rest (`rest`)."""

    windows: int
    classes: int
    scored: int = 0
    values: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    shift: float | None = None

    @classmethod
    def of(cls, problem: Problem, windows: int) -> _Sums:
        """Empty sums of `windows` windows of a version solving `problem`."""
        if not problem.is_classifier:
            return cls(windows, 1)
        return cls(windows, problem.width, 1 if problem.task == "binary" else problem.width)

    def add(self, name: str, window: npt.NDArray[Any], weights: npt.ArrayLike | None) -> None:
        bins = self.scored * SCORE_BINS
        each = {"confusion": self.classes**2, "own": bins, "rest": bins}
        size = self.windows * each.get(name, 1)
        found = np.bincount(window, weights=weights, minlength=size).astype(np.float64)
        have = self.values.get(name)
        self.values[name] = found if have is None else have + found

    def get(self, name: str, at: int) -> float:
        have = self.values.get(name)
        return 0.0 if have is None else float(have[at])


@dataclass(frozen=True)
class _Spilled:
    """One process's spill: its folders of bucket files, and its label texts in order."""

    served: Path
    labels: Path
    texts: tuple[str, ...]


def join_labels(
    store: ObjectStore,
    storage: StorageSettings,
    model: str,
    served: Mapping[str, Contract],
    known: Sequence[str],
    reach: Reach,
    confidence: float,
    pool: Pool | None = None,
) -> JoinedLook:
    """Every labelled row of each window of each `served` version, joined as the module
    says, with `pool`'s processes reading the files if given. A request's feedback is looked
    for in every `known` version's log, as the sample's join does. What cannot be read was
    counted by the summaries, and is not counted again here."""
    versions = list(served)
    spans = reach.spans
    prediction_files = [
        (v, file)
        for v, version in enumerate(versions)
        for day in reach.prediction_days
        for file in log_files(store, logs.PREDICTIONS, model, version, day)
    ]
    feedback_files = [
        (v, file)
        for v, version in enumerate(known)
        for day in reach.label_days
        for file in log_files(store, logs.FEEDBACK, model, version, day)
    ]
    width = max((c.problem.width for c in served.values()), default=1)
    job = _Job(model, dict(enumerate(served.values())), spans, reach.labelled_until, width)
    with tempfile.TemporaryDirectory(prefix="flywheel-join-") as scratch:
        shares = 1 if pool is None else pool.workers
        parts = [
            (
                Path(scratch) / str(i),
                list(enumerate(prediction_files))[i::shares],
                list(enumerate(feedback_files))[i::shares],
            )
            for i in range(shares)
        ]
        if pool is None:
            spilled = [job.spill(store, *parts[0])]
        else:
            futures = [
                pool.executor.submit(_spill_in_worker, storage.uri, storage, job, *part)
                for part in parts
            ]
            try:
                spilled = [f.result() for f in futures]
            finally:
                # Stopped (by a signal, or a worker's error), the scratch is removed only
                # once no worker writes in it: the pool would wait for them anyway.
                for future in futures:
                    future.cancel()
                wait(futures)
        return _measure(job, spilled, versions, known, reach, confidence)


@dataclass(frozen=True)
class _Job:
    """What a process needs to spill its share of the files."""

    model: str
    contracts: dict[int, Contract]  # by the version's place among those served
    spans: Sequence[tuple[datetime, datetime]]
    until: datetime
    width: int

    def spill(
        self,
        store: ObjectStore,
        folder: Path,
        predictions: list[tuple[int, tuple[int, LogFile]]],
        feedback: list[tuple[int, tuple[int, LogFile]]],
    ) -> _Spilled:
        """This share's prediction and feedback files, spilled to `folder`."""
        skipped = Skipped()  # the summaries count what is skipped: not twice
        starts = np.array([s.timestamp() for s, _ in self.spans], dtype=np.float64)
        ends = np.array([e.timestamp() for _, e in self.spans], dtype=np.float64)
        answers = _answers_dtype(self.width)
        texts: dict[str, int] = {}
        folder.mkdir()
        _spill(
            folder / "served",
            answers,
            (
                _answer_rows(table, answers, starts, ends, n, v)
                for n, (v, file) in predictions
                for table in prediction_tables(
                    store, file, self.model, self.contracts[v], skipped, answers=True
                )
            ),
        )
        _spill(
            folder / "labels",
            _LABELS,
            (
                _label_rows(table, n, v, self.until, texts)
                for n, (v, file) in feedback
                for table in feedback_tables(store, file, self.model, skipped)
            ),
        )
        return _Spilled(folder / "served", folder / "labels", tuple(texts))


def _spill_in_worker(
    uri: str,
    storage: StorageSettings,
    job: _Job,
    folder: Path,
    predictions: list[tuple[int, tuple[int, LogFile]]],
    feedback: list[tuple[int, tuple[int, LogFile]]],
) -> _Spilled:
    """`_Job.spill` in a worker process, on a store of its own."""
    return job.spill(open_store(uri, storage), folder, predictions, feedback)


def _measure(
    job: _Job,
    spilled: list[_Spilled],
    versions: list[str],
    known: Sequence[str],
    reach: Reach,
    confidence: float,
) -> JoinedLook:
    """Each bucket of every spill joined, and the look's figures from the sums."""
    texts: dict[str, int] = {}
    recoded = [
        np.array([texts.setdefault(t, len(texts)) for t in part.texts] + [-1], dtype=np.int32)
        for part in spilled
    ]
    problems = {v: job.contracts[v].problem for v in range(len(versions))}
    coded = {v: _text_codes(problem, list(texts)) for v, problem in problems.items()}
    spans = len(job.spans)
    sums = {v: _Sums.of(problem, spans) for v, problem in problems.items()}
    repeats = np.zeros(spans * len(versions) + 1, dtype=np.int64)
    unlogged: Counter[tuple[str, int]] = Counter()
    low, high = (t.timestamp() for t in reach.unlogged)
    read = np.array([v in versions for v in known] + [False])
    answers = _answers_dtype(job.width)
    for bucket in range(BUCKETS):
        served = np.concatenate(
            [np.fromfile(p.served / f"{bucket:02d}", dtype=answers) for p in spilled]
        )
        labels = []
        for part, codes in zip(spilled, recoded, strict=True):
            found = np.fromfile(part.labels / f"{bucket:02d}", dtype=_LABELS)
            found["text"] = codes[found["text"]]  # -1 stays -1: the code list ends with it
            labels.append(found)
        pairs, copies, strays = _join_bucket(served, np.concatenate(labels))
        np.add.at(repeats, np.minimum(copies, len(repeats) - 1), 1)
        # Only a read version's feedback can be known to have no request.
        certain = strays[
            (strays["time"] >= low) & (strays["time"] < high) & read[strays["version"]]
        ]
        pairs_seen = zip(
            certain["version"].tolist(), certain["time"].astype(np.int64).tolist(), strict=True
        )
        for (v, second), n in Counter(pairs_seen).items():
            unlogged[(known[v], second)] += n
        version = pairs["slot"] // spans
        for v, problem in problems.items():
            mine = pairs[version == v]
            _add(
                sums[v], mine["slot"] % spans, mine["out"], _truth(mine, problem, coded[v]), problem
            )
    out = JoinedLook(never_logged=unlogged)
    for v, version_name in enumerate(versions):
        for i, (start, _) in enumerate(job.spans):
            at = int(start.timestamp())
            if repeats[v * spans + i]:
                out.duplicates.setdefault(version_name, {})[at] = int(repeats[v * spans + i])
            if sums[v].get("labelled", i) or sums[v].get("unusable", i):
                out.performance.setdefault(version_name, {})[at] = _joined(
                    sums[v], i, problems[v], confidence
                )
    return out


def window_figures(
    problem: Problem, outputs: npt.ArrayLike, truth: npt.ArrayLike, confidence: float
) -> Joined:
    """One window's labelled rows measured as the join measures a window's: from their
    counts and sums (`truth`: class codes, or values)."""
    answers = np.asarray(outputs, dtype=np.float64).reshape(-1, problem.width)
    sums = _Sums.of(problem, 1)
    _add(sums, np.zeros(len(answers), dtype=np.intp), answers, np.asarray(truth, float), problem)
    return _joined(sums, 0, problem, confidence)


def _answer_rows(
    table: pa.Table,
    dtype: np.dtype[Any],
    starts: npt.NDArray[np.float64],
    ends: npt.NDArray[np.float64],
    file: int,
    version: int,
) -> npt.NDArray[Any]:
    """A prediction table's rows as `dtype`'s records: the slot of the version's window,
    `_OUTSIDE` for a row outside every window (its key still tells that the request was
    logged)."""
    time = table.column(logformat.TIME).to_numpy()
    window = np.searchsorted(starts, time, side="right") - 1
    inside = (window >= 0) & (time < ends[np.maximum(window, 0)])
    out = np.empty(table.num_rows, dtype=dtype)
    out["key"] = table.column(logformat.KEY).to_numpy()
    out["row"] = table.column(logformat.ROW).to_numpy()
    out["file"] = file
    out["version"] = version
    out["time"] = time
    out["slot"] = np.where(inside, window + version * len(starts), _OUTSIDE)
    names = [c for c in table.column_names if c.startswith(logformat.OUTPUT)]
    for i, name in enumerate(names):
        out["out"][:, i] = table.column(name).to_numpy(zero_copy_only=False)
    return out


def _label_rows(
    table: pa.Table, file: int, version: int, until: datetime, texts: dict[str, int]
) -> npt.NDArray[Any]:
    """A feedback table's rows before `until`, their texts numbered in `texts`."""
    import pyarrow.compute as pc

    time = table.column(logformat.TIME).to_numpy()
    kept = time < until.timestamp()
    out = np.empty(int(kept.sum()), dtype=_LABELS)
    out["key"] = table.column(logformat.KEY).to_numpy()[kept]
    out["row"] = table.column(logformat.ROW).to_numpy()[kept]
    out["file"] = file
    out["version"] = version
    out["time"] = time[kept]
    out["number"] = table.column(logformat.LABEL_NUMBER).to_numpy(zero_copy_only=False)[kept]
    encoded = pc.dictionary_encode(table.column(logformat.LABEL_TEXT)).combine_chunks()
    numbered = np.array(
        [texts.setdefault(t, len(texts)) for t in encoded.dictionary.to_pylist()] + [-1],
        dtype=np.int32,
    )
    at = pc.fill_null(encoded.indices, len(numbered) - 1).to_numpy()
    out["text"] = numbered[at[kept]]
    return out


def _text_codes(problem: Problem, texts: list[str]) -> npt.NDArray[np.float64]:
    """Each label text's class code for `problem` (NaN: not one of its classes), and NaN
    after them for no text."""
    if not problem.is_classifier:
        return np.full(len(texts) + 1, np.nan)
    return np.array([_code(problem, t) for t in texts] + [math.nan])


def _truth(
    pairs: npt.NDArray[Any], problem: Problem, coded: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each pair's label as the task scores it, read as the sample's join reads it (its
    text, else its number): a class's code, or a regression's number; NaN when the task
    cannot use it."""
    text = pairs["text"]
    if not problem.is_classifier:
        return np.asarray(np.where(text < 0, pairs["number"], np.nan), dtype=np.float64)
    truth: npt.NDArray[np.float64] = coded[text]  # a text's code; NaN for none (index -1)
    numbered = (text < 0) & ~np.isnan(pairs["number"])
    values, inverse = np.unique(pairs["number"][numbered], return_inverse=True)
    truth[numbered] = np.array([_code(problem, float(v)) for v in values])[inverse]
    return truth


def _code(problem: Problem, value: Any) -> float:
    return float(problem.codes([value])[0]) if problem.known([value])[0] else math.nan


def _spill(folder: Path, dtype: np.dtype[Any], parts: Iterable[npt.NDArray[Any]]) -> int:
    """`parts`' records appended to `BUCKETS` files in `folder` by the top bits of their
    keys, a buffer of about `_BUFFER_ROWS` at a time; how many records."""
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
    return total


def _runs(*columns: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """For rows sorted by `columns`, True where a run of equal values starts."""
    n = len(columns[0])
    starts = np.zeros(n, dtype=bool)
    if n:
        starts[0] = True
        for column in columns:
            starts[1:] |= column[1:] != column[:-1]
    return starts


def _join_bucket(
    served: npt.NDArray[Any], labels: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint32], npt.NDArray[Any]]:
    """One bucket's served rows with their labels: the pairs joined (slot, outputs, the
    label's number and text), each version's first copy of a request with its newest
    feedback, whole requests inside the windows only; the slots of the copies after the
    first; and the feedback whose request no file read had logged."""
    # A version's first copy of a row: the earliest, as the summaries keep it (ties: the
    # earlier file).
    served = served[
        np.lexsort(
            (served["file"], served["time"], served["version"], served["row"], served["key"])
        )
    ]
    first = _runs(served["key"], served["row"], served["version"])
    copies = served["slot"][~first]
    served = served[first]
    strays = labels[~_member(labels["key"], served["key"])]
    # A request's newest feedback (ties: the later file), and within it each row's last
    # label.
    labels = labels[np.lexsort((labels["file"], labels["time"], labels["key"]))]
    starts = _runs(labels["key"])
    request = np.cumsum(starts) - 1
    last = np.r_[np.flatnonzero(starts)[1:] - 1, len(labels) - 1] if len(labels) else starts
    labels = labels[labels["time"] == labels["time"][last][request]]
    labels = labels[np.lexsort((labels["file"], labels["row"], labels["key"]))]
    ends = np.r_[_runs(labels["key"], labels["row"])[1:], True] if len(labels) else starts
    labels = labels[ends]
    # Each version's rows join the labels on their own: a request served by two versions
    # (a shadow's, say) is labelled in both.
    pairs = [_pairs(served[served["version"] == v], labels) for v in np.unique(served["version"])]
    return (np.concatenate(pairs) if pairs else _pairs(served, labels)), copies, strays


def _pairs(served: npt.NDArray[Any], labels: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """`_join_bucket`'s pairs of rows and labels each sorted by (key, row), each once."""
    # A row matches where the next record of the two together is its label.
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
    whole &= served["slot"][left] != _OUTSIDE
    pair = np.dtype(
        [("slot", "<u4"), ("out", served.dtype["out"]), ("number", "<f8"), ("text", "<i4")]
    )
    out = np.empty(int(whole.sum()), dtype=pair)
    out["slot"] = served["slot"][left[whole]]
    out["out"] = served["out"][left[whole]]
    out["number"] = labels["number"][right[whole]]
    out["text"] = labels["text"][right[whole]]
    return out


def _member(keys: npt.NDArray[np.uint64], sorted_keys: npt.NDArray[np.uint64]) -> Any:
    """Whether each of `keys` is in `sorted_keys`."""
    return _count(sorted_keys, keys) > 0


def _count(sorted_keys: npt.NDArray[np.uint64], keys: npt.NDArray[np.uint64]) -> Any:
    """How many times each of `keys` is in `sorted_keys`."""
    return np.searchsorted(sorted_keys, keys, side="right") - np.searchsorted(sorted_keys, keys)


def _add(
    sums: _Sums,
    window: npt.NDArray[Any],
    outputs: npt.NDArray[np.float64],
    truth: npt.NDArray[np.float64],
    problem: Problem,
) -> None:
    """One bucket's pairs of one version added to each window's sums."""
    outputs = outputs[:, : problem.width]
    usable = np.isfinite(outputs).all(axis=1)
    if problem.is_classifier:
        usable &= ((outputs >= 0) & (outputs <= 1)).all(axis=1)
    window, outputs, truth = window[usable].astype(np.intp), outputs[usable], truth[usable]
    known = ~np.isnan(truth)
    sums.add("unusable", window[~known], None)
    window, outputs, truth = window[known], outputs[known], truth[known]
    sums.add("labelled", window, None)
    if problem.is_classifier:
        y = truth.astype(np.intp)
        k, m = sums.classes, sums.scored
        if problem.task == "binary":
            predicted = (outputs[:, -1] >= 0.5).astype(np.intp)
            loss = intervals.row_log_loss(y, outputs[:, -1])
        else:
            predicted = outputs.argmax(axis=1)
            chosen = outputs[np.arange(len(y)), y]
            loss = -np.log(np.clip(chosen, 1e-15, 1.0))
        # Each scored class's probability, binned in that class's own bins of the window.
        classes = np.arange(k - m, k)  # the last m: a binary classifier's positive class
        binned = (window[:, None] * m + np.arange(m)) * SCORE_BINS + _bins(outputs[:, -m:])
        own = y[:, None] == classes
        sums.add("own", binned[own], None)
        sums.add("rest", binned[~own], None)
        sums.add("confusion", window * k * k + y * k + predicted, None)
        sums.add("loss", window, loss)
        sums.add("loss_squares", window, loss**2)
        return
    error = outputs[:, 0] - truth
    zero = np.isclose(truth, 0.0)
    relative = np.where(zero, 0.0, np.abs(error) / np.where(zero, 1.0, np.abs(truth)))
    if sums.shift is None and len(truth):
        sums.shift = float(truth.mean())
    shifted = truth - (sums.shift or 0.0)
    for name, values in (
        ("squared", error**2),
        ("squared_squares", error**4),
        ("absolute", np.abs(error)),
        ("relative", relative),
        ("relative_squares", relative**2),
        ("zero_labels", zero.astype(float)),
        ("label", truth),
        ("prediction", outputs[:, 0]),
        # R²'s sums (`intervals.r2_of_sums`).
        ("shifted", shifted),
        ("shifted_2", shifted**2),
        ("shifted_3", shifted**3),
        ("shifted_4", shifted**4),
        ("squared_shifted", error**2 * shifted),
        ("squared_shifted_2", error**2 * shifted**2),
    ):
        sums.add(name, window, values)


def _bins(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Each score's bin of SCORE_BINS equal bins of [0, 1]."""
    return np.minimum((scores * SCORE_BINS).astype(np.intp), SCORE_BINS - 1)


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
        found = {
            "accuracy": intervals.wilson(int(np.trace(counts)), n, confidence),
            "log_loss": mean("loss", "loss_squares"),
            "confusion": tuple(tuple(int(c) for c in line) for line in counts),
        }
        own = sums.values["own"].reshape(-1, sums.scored, SCORE_BINS)[at]
        rest = sums.values["rest"].reshape(-1, sums.scored, SCORE_BINS)[at]
        if problem.task == "binary":
            found["roc_auc"] = intervals.auc_of_counts(own[0], rest[0], confidence)
        else:
            found |= _multiclass(own, rest, counts.astype(np.int64), problem, confidence)
        return Joined(labelled=n, unusable_labels=unusable, **found)
    squared = mean("squared", "squared_squares")
    return Joined(
        labelled=n,
        unusable_labels=unusable,
        rmse=intervals.rooted(squared),
        mae=mean("absolute", "squared"),
        r2=intervals.r2_of_sums(
            n,
            (sums.get("squared", at), sums.get("squared_squares", at)),
            [sums.get(name, at) for name in ("shifted", "shifted_2", "shifted_3", "shifted_4")],
            (sums.get("squared_shifted", at), sums.get("squared_shifted_2", at)),
            confidence,
        ),
        mape=None if sums.get("zero_labels", at) else mean("relative", "relative_squares"),
        mean_label=sums.get("label", at) / n,
        mean_prediction=sums.get("prediction", at) / n,
    )


def _multiclass(
    own: npt.NDArray[np.float64],
    rest: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    problem: Problem,
    confidence: float,
) -> dict[str, Any]:
    """A multiclass window's macro F1, per-class figures and macro ROC AUC from its
    confusion counts and each class's binned probabilities (its rows', the rest's)."""
    per_class = {
        name: class_performance(
            counts, c, intervals.auc_of_counts(own[c], rest[c], confidence), confidence
        )
        for c, name in enumerate(problem.output_names)
    }
    return {
        # 1,000 resamples, not the rows' 200: cheap on counts, and their percentiles are
        # less noisy (in `make bench-stats` it covered 92.8% at 300 rows and 93.0% at 1,000
        # with 200, 93.5% and 94.3% with 1,000).
        "macro_f1": intervals.bootstrap_counts(
            macro_f1_of_counts,
            counts,
            float(macro_f1_of_counts(counts)),
            confidence,
            resamples=1_000,
        ),
        "per_class": per_class,
        "roc_auc": intervals.mean_of_intervals([one.roc_auc for one in per_class.values()]),
    }
