"""One simulated day of production: the day's batch arrives, its rows are served, late labels return.

`serve_day` plays what production does on one day, into the same store and in
the same records:

1. the day's batch is generated (with `data.generator`: its scenario and change
   day) and written to `data.source`, as `flywheel data generate` writes it;
2. its rows are sent, in requests of `ROWS_PER_REQUEST` (a Seldon batch
   request), to the real serving class (`FlywheelModel`) in-process, so the
   prediction log holds what production writes, stamped inside that day;
3. the true labels of the day `label_delay_days` earlier come back as Seldon
   feedback to the same class, stamped at the end of this day.

Request ids are derived from the day, the seed and the request's position, and
the rows served from a seeded sample, so the labels of an earlier day can be
sent without remembering anything: call every day with the same `rows` and
`seed`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from flywheel import batches, synthetic
from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.monitoring.logs import Skipped, read_predictions
from flywheel.registry import Registry
from flywheel.serving.model import FlywheelModel
from flywheel.serving.requests import BadRequest
from flywheel.storage import open_store

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ROWS_PER_REQUEST = 25


class SimulationError(FlywheelError, ValueError):
    """A simulated day cannot be played as asked."""


@dataclass(frozen=True)
class ServedDay:
    """What one simulated day put into the store."""

    day: date
    version: str  # the version that served, an alias resolved
    batch: str  # where the day's batch is
    batch_written: bool  # False when the batch was already there and was served as it is
    rows: int  # rows in the requests that were answered
    request_ids: tuple[str, ...]  # of the answered requests, in the order sent
    rejected: dict[str, str] = field(default_factory=dict)  # request id -> the 400's message
    labels_for: date | None = None  # whose labels came back today
    labels: int = 0  # labelled rows accepted as feedback
    seconds: float = 0.0  # wall time of the whole day


class _Clock:
    """The simulated time the serving class stamps its records with."""

    def __init__(self) -> None:
        self.at = 0.0

    def __call__(self) -> float:
        return self.at


def request_id(day: date, seed: int, index: int) -> str:
    """The id of the `index`-th request of a simulated day."""
    return f"sim-{day.isoformat()}-s{seed}-{index:05d}"


def serve_day(
    settings: Settings,
    day: date,
    *,
    version: str,
    rows: int | None = None,
    label_delay_days: int = 2,
    seed: int = 0,
    alter: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    model_class: type[FlywheelModel] = FlywheelModel,
) -> ServedDay:
    """Play one day: write its batch, serve `rows` of it (all when None) as `version`, and send
    the labels of the day `label_delay_days` before.

    `alter` changes the rows a client sends (not the batch), and `model_class` replaces the
    serving class: both are there to inject faults.
    """
    if rows is not None and rows < 1:
        raise SimulationError(f"rows must be at least 1, not {rows}")
    if label_delay_days < 0:
        raise SimulationError(f"label_delay_days must be 0 or more, not {label_delay_days}")
    started = time.perf_counter()
    resolved = Registry.from_settings(settings).lookup(version)
    source = batches.BatchSource(
        open_store(settings.data.source, settings.storage), settings.data.format
    )
    clock = _Clock()
    model = model_class(
        model_name=settings.model_name,
        model_version=resolved,
        store_uri=settings.storage.uri,
        store_endpoint=settings.storage.endpoint or "",
        store_secure=settings.storage.secure,
        clock=clock,
    )
    # One OpenMP thread, as the serving image runs (OMP_NUM_THREADS=1): scikit-learn's
    # per-tree thread pools cost more than they give on 25-row requests.
    with threadpool_limits(limits=1, user_api="openmp"):
        model.load()  # first: a version that cannot be served writes nothing
        frame, location, written = _batch(settings, source, day)
        try:
            ids, answered, rejected = _serve(settings, model, clock, frame, day, rows, seed, alter)
            labels_for = day - timedelta(days=label_delay_days)
            labels = _feedback(settings, model, clock, source, labels_for, day, rows, seed)
        finally:
            for logger in (model.logger, model.feedback_log):
                if logger is not None:
                    logger.flush()
                    logger.close()
    return ServedDay(
        day=day,
        version=resolved,
        batch=location,
        batch_written=written,
        rows=answered,
        request_ids=ids,
        rejected=rejected,
        labels_for=labels_for if labels is not None else None,
        labels=labels or 0,
        seconds=round(time.perf_counter() - started, 4),
    )


def _batch(
    settings: Settings, source: batches.BatchSource, day: date
) -> tuple[pd.DataFrame, str, bool]:
    """The day's batch: read when it is there already, else generated and written."""
    for batch in source.available():
        if batch.day == day:
            return batches.parse(batch.name, source.store.read(batch.key)), batch.key, False
    frame = synthetic.generate_day(day, settings.data.generator)
    fmt = "csv" if settings.data.format == "csv" else "parquet"
    return frame, source.write(day, frame, fmt), True


def _chosen(length: int, day: date, rows: int | None, seed: int) -> np.ndarray[Any, Any]:
    """Which rows of a day's batch are served: a seeded sample, in the batch's (time) order."""
    import numpy as np

    if rows is None or rows >= length:
        return np.arange(length)
    rng = np.random.default_rng([seed, day.toordinal()])
    return np.sort(rng.choice(length, size=rows, replace=False))


def _requests(
    frame: pd.DataFrame, day: date, rows: int | None, seed: int
) -> list[tuple[str, pd.DataFrame]]:
    """(request id, rows) of each request of the day."""
    served = frame.iloc[_chosen(len(frame), day, rows, seed)]
    return [
        (request_id(day, seed, n), served.iloc[start : start + ROWS_PER_REQUEST])
        for n, start in enumerate(range(0, len(served), ROWS_PER_REQUEST))
    ]


def _times(settings: Settings, parts: list[tuple[str, pd.DataFrame]], day: date) -> list[float]:
    """When each request is sent: its first row's event time, else spread over the day."""
    import pandas as pd

    midnight = datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp()
    out = []
    for n, (_, part) in enumerate(parts):
        at = midnight + 86_400 * n / max(len(parts), 1)
        column = settings.features.time_column
        if column in part.columns:
            stamp = pd.to_datetime(part[column].iloc[0], errors="coerce", utc=True)
            if not pd.isna(stamp) and midnight <= stamp.timestamp() < midnight + 86_400:
                at = stamp.timestamp()
        out.append(at)
    return out


def _records(settings: Settings, part: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as a client sends them: JSON records of every column but the time and the
    label (NaN becomes null)."""
    kept = [
        c for c in part.columns if c not in (settings.features.time_column, settings.features.label)
    ]
    records: list[dict[str, Any]] = json.loads(part[kept].to_json(orient="records"))
    return records


def _serve(
    settings: Settings,
    model: FlywheelModel,
    clock: _Clock,
    frame: pd.DataFrame,
    day: date,
    rows: int | None,
    seed: int,
    alter: Callable[[pd.DataFrame], pd.DataFrame] | None,
) -> tuple[tuple[str, ...], int, dict[str, str]]:
    parts = _requests(frame, day, rows, seed)
    ids: list[str] = []
    answered = 0
    rejected: dict[str, str] = {}
    for (rid, part), at in zip(parts, _times(settings, parts, day), strict=True):
        sent = alter(part.copy()) if alter is not None else part
        clock.at = at
        try:
            model.score({"jsonData": _records(settings, sent), "meta": {"puid": rid}})
        except BadRequest as error:
            model.bad_requests += 1  # as predict_raw counts it
            rejected[rid] = str(error)
            continue
        ids.append(rid)
        answered += len(part)
    return tuple(ids), answered, rejected


def _feedback(
    settings: Settings,
    model: FlywheelModel,
    clock: _Clock,
    source: batches.BatchSource,
    labels_for: date,
    today: date,
    rows: int | None,
    seed: int,
) -> int | None:
    """Send the true labels of the requests answered on `labels_for`, as feedback carrying the
    response that was logged; the labelled rows accepted, or None when nothing was served then."""
    found = [b for b in source.available() if b.day == labels_for]
    if not found:
        return None
    registry = Registry.from_settings(settings)
    midnight = datetime.combine(labels_for, datetime.min.time(), tzinfo=UTC)
    logged = read_predictions(
        registry.store,
        settings.model_name,
        [m.version for m in registry.versions()],
        midnight,
        midnight + timedelta(days=1),
        Skipped(),
    )
    answered = {p.request_id: p for p in logged}
    if not answered:
        return None
    frame = batches.parse(found[0].name, source.store.read(found[0].key))
    # Labels arrive at the end of today.
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    clock.at = end.timestamp() - 1
    accepted = 0
    for rid, part in _requests(frame, labels_for, rows, seed):
        prediction = answered.get(rid)
        if prediction is None:
            continue  # refused that day, or served by another seed
        try:
            labels = [int(v) for v in part[settings.features.label]]
        except (KeyError, TypeError, ValueError):
            continue  # no usable label: nothing to send
        request = {"jsonData": _records(settings, part), "meta": {"puid": rid}}
        response = {
            "data": {"ndarray": [[1 - s, s] for s in prediction.scores]},
            "meta": {"tags": {"request_id": rid, "model_version": prediction.version}},
        }
        try:
            model.judge_feedback(request, response, {"data": {"ndarray": labels}})
        except BadRequest:
            continue  # Seldon answers 400
        accepted += len(labels)
    return accepted
