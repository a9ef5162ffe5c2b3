"""Reading the prediction log and the feedback log, skipping what is broken.

Both logs are files below `<log>/<model>/<version>/<day>/<HHMMSSffffff>-<pid>-<seq>.<suffix>`:
Parquet (`flywheel.logformat`, what serving writes) or JSON Lines (what it wrote before, still
read). Monitoring reads a file as one typed table (`tables`); the simulation and small tools
read requests as `Prediction` objects (`read_predictions`), here.
Whatever cannot be used (a truncated or half-uploaded file, a column of the wrong type, a
version that is not registered or not the file's, a line of truncated JSON, no request id,
rows that do not fit) is counted under its reason, its file's version and its file's write
time, and skipped: one bad file never stops monitoring.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flywheel import logformat
from flywheel.storage import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
FILE_NAME = re.compile(r"^(v[0-9]+)/(\d{4}-\d{2}-\d{2})/(\d{12})-[^/]*\.(jsonl|parquet)$")

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
        match = FILE_NAME.match(key[len(prefix) :])
        if match and match.group(2) in wanted:
            version, day, clock, _ = match.groups()
            yield key, version, written_at(day, clock)


def written_at(day: str, clock: str) -> datetime:
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


def json_lines(raw: bytes) -> Iterator[dict[str, Any] | None]:
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


def problem_of(
    entry: dict[str, Any] | None, model: str, version: str, known: Collection[str]
) -> str:
    """Why a JSON Lines record cannot be used (its reason, as Skipped counts it), or ""."""
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
            problem = problem_of(entry, model, version, known)
            prediction = None if problem or entry is None else prediction_of(entry, version)
            if prediction is None:
                skipped.add(version, at, problem or MALFORMED)
            elif start.timestamp() <= prediction.time < end.timestamp():
                out.append(prediction)
    return sorted(out, key=lambda p: p.time)


def prediction_of(entry: dict[str, Any], version: str) -> Prediction | None:
    """A record's request, or None when its rows do not fit its features and answers."""
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
        time=float(entry["time"]),  # checked by problem_of
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


def is_label(value: Any) -> bool:
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
            problem = problem_of(entry, model, version, known)
            values = None if problem or entry is None else entry.get("labels")
            if not isinstance(values, list) or not values or not all(map(is_label, values)):
                skipped.add(version, at, problem or MALFORMED)
                continue
            labels[entry["request_id"]] = tuple(values)  # type: ignore[index]
    return labels


# --- Parquet, and files as tables --------------------------------------------------


def parquet_table(data: bytes, columns: Sequence[str] | None = None) -> pa.Table | None:
    """A Parquet file's table (of those of `columns` it has), or None when it cannot be read
    (truncated, half-uploaded)."""
    found = parquet_file(data, columns)
    return None if found is None else found[0]


def parquet_file(
    data: bytes, columns: Sequence[str] | None = None
) -> tuple[pa.Table, pa.Schema] | None:
    """`parquet_table`, and the schema of every column the file has."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # A log file is small: Arrow's threads cost more than they save (a fifth of a read).
        source = pq.ParquetFile(pa.BufferReader(data))
        schema = source.schema_arrow
        wanted = None if columns is None else [c for c in columns if c in schema.names]
        return source.read(columns=wanted, use_threads=False), schema
    except (pa.ArrowException, OSError, ValueError):
        return None


def foreign(table: pa.Table, model: str, version: str) -> bool:
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
        yield from json_lines(data)
        return
    table = parquet_table(data)
    if table is None:
        skipped.add(version, at, UNREADABLE)
        return
    if foreign(table, model, version):
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
