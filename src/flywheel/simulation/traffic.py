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

The requests are built once, whatever carries them: each is tagged with the simulated
time it is sent at (`meta.tags.sent_at`, and the feedback's `truth` likewise). In-process
(`InProcess`) that time is the serving class's clock; over HTTP (`OverHttp`, `gateway=`)
they go through the Flywheel gateway to seldon-core microservices started with
`stamp_from_request`, which stamp their logs with it. A 400 is a refused request either way.

Request ids are derived from the day, the seed and the request's position, and
the rows served from a seeded sample, so the labels of an earlier day can be
sent without remembering anything: call every day with the same `rows` and
`seed`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from threadpoolctl import threadpool_limits

from flywheel import batches, synthetic
from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.monitoring.logs import Skipped, read_predictions
from flywheel.registry import Registry
from flywheel.serving.messages import SENT_AT
from flywheel.serving.model import FlywheelModel
from flywheel.serving.requests import BadRequest

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


class Transport(Protocol):
    """What carries a simulated day's requests and feedback to a serving model."""

    def score(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The response to a request; BadRequest when it is refused (a 400)."""
        ...

    def feedback(
        self, request: dict[str, Any], response: dict[str, Any], truth: dict[str, Any]
    ) -> None:
        """Send Seldon feedback; BadRequest when it is refused (a 400)."""
        ...


def sent_at(message: dict[str, Any]) -> float:
    """The simulated time a message built here is sent at (its `meta.tags.sent_at`)."""
    return float(message["meta"]["tags"][SENT_AT])


class InProcess:
    """The serving class in this process, its clock set to each message's `sent_at`."""

    def __init__(self, model: FlywheelModel, clock: _Clock) -> None:
        self.model = model
        self.clock = clock

    def score(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.clock.at = sent_at(payload)
        try:
            return self.model.score(payload)
        except BadRequest:
            self.model.count_bad_request()  # as predict_raw counts it
            raise

    def feedback(
        self, request: dict[str, Any], response: dict[str, Any], truth: dict[str, Any]
    ) -> None:
        self.clock.at = sent_at(truth)
        self.model.judge_feedback(request, response, truth)


class OverHttp:
    """Seldon's REST protocol to `url` (the gateway): a 400 is a BadRequest, and any other
    failure a SimulationError, since the day cannot be played as production would."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def score(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._post("/api/v1.0/predictions", payload)

    def feedback(
        self, request: dict[str, Any], response: dict[str, Any], truth: dict[str, Any]
    ) -> None:
        self._post("/api/v1.0/feedback", {"request": request, "response": response, "truth": truth})

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        sent = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(sent, timeout=self.timeout) as answer:
                answered: dict[str, Any] = json.loads(answer.read())
                return answered
        except urllib.error.HTTPError as error:
            info = _status_info(error.read())
            if error.code == 400:
                raise BadRequest(info) from None
            raise SimulationError(f"{self.url}{path} answered {error.code}: {info}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise SimulationError(f"{self.url}{path} did not answer: {error}") from None


def _status_info(body: bytes) -> str:
    """The message of a Seldon status answer, else the body itself."""
    try:
        status = json.loads(body)["status"]
        return str(status.get("info") or status.get("reason") or status)
    except (ValueError, KeyError, TypeError, AttributeError):
        return body.decode(errors="replace")[:300]


def request_id(day: date, seed: int, index: int) -> str:
    """The id of the `index`-th request of a simulated day."""
    return f"sim-{day.isoformat()}-s{seed}-{index:05d}"


def serve_day(
    settings: Settings,
    registry: Registry,
    source: batches.BatchSource,
    day: date,
    *,
    version: str,
    rows: int | None = None,
    label_delay_days: int = 2,
    seed: int = 0,
    alter: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    model_class: type[FlywheelModel] = FlywheelModel,
    gateway: str | None = None,
) -> ServedDay:
    """Play one day: write its batch to `source`, serve `rows` of it (all when None) as
    `version` of `registry`, and send the labels of the day `label_delay_days` before.

    In-process by default; with `gateway` (a URL) over HTTP to the microservice it routes to,
    which must serve `version` with `stamp_from_request` on (an answer from another version is
    a SimulationError). `alter` changes the rows a client sends (not the batch), and
    `model_class` replaces the in-process serving class: both are there to inject faults.
    """
    if rows is not None and rows < 1:
        raise SimulationError(f"rows must be at least 1, not {rows}")
    if label_delay_days < 0:
        raise SimulationError(f"label_delay_days must be 0 or more, not {label_delay_days}")
    if gateway is not None and model_class is not FlywheelModel:
        raise SimulationError("model_class replaces the in-process serving class: not with gateway")
    started = time.perf_counter()
    resolved = registry.lookup(version)
    model: FlywheelModel | None = None
    transport: Transport
    if gateway is None:
        clock = _Clock()
        model = model_class(
            model_name=settings.model_name,
            model_version=resolved,
            store_uri=settings.storage.uri,
            store_endpoint=settings.storage.endpoint or "",
            store_secure=settings.storage.secure,
            log_sample=settings.monitoring.log_sample,
            clock=clock,
            registry=registry,
        )
        transport = InProcess(model, clock)
    else:
        transport = OverHttp(gateway)
    # One OpenMP thread, as the serving image runs (OMP_NUM_THREADS=1): scikit-learn's
    # per-tree thread pools cost more than they give on 25-row requests.
    with threadpool_limits(limits=1, user_api="openmp"):
        if model is not None:
            model.load()  # first: a version that cannot be served writes nothing
        frame, location, written = _batch(settings, source, day)
        try:
            ids, answered, rejected = _serve(
                settings, transport, resolved, frame, day, rows, seed, alter
            )
            labels_for = day - timedelta(days=label_delay_days)
            labels = _feedback(settings, registry, transport, source, labels_for, day, rows, seed)
        finally:
            for logger in (model.logger, model.feedback_log) if model is not None else ():
                if logger is not None:
                    logger.close()  # writes what is buffered
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


def request(settings: Settings, rid: str, part: pd.DataFrame, at: float) -> dict[str, Any]:
    """The Seldon request a client sends for `part`, tagged with when it is sent."""
    return {"jsonData": _records(settings, part), "meta": {"puid": rid, "tags": {SENT_AT: at}}}


def truth(labels: list[int], at: float) -> dict[str, Any]:
    """The `truth` of a Seldon feedback carrying `labels`, tagged with when it is sent."""
    return {"data": {"ndarray": labels}, "meta": {"tags": {SENT_AT: at}}}


def _serve(
    settings: Settings,
    transport: Transport,
    version: str,
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
        try:
            response = transport.score(request(settings, rid, sent, at))
        except BadRequest as error:
            rejected[rid] = str(error)
            continue
        by = (response.get("meta") or {}).get("tags", {}).get("model_version")
        if by != version:
            raise SimulationError(f"request {rid} was answered by {by!r}, not {version}")
        ids.append(rid)
        answered += len(part)
    return tuple(ids), answered, rejected


def _feedback(
    settings: Settings,
    registry: Registry,
    transport: Transport,
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
    at = end.timestamp() - 1
    accepted = 0
    for rid, part in _requests(frame, labels_for, rows, seed):
        prediction = answered.get(rid)
        if prediction is None:
            continue  # refused that day, or served by another seed
        try:
            labels = [int(v) for v in part[settings.features.label]]
        except (KeyError, TypeError, ValueError):
            continue  # no usable label: nothing to send
        response = {
            "data": {"ndarray": [[1 - s, s] for s in prediction.scores]},
            "meta": {"tags": {"request_id": rid, "model_version": prediction.version}},
        }
        try:
            transport.feedback(
                request(settings, rid, part, prediction.time), response, truth(labels, at)
            )
        except BadRequest:
            continue  # Seldon answers 400
        accepted += len(labels)
    return accepted
