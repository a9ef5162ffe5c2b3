"""Reading the prediction log and the feedback log, skipping what is broken.

Both logs are files below `<log>/<model>/<version>/<day>/<HHMMSSffffff>-<pid>-<seq>.<suffix>`:
Parquet (`flywheel.logformat`, what serving writes) or JSON Lines (what it wrote before, still
read). Monitoring reads a file as one typed table (`prediction_table`, `feedback_table`); the
simulation and small tools read requests as `Prediction` objects (`read_predictions`).
Whatever cannot be used (a truncated or half-uploaded file, a column of the wrong type, a
version that is not registered or not the file's, a line of truncated JSON, no request id,
rows that do not fit) is counted under its reason, its file's version and its file's write
time, and skipped: one bad file never stops monitoring.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel import logformat
from flywheel.contract import Contract
from flywheel.storage import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
_FILE = re.compile(r"^(v[0-9]+)/(\d{4}-\d{2}-\d{2})/(\d{12})-[^/]*\.(jsonl|parquet)$")

INVALID_JSON = "invalid JSON (a truncated line?)"
NO_REQUEST_ID = "missing request id"
UNKNOWN_VERSION = "unknown version"
MALFORMED = "malformed record"
UNREADABLE = "unreadable Parquet file (truncated or half-uploaded?)"
WRONG_TYPE = "column of the wrong type"
DUPLICATE = "duplicate request id"
NEVER_LOGGED = "feedback for a request never logged"


# A true label as feedback brings it: a class as the label column takes it, or a number.
Label = str | int | float | bool


@dataclass(frozen=True)
class Prediction:
    """One logged request: its rows, and each row's answer as served: a classifier's
    probability per class (in the model's classes_ order), a regression's predicted value."""

    request_id: str
    version: str
    time: float
    latency_ms: float | None
    features: tuple[str, ...]
    inputs: tuple[tuple[Any, ...], ...]
    outputs: tuple[tuple[float, ...], ...]

    @property
    def scores(self) -> tuple[float, ...]:
        """Each row's last output: a binary classifier's P(positive class), a regression's
        value (a multiclass answer has no one score; see `outputs`)."""
        return tuple(row[-1] for row in self.outputs)


@dataclass
class Skipped:
    """Lines left out, by (version of the file, the file's write time, reason)."""

    counts: Counter[tuple[str, datetime, str]] = field(default_factory=Counter)

    def add(self, version: str, at: datetime, reason: str, count: int = 1) -> None:
        """Count `count` lines of one file under `reason`."""
        self.counts[(version, at, reason)] += count

    def between(self, version: str, start: datetime, end: datetime) -> dict[str, int]:
        """Skipped lines of one version's files written in [start, end), by reason."""
        out: Counter[str] = Counter()
        for (v, at, reason), n in self.counts.items():
            if v == version and start <= at < end:
                out[reason] += n
        return dict(sorted(out.items()))


def days(start: datetime, end: datetime) -> list[date]:
    """Every UTC day that [start, end] touches."""
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _files(
    store: ObjectStore, log: str, model: str, start: datetime, end: datetime
) -> Iterator[tuple[str, str, datetime]]:
    """(key, version, write time) of each log file written in the days of [start, end]."""
    wanted = {d.isoformat() for d in days(start, end)}
    prefix = f"{log}/{model}/"
    for key in store.list(prefix):
        match = _FILE.match(key[len(prefix) :])
        if match and match.group(2) in wanted:
            version, day, clock, _ = match.groups()
            yield key, version, _written(day, clock)


def _lines(raw: bytes) -> Iterator[dict[str, Any] | None]:
    """Each non-empty line as a dict, or None when it is not a JSON object."""
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            yield None
            continue
        yield value if isinstance(value, dict) else None


def _problem(entry: dict[str, Any] | None, model: str, version: str, known: Collection[str]) -> str:
    if entry is None:
        return INVALID_JSON
    if not isinstance(entry.get("request_id"), str) or not entry["request_id"]:
        return NO_REQUEST_ID
    if entry.get("model") != model or entry.get("version") != version or version not in known:
        return UNKNOWN_VERSION
    if not _number(entry.get("time")):
        return MALFORMED
    return ""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_predictions(
    store: ObjectStore,
    model: str,
    known: Collection[str],
    start: datetime,
    end: datetime,
    skipped: Skipped,
) -> list[Prediction]:
    """The requests of registered versions `known` served in [start, end)."""
    out: list[Prediction] = []
    # A file is written up to a flush interval after its records: look one day further.
    for key, version, at in _files(store, PREDICTIONS, model, start, end + timedelta(days=1)):
        for entry in _entries(store.read(key), key, model, version, at, skipped):
            problem = _problem(entry, model, version, known)
            prediction = None if problem or entry is None else _prediction(entry, version)
            if prediction is None:
                skipped.add(version, at, problem or MALFORMED)
            elif start.timestamp() <= prediction.time < end.timestamp():
                out.append(prediction)
    return sorted(out, key=lambda p: p.time)


def _prediction(entry: dict[str, Any], version: str) -> Prediction | None:
    features, inputs, outputs = entry.get("features"), entry.get("inputs"), entry.get("outputs")
    if not (isinstance(features, list) and isinstance(inputs, list) and isinstance(outputs, list)):
        return None
    if len(inputs) != len(outputs) or not outputs:
        return None
    if any(not isinstance(row, list) or len(row) != len(features) for row in inputs):
        return None
    answers = [_answer(row) for row in outputs]
    if any(a is None for a in answers) or len({len(a) for a in answers if a}) != 1:
        return None
    latency = entry.get("latency_ms")
    return Prediction(
        request_id=entry["request_id"],
        version=version,
        time=float(entry["time"]),  # checked by _problem
        latency_ms=float(latency)
        if isinstance(latency, int | float) and _number(latency)
        else None,
        features=tuple(str(f) for f in features),
        inputs=tuple(tuple(row) for row in inputs),
        outputs=tuple(a for a in answers if a is not None),
    )


def _answer(row: Any) -> tuple[float, ...] | None:
    """One row's answer as floats ("NaN" and "Infinity" are kept, to be counted): a list of
    class probabilities or of one predicted value, or that value alone; None if it is neither."""
    values = row if isinstance(row, list) else [row]
    if not values or any(
        isinstance(v, bool) or not isinstance(v, int | float | str) for v in values
    ):
        return None
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        return None


def _label(value: Any) -> bool:
    """Whether `value` can be a true label: a class name or value, or a finite number."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def read_labels(
    store: ObjectStore,
    model: str,
    known: Collection[str],
    start: datetime,
    end: datetime,
    skipped: Skipped,
) -> dict[str, tuple[Label, ...]]:
    """The true labels sent as feedback in [start, end), by request id (the last one wins): class
    values as the label column takes them, or numbers; whether they fit the version's task is
    the analysis' to judge."""
    labels: dict[str, tuple[Label, ...]] = {}
    for key, version, at in _files(store, FEEDBACK, model, start, end):
        for entry in _entries(store.read(key), key, model, version, at, skipped):
            problem = _problem(entry, model, version, known)
            values = None if problem or entry is None else entry.get("labels")
            if not isinstance(values, list) or not values or not all(map(_label, values)):
                skipped.add(version, at, problem or MALFORMED)
                continue
            labels[entry["request_id"]] = tuple(values)  # type: ignore[index]
    return labels


# --- Parquet, and files as tables --------------------------------------------------


def parquet_table(data: bytes, columns: Sequence[str] | None = None) -> pa.Table | None:
    """A Parquet file's table (of those of `columns` it has), or None when it cannot be read
    (truncated, half-uploaded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # A log file is small: Arrow's threads cost more than they save (a fifth of a read).
        source = pq.ParquetFile(pa.BufferReader(data))
        names = source.schema_arrow.names
        wanted = None if columns is None else [c for c in columns if c in names]
        return source.read(columns=wanted, use_threads=False)
    except (pa.ArrowException, OSError, ValueError):
        return None


def _foreign(table: pa.Table, model: str, version: str) -> bool:
    """True when the file's footer names another model or version than its path."""
    meta = table.schema.metadata or {}
    for name, expected in ((b"model", model), (b"version", version)):
        if name in meta and meta[name].decode() != expected:
            return True
    return False


def _entries(
    data: bytes, key: str, model: str, version: str, at: datetime, skipped: Skipped
) -> Iterator[dict[str, Any] | None]:
    """A file's records as JSON Lines hold them: a Parquet file's rows grouped by request
    (a file that cannot be read is counted here and yields nothing)."""
    if not key.endswith(logformat.SUFFIX):
        yield from _lines(data)
        return
    table = parquet_table(data)
    if table is None:
        skipped.add(version, at, UNREADABLE)
        return
    if _foreign(table, model, version):
        skipped.add(version, at, UNKNOWN_VERSION, table.num_rows)
        return
    yield from _grouped(table.to_pylist(), model, version)


def _grouped(rows: list[dict[str, Any]], model: str, version: str) -> Iterator[dict[str, Any]]:
    """Table rows (one per served row, or per label) as one record per request."""
    by_request: dict[str, dict[str, Any]] = {}
    for row in rows:
        rid = row.get(logformat.REQUEST_ID)
        entry = by_request.setdefault(
            str(rid),
            {
                "request_id": rid,
                "model": model,
                "version": version,
                "time": row.get(logformat.TIME),
                "latency_ms": row.get(logformat.LATENCY),
                "features": [
                    c[len(logformat.INPUT) :] for c in row if c.startswith(logformat.INPUT)
                ],
                "inputs": [],
                "outputs": [],
                "labels": [],
            },
        )
        entry["inputs"].append([v for c, v in row.items() if c.startswith(logformat.INPUT)])
        entry["outputs"].append([v for c, v in row.items() if c.startswith(logformat.OUTPUT)])
        if logformat.LABEL_NUMBER in row or logformat.LABEL_TEXT in row:
            text = row.get(logformat.LABEL_TEXT)
            entry["labels"].append(text if text is not None else row.get(logformat.LABEL_NUMBER))
    yield from by_request.values()


@dataclass(frozen=True)
class LogFile:
    """One file of a log: where it is, whose it is, and when it was written."""

    key: str
    version: str
    written: datetime

    @property
    def parquet(self) -> bool:
        """True for the Parquet format, False for JSON Lines."""
        return self.key.endswith(logformat.SUFFIX)


def _written(day: str, clock: str) -> datetime:
    """When a file was written, from its name's day (YYYY-MM-DD) and clock (HHMMSSffffff):
    read by slicing, as strptime took a tenth of a look's CPU over a day's 5,760 names."""
    return datetime(
        int(day[:4]),
        int(day[5:7]),
        int(day[8:10]),
        int(clock[:2]),
        int(clock[2:4]),
        int(clock[4:6]),
        int(clock[6:]),
        tzinfo=UTC,
    )


def log_files(store: ObjectStore, log: str, model: str, version: str, day: date) -> list[LogFile]:
    """The files of one version's log written on one UTC day, oldest first."""
    prefix = f"{log}/{model}/"
    out = []
    for key in store.list(f"{prefix}{version}/{day.isoformat()}/"):
        match = _FILE.match(key[len(prefix) :])
        if match:
            _, name, clock, _ = match.groups()
            out.append(LogFile(key, version, _written(name, clock)))
    return sorted(out, key=lambda f: (f.written, f.key))


def monitored(schema: pa.Schema) -> pa.Schema:
    """A log's columns as monitoring reads them: every one but the request id's text, which
    its 64-bit key stands for (36 characters a row are most of a row's bytes)."""
    import pyarrow as pa

    return pa.schema([f for f in schema if f.name != logformat.REQUEST_ID])


@functools.lru_cache(maxsize=16)
def _monitored_schema(
    numeric: tuple[str, ...], categorical: tuple[str, ...], width: int
) -> pa.Schema:
    """`monitored` prediction columns of a contract's features, made once, not once a file."""
    return monitored(logformat.prediction_schema(numeric, categorical, width))


def _conform(table: pa.Table, wanted: pa.Schema) -> pa.Table | None:
    """The table with exactly `wanted`'s columns, cast; a missing input or latency column is
    null, a missing output NaN. None when a column cannot be read as its type."""
    import pyarrow as pa
    import pyarrow.types as types

    if table.schema.remove_metadata().equals(wanted):  # as serving writes it: nothing to cast
        return table
    columns = []
    for column_field in wanted:
        if column_field.name not in table.column_names:
            if column_field.name in (logformat.KEY, logformat.ROW, logformat.TIME):
                return None
            fill = float("nan") if column_field.name.startswith(logformat.OUTPUT) else None
            columns.append(pa.array([fill] * table.num_rows, type=column_field.type))
            continue
        column = table.column(column_field.name)
        kind = column.type
        if types.is_dictionary(kind):
            kind = kind.value_type
            column = column.cast(kind)
        numeric = types.is_integer(kind) or types.is_floating(kind) or types.is_null(kind)
        text = types.is_string(kind) or types.is_large_string(kind) or types.is_null(kind)
        if (types.is_string(column_field.type) and not text) or (
            not types.is_string(column_field.type) and not numeric
        ):
            return None
        try:
            columns.append(column.cast(column_field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    return pa.Table.from_arrays(columns, schema=pa.schema(list(wanted)))


def _usable(table: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """The rows with a request key and a finite time; the others counted by reason."""
    import numpy as np
    import pyarrow.compute as pc

    key, time = table.column(logformat.KEY), table.column(logformat.TIME)
    if key.null_count == 0 and time.null_count == 0 and np.isfinite(time.to_numpy()).all():
        return table, {}  # as serving writes it: every row
    has_id = pc.is_valid(key)
    timed = pc.and_(pc.is_valid(time), pc.is_finite(pc.fill_null(time, float("nan"))))
    lost = {
        NO_REQUEST_ID: table.num_rows - pc.sum(has_id).as_py() if table.num_rows else 0,
        MALFORMED: pc.sum(pc.and_(has_id, pc.invert(timed))).as_py() or 0,
    }
    return table.filter(pc.and_(has_id, timed)), {k: int(v) for k, v in lost.items() if v}


def _typed(
    data: bytes, file: LogFile, model: str, schema: pa.Schema, skipped: Skipped
) -> pa.Table | None:
    """A Parquet log file's usable rows in `schema`'s columns (only those are read); what is
    not usable is counted."""
    table = parquet_table(data, [f.name for f in schema])
    if table is None:
        skipped.add(file.version, file.written, UNREADABLE)
        return None
    return _typed_table(table, file, model, schema, skipped)


def _typed_table(
    table: pa.Table, file: LogFile, model: str, schema: pa.Schema, skipped: Skipped
) -> pa.Table | None:
    """`_typed` of a table read."""
    if _foreign(table, model, file.version):
        skipped.add(file.version, file.written, UNKNOWN_VERSION, table.num_rows)
        return None
    typed = _conform(table, schema)
    if typed is None:
        skipped.add(file.version, file.written, WRONG_TYPE, table.num_rows)
        return None
    typed, lost = _usable(typed)
    for reason, count in lost.items():
        skipped.add(file.version, file.written, reason, count)
    return typed if typed.num_rows else None


# A day's compacted file can hold millions of rows: it is read by row groups from a local
# copy, never held whole in memory.
COMPACTED = "compacted"


def compacted_name(day: date) -> str:
    """The name of a day's compacted file: dated at the day's last instant, so that it sorts
    after every file it holds."""
    return f"{day.isoformat()}/235959999999-0-{COMPACTED}{logformat.SUFFIX}"


def prediction_tables(
    store: ObjectStore,
    file: LogFile,
    model: str,
    contract: Contract,
    skipped: Skipped,
) -> Iterator[pa.Table]:
    """`prediction_table`, a compacted day's file read row group by row group."""
    if COMPACTED not in file.key:
        table = prediction_table(store, file, model, contract, skipped)
        if table is not None:
            yield table
        return
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    width = 1 if contract.task == "regression" else len(contract.classes)
    wanted = _monitored_schema(tuple(contract.numeric), tuple(contract.categorical), width)
    with tempfile.TemporaryDirectory(prefix="flywheel-log-") as scratch:
        local = Path(scratch) / "log.parquet"
        store.download(file.key, local)
        try:
            source = pq.ParquetFile(local)
            meta = source.schema_arrow.metadata
            names = [f.name for f in wanted if f.name in source.schema_arrow.names]
            for group in range(source.num_row_groups):
                part = source.read_row_group(group, columns=names).replace_schema_metadata(meta)
                typed = _typed_table(part, file, model, wanted, skipped)
                if typed is not None:
                    yield typed
        except (pa.ArrowException, OSError, ValueError):
            skipped.add(file.version, file.written, UNREADABLE)


def prediction_table(
    store: ObjectStore,
    file: LogFile,
    model: str,
    contract: Contract,
    skipped: Skipped,
) -> pa.Table | None:
    """One prediction file as a table of `contract`'s typed columns (`logformat`); None when
    nothing in it is usable, and what is not is counted in `skipped`."""
    numeric, categorical = list(contract.numeric), list(contract.categorical)
    width = 1 if contract.task == "regression" else len(contract.classes)
    wanted = _monitored_schema(tuple(numeric), tuple(categorical), width)
    data = store.read(file.key)
    if not file.parquet:
        entries = []
        for entry in _lines(data):
            problem = _problem(entry, model, file.version, (file.version,))
            if problem or entry is None or _prediction(entry, file.version) is None:
                skipped.add(file.version, file.written, problem or MALFORMED)
            else:
                entries.append(entry)
        table = logformat.prediction_table(entries, numeric, categorical, width)
        return table.drop_columns([logformat.REQUEST_ID]) if table.num_rows else None
    return _typed(data, file, model, wanted, skipped)


def feedback_table(
    store: ObjectStore, file: LogFile, model: str, skipped: Skipped
) -> pa.Table | None:
    """One feedback file as a table of `logformat.feedback_schema()`; None when nothing in it
    is usable, and what is not is counted in `skipped`."""
    data = store.read(file.key)
    if not file.parquet:
        entries = []
        for entry in _lines(data):
            problem = _problem(entry, model, file.version, (file.version,))
            values = None if problem or entry is None else entry.get("labels")
            if entry is None or not isinstance(values, list) or not values:
                skipped.add(file.version, file.written, problem or MALFORMED)
            elif not all(map(_label, values)):
                skipped.add(file.version, file.written, MALFORMED)
            else:
                entries.append(entry)
        table = logformat.feedback_table(entries)
        return table.drop_columns([logformat.REQUEST_ID]) if table.num_rows else None
    return _typed(data, file, model, monitored(logformat.feedback_schema()), skipped)
