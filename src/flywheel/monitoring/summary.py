"""Mergeable summaries of the prediction log: each log file reduced once, windows merged exactly.

A window's `WindowSummary` holds what the report needs, bounded whatever the traffic:

- exact counts, summed when summaries merge: requests, rows, missing, NaN and infinite
  inputs and outputs, broken requests, each numeric feature's counts on its contract's bins,
  each categorical feature's counts per category, latencies on 1% log buckets, and the log
  lines skipped by reason;
- the repeats of the sampled rows: a request logged again (a duplicate request id) is kept
  once, and each further copy counted under its row (`repeats`), so that the count is of the
  sample's rows whatever the order and grouping of the merges;
- a uniform sample of the rows: every row of the requests with the smallest request keys
  (`logformat.request_key`, a hash), up to `sample_rows` rows. The smallest keys of two
  summaries' union are the smallest keys of their samples' union, so merging is exact, and a
  window of at most `sample_rows` rows keeps every row: the tests, metrics and estimates run
  on exactly what they ran on before. Above it they run on the sample, which a hash makes a
  uniform random one, and the report says how many rows it measured.

Labels join the sample by key: only feedback whose key is below a window's `threshold` (the
first key left out) can match it, so the join is bounded by the sample, not by the traffic.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from flywheel import logformat
from flywheel.contract import Contract

if TYPE_CHECKING:
    import pyarrow as pa

# 2: the sampled rows' repeats, kept in a column of the sample (format 1 did not keep them).
FORMAT = 2
DEFAULT_SAMPLE_ROWS = 20_000
_ALL = 2**64  # the threshold of a sample that kept every row
_LATENCY_FLOOR_MS = 1e-3
_LATENCY_STEP = math.log(1.01)  # 1% buckets: a percentile within 1%
_METADATA = b"flywheel.summary"
WINDOW = "_window"
REPEATS = "_repeats"  # stored beside each sampled row: its copies beyond the first


@dataclass
class WindowSummary:
    """One version's served rows in one window, as counts and a sample (see the module)."""

    sample_rows: int
    sample: pa.Table
    requests: int = 0
    rows: int = 0
    missing_inputs: int = 0
    nan_inputs: int = 0
    infinite_inputs: int = 0
    nan_outputs: int = 0
    infinite_outputs: int = 0
    broken_requests: int = 0
    # Copies beyond the first of each sampled row, by (request key, row in the request).
    repeats: Counter[tuple[int, int]] = field(default_factory=Counter)
    latency: Counter[int] = field(default_factory=Counter)
    numeric: dict[str, list[int]] = field(default_factory=dict)
    categorical: dict[str, Counter[str]] = field(default_factory=dict)
    threshold: int = _ALL

    @property
    def duplicates(self) -> int:
        """Rows logged again under a request id already sampled: every repeat when the
        sample holds every row, else the sampled requests' (a uniform share of them)."""
        return sum(self.repeats.values())

    @property
    def complete(self) -> bool:
        """True when the sample holds every row of the window."""
        return self.threshold == _ALL

    def merge(self, other: WindowSummary) -> WindowSummary:
        """The summary of both windows' rows."""
        import pyarrow as pa

        threshold = min(self.threshold, other.threshold)
        merged = WindowSummary(
            sample_rows=min(self.sample_rows, other.sample_rows),
            # Rows at or above either threshold cannot be kept: leave them out before sorting.
            sample=pa.concat_tables(
                [_below(self.sample, threshold), _below(other.sample, threshold)],
                promote_options="permissive",
            ),
            latency=self.latency + other.latency,
            repeats=_repeats_below(self.repeats + other.repeats, threshold),
            numeric={
                name: [
                    a + b
                    for a, b in itertools.zip_longest(
                        self.numeric.get(name, ()), other.numeric.get(name, ()), fillvalue=0
                    )
                ]
                for name in {*self.numeric, *other.numeric}
            },
            categorical={
                name: self.categorical.get(name, Counter()) + other.categorical.get(name, Counter())
                for name in {*self.categorical, *other.categorical}
            },
            threshold=threshold,
        )
        for name in _SUMS:
            setattr(merged, name, getattr(self, name) + getattr(other, name))
        # The sample is cut when it has grown to twice its size, not on every merge: a window
        # merges a file at a time, and sorting the whole sample each time cost more than reading.
        return merged.cut() if merged.sample.num_rows > 2 * merged.sample_rows else merged

    def cut(self) -> WindowSummary:
        """Keep the requests of the smallest keys, at most `sample_rows` rows, one copy of each
        row (a duplicate is counted and left out); what a summary is read after merging."""
        import pyarrow as pa

        table = self.sample
        if table.num_rows == 0:
            return self
        keys = table.column(logformat.KEY).to_numpy()
        rows = table.column(logformat.ROW).to_numpy()
        times = table.column(logformat.TIME).to_numpy()
        order = np.lexsort((times, rows, keys))
        keys, rows = keys[order], rows[order]
        repeated = np.zeros(len(keys), dtype=bool)
        repeated[1:] = (keys[1:] == keys[:-1]) & (rows[1:] == rows[:-1])
        if repeated.any():
            self.repeats.update(zip(keys[repeated].tolist(), rows[repeated].tolist(), strict=True))
        order, keys = order[~repeated], keys[~repeated]
        threshold = self.threshold
        if len(order) > self.sample_rows:
            first_out = int(keys[self.sample_rows])
            threshold = min(threshold, first_out)
        # Only the repeats of rows the sample keeps are counted: which others were seen
        # depends on how the rows were grouped before they were merged.
        self.repeats = _repeats_below(self.repeats, threshold)
        kept = order[keys < threshold] if threshold < _ALL else order
        if len(kept) < table.num_rows:
            self.sample = table.take(pa.array(np.sort(kept)))
        self.threshold = threshold
        return self

    def digest(self) -> str:
        """A hash of what the summary holds (its counts and its sample, as cut): equal
        summaries hash alike, and any change to either gives another hash."""
        import hashlib

        import pyarrow as pa

        counts = {
            **_counts(self),
            "sample_rows": self.sample_rows,
            "repeats": [[str(k), r, n] for (k, r), n in sorted(self.repeats.items())],
        }
        hashed = hashlib.sha256(json.dumps(counts, sort_keys=True).encode())
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.sample.schema) as writer:
            writer.write_table(self.sample)
        hashed.update(sink.getvalue())
        return hashed.hexdigest()


def _repeats_below(repeats: Counter[tuple[int, int]], threshold: int) -> Counter[tuple[int, int]]:
    """The repeats of the rows whose key is below `threshold`."""
    if threshold >= _ALL or all(key < threshold for key, _ in repeats):
        return repeats
    return Counter({at: n for at, n in repeats.items() if at[0] < threshold})


def _below(table: pa.Table, threshold: int) -> pa.Table:
    """The rows whose key is below `threshold`."""
    if threshold >= _ALL or table.num_rows == 0:
        return table
    keys = table.column(logformat.KEY).to_numpy()
    below = keys < np.uint64(threshold)
    return table if below.all() else table.filter(below)


_SUMS = (
    "requests",
    "rows",
    "missing_inputs",
    "nan_inputs",
    "infinite_inputs",
    "nan_outputs",
    "infinite_outputs",
    "broken_requests",
)


def latency_bucket(ms: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Each latency's 1% log bucket."""
    clipped = np.maximum(ms, _LATENCY_FLOOR_MS)
    buckets: npt.NDArray[np.int64] = np.floor(
        np.log(clipped / _LATENCY_FLOOR_MS) / _LATENCY_STEP
    ).astype(np.int64)
    return buckets


def latency_percentiles(summary: WindowSummary, percents: Sequence[float]) -> list[float | None]:
    """Latency percentiles: exact from the sample when it holds every request, else from the
    buckets (each bucket's geometric middle: within 1%)."""
    import pyarrow.compute as pc

    if summary.complete:
        table = summary.sample
        first = table.filter(pc.equal(table.column(logformat.ROW), 0))
        values = first.column(logformat.LATENCY).drop_null().to_numpy()
        if len(values) == 0:
            return [None] * len(percents)
        return [float(v) for v in np.percentile(values, list(percents))]
    total = sum(summary.latency.values())
    if total == 0:
        return [None] * len(percents)
    buckets = sorted(summary.latency)
    cumulative = np.cumsum([summary.latency[b] for b in buckets])
    out: list[float | None] = []
    for percent in percents:
        at = int(np.searchsorted(cumulative, percent / 100 * total, side="left"))
        bucket = buckets[min(at, len(buckets) - 1)]
        out.append(_LATENCY_FLOOR_MS * math.exp((bucket + 0.5) * _LATENCY_STEP))
    return out


def reduce(
    table: pa.Table,
    contract: Contract,
    window_seconds: int,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
) -> dict[int, WindowSummary]:
    """One log file's rows (`columns(contract)`, typed) by window start (Unix seconds)."""
    if table.num_rows == 0:
        return {}
    times = table.column(logformat.TIME).to_numpy(zero_copy_only=False)
    starts = (np.floor(times / window_seconds) * window_seconds).astype(np.int64)
    found = np.unique(starts)
    if len(found) == 1:
        return {int(found[0]): _summarise(table, contract, sample_rows)}
    return {
        int(start): _summarise(table.filter(starts == start), contract, sample_rows)
        for start in found
    }


def _summarise(table: pa.Table, contract: Contract, sample_rows: int) -> WindowSummary:
    width = contract.problem.width
    rows = table.num_rows
    first = table.column(logformat.ROW).to_numpy(zero_copy_only=False) == 0
    summary = WindowSummary(
        sample_rows=sample_rows, sample=table, requests=int(first.sum()), rows=rows
    )
    for name, profile in contract.numeric.items():
        column = table.column(logformat.input_column(name))
        summary.missing_inputs += column.null_count
        values = column.to_numpy(zero_copy_only=False).astype(float)
        values = values[~np.isnan(values)] if column.null_count else values
        nans = np.isnan(values)
        summary.nan_inputs += int(nans.sum())
        infinite = np.isinf(values)
        summary.infinite_inputs += int(infinite.sum())
        finite = values[~nans & ~infinite]
        counts = np.bincount(
            np.searchsorted(profile.edges, finite, side="left"), minlength=len(profile.edges) + 1
        )
        summary.numeric[name] = [int(c) for c in counts]
    for name in contract.categorical:
        column = table.column(logformat.input_column(name))
        summary.missing_inputs += column.null_count
        tally = Counter[str]()
        for item in column.value_counts().to_pylist():
            if item["values"] is not None:
                tally[str(item["values"])] += int(item["counts"])
        summary.categorical[name] = tally
    outputs = np.column_stack(
        [
            table.column(logformat.output_column(i)).to_numpy(zero_copy_only=False).astype(float)
            for i in range(width)
        ]
    )
    nan_rows = np.isnan(outputs).any(axis=1)
    inf_rows = np.isinf(outputs).any(axis=1)
    summary.nan_outputs = int(nan_rows.sum())
    summary.infinite_outputs = int(inf_rows.sum())
    unusable = nan_rows | inf_rows
    if contract.task != "regression":
        unusable |= ~((outputs >= 0) & (outputs <= 1)).all(axis=1)
    if unusable.any():
        keys = table.column(logformat.KEY).to_numpy(zero_copy_only=False)
        summary.broken_requests = len(np.unique(keys[unusable]))
    latency = table.column(logformat.LATENCY)
    values = latency.to_numpy(zero_copy_only=False).astype(float)[first]
    values = values[np.isfinite(values)]
    summary.latency = Counter(
        {
            int(b): int(n)
            for b, n in zip(*np.unique(latency_bucket(values), return_counts=True), strict=True)
        }
    )
    return summary.cut()


def merge_all(summaries: Iterable[WindowSummary]) -> WindowSummary | None:
    """All of them merged (None for none)."""
    merged: WindowSummary | None = None
    for summary in summaries:
        merged = summary if merged is None else merged.merge(summary)
    return None if merged is None else merged.cut()


# --- stored: one object per version and day of log files -----------------------------

SUMMARIES = "summaries"
PARTS = ".parts/"  # beside a day's summary: the parts the cluster's fan-out summarised


def summary_key(model: str, version: str, day: date) -> str:
    """Where the summary of one version's log files of one day is stored."""
    return f"{SUMMARIES}/{model}/{version}/{day.isoformat()}{logformat.SUFFIX}"


def labels_key(model: str, version: str, day: date) -> str:
    """Where the labels kept from one version's feedback files of one day are stored."""
    return f"{SUMMARIES}/{model}/feedback/{version}/{day.isoformat()}{logformat.SUFFIX}"


@dataclass
class DaySummary:
    """The windows of one version's log files of one day, and which files they hold."""

    window_seconds: int
    sample_rows: int
    fingerprint: str
    files: set[str] = field(default_factory=set)
    windows: dict[int, WindowSummary] = field(default_factory=dict)
    # Log lines left out, by window start (of the file's write time) and reason.
    skipped: dict[int, Counter[str]] = field(default_factory=dict)
    # The fan-out's parts merged in since it was read (not stored: deleted once it is).
    folded: list[str] = field(default_factory=list)

    def add(self, found: Mapping[int, WindowSummary]) -> None:
        """Merge a file's windows in."""
        for start, summary in found.items():
            have = self.windows.get(start)
            self.windows[start] = summary if have is None else have.merge(summary)

    def skip(self, at: datetime, reason: str, count: int) -> None:
        """Count `count` lines of a file written `at` as skipped, in that time's window."""
        start = int(at.timestamp()) // self.window_seconds * self.window_seconds
        self.skipped.setdefault(start, Counter())[reason] += count

    def absorb(self, other: DaySummary) -> None:
        """Merge in another summary of other files of the same day (a fan-out's part)."""
        self.add(other.windows)
        for start, counts in other.skipped.items():
            self.skipped.setdefault(start, Counter()).update(counts)
        self.files |= other.files

    def to_bytes(self) -> bytes:
        """One Parquet file: every window's sample, and the counts in its footer."""
        import pyarrow as pa

        for window in self.windows.values():
            window.cut()
        tables = [
            s.sample.append_column(
                WINDOW, pa.array(np.full(s.sample.num_rows, start), pa.int64())
            ).append_column(REPEATS, pa.array(_repeat_column(s), pa.uint32()))
            for start, s in sorted(self.windows.items())
        ]
        meta = {
            "format": FORMAT,
            "window_seconds": self.window_seconds,
            "sample_rows": self.sample_rows,
            "fingerprint": self.fingerprint,
            "files": sorted(self.files),
            "skipped": {str(s): dict(c) for s, c in self.skipped.items()},
            "windows": {str(s): _counts(w) for s, w in self.windows.items()},
        }
        table = (
            pa.concat_tables(tables, promote_options="permissive")
            if tables
            else pa.table({WINDOW: pa.array([], pa.int64())})
        )
        return logformat.to_parquet(table, {_METADATA.decode(): json.dumps(meta)})

    @classmethod
    def from_bytes(cls, data: bytes) -> DaySummary:
        """Read back what `to_bytes` wrote; a ValueError when it is not a summary."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
            meta = json.loads((table.schema.metadata or {})[_METADATA])
        except Exception as error:
            raise ValueError(f"not a monitoring summary ({error})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"summary format {meta.get('format')} is not {FORMAT}")
        day = cls(
            window_seconds=int(meta["window_seconds"]),
            sample_rows=int(meta["sample_rows"]),
            fingerprint=str(meta["fingerprint"]),
            files=set(meta["files"]),
            skipped={int(s): Counter(c) for s, c in meta["skipped"].items()},
        )
        for start, counts in meta["windows"].items():
            sample = table.filter(pc.equal(table.column(WINDOW), int(start)))
            repeats = _repeats_of(sample)
            sample = sample.drop_columns([WINDOW, REPEATS])
            day.windows[int(start)] = _from_counts(counts, sample, day.sample_rows)
            day.windows[int(start)].repeats = repeats
        return day


def _repeat_column(summary: WindowSummary) -> npt.NDArray[np.uint32]:
    """Each sampled row's repeats, in the sample's order (a cut sample holds each once)."""
    rows = summary.sample.num_rows
    if not summary.repeats:
        return np.zeros(rows, dtype=np.uint32)
    keys = summary.sample.column(logformat.KEY).to_numpy().tolist()
    places = summary.sample.column(logformat.ROW).to_numpy().tolist()
    found = [summary.repeats.get(at, 0) for at in zip(keys, places, strict=True)]
    return np.asarray(found, dtype=np.uint32)


def _repeats_of(sample: pa.Table) -> Counter[tuple[int, int]]:
    """The repeats stored in a sample's column, by (request key, row)."""
    counts = sample.column(REPEATS).to_numpy()
    held = np.flatnonzero(counts)
    if not len(held):
        return Counter()
    keys = sample.column(logformat.KEY).to_numpy()[held].tolist()
    places = sample.column(logformat.ROW).to_numpy()[held].tolist()
    return Counter(dict(zip(zip(keys, places, strict=True), counts[held].tolist(), strict=True)))


def _counts(summary: WindowSummary) -> dict[str, Any]:
    return {
        **{name: getattr(summary, name) for name in _SUMS},
        "latency": {str(b): n for b, n in summary.latency.items()},
        "numeric": summary.numeric,
        "categorical": {n: dict(c) for n, c in summary.categorical.items()},
        "threshold": str(summary.threshold),
    }


def _from_counts(counts: Mapping[str, Any], sample: pa.Table, sample_rows: int) -> WindowSummary:
    summary = WindowSummary(
        sample_rows=sample_rows,
        sample=sample,
        latency=Counter({int(b): int(n) for b, n in counts["latency"].items()}),
        numeric={n: [int(c) for c in v] for n, v in counts["numeric"].items()},
        categorical={n: Counter(v) for n, v in counts["categorical"].items()},
        threshold=int(counts["threshold"]),
    )
    for name in _SUMS:
        setattr(summary, name, int(counts[name]))
    return summary
