"""Reading the prediction log and the feedback log of a time range, skipping what is broken.

Both logs are JSON Lines below `<log>/<model>/<version>/<day>/<HHMMSSffffff>-<pid>-<seq>.jsonl`.
A line that cannot be used (truncated JSON, a version that is not registered or
not the file's, no request id, rows that do not fit) is counted under its
reason, its file's version and its file's write time, and skipped: one bad line
never stops monitoring.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flywheel.storage import ObjectStore

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
_FILE = re.compile(r"^(v[0-9]+)/(\d{4}-\d{2}-\d{2})/(\d{12})-[^/]*\.jsonl$")

INVALID_JSON = "invalid JSON (a truncated line?)"
NO_REQUEST_ID = "missing request id"
UNKNOWN_VERSION = "unknown version"
MALFORMED = "malformed record"


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
            version, day, clock = match.groups()
            at = datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H%M%S%f").replace(tzinfo=UTC)
            yield key, version, at


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
        for entry in _lines(store.read(key)):
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
        for entry in _lines(store.read(key)):
            problem = _problem(entry, model, version, known)
            values = None if problem or entry is None else entry.get("labels")
            if not isinstance(values, list) or not values or not all(map(_label, values)):
                skipped.add(version, at, problem or MALFORMED)
                continue
            labels[entry["request_id"]] = tuple(values)  # type: ignore[index]
    return labels
