"""Simulated days of served traffic, read back by monitoring window by window."""

from __future__ import annotations

import functools
import io
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from flywheel.config import Settings
from flywheel.monitoring.logs import Skipped, read_labels, read_predictions
from flywheel.monitoring.monitor import monitor
from flywheel.registry import MODEL_FILE, VersionNotFound
from flywheel.serving.model import FlywheelModel, ModelUnavailable
from flywheel.serving.requests import BadRequest
from flywheel.simulation.traffic import (
    ROWS_PER_REQUEST,
    OverHttp,
    ServedDay,
    SimulationError,
    request,
    serve_day,
    truth,
)
from flywheel.storage import LocalStore
from flywheel.stores import Stores

Serve = Callable[..., ServedDay]


@pytest.fixture
def serve(project: Settings, stores: Stores) -> Serve:
    """serve_day on the project's stores: serve(day, version=..., ...)."""
    return functools.partial(serve_day, project, stores.registry, stores.source)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _day(settings: Settings, index: int) -> date:
    return settings.data.generator.start_date + timedelta(days=index)


def _logged_ids(store: LocalStore, day: date) -> list[str]:
    """The request ids v1's prediction log holds for `day`, in order."""
    start = _midnight(day)
    logged = read_predictions(
        store, "loan-default", {"v1"}, start, start + timedelta(days=1), Skipped()
    )
    return [p.request_id for p in logged]


def test_each_served_day_is_one_monitoring_window_and_its_labels_arrive_two_days_later(
    project: Settings,
    stores: Stores,
    serve: Serve,
) -> None:
    # given v1 in production and batches up to day 4
    store = LocalStore(project.storage.uri)
    # when days 5, 6 and 7 are served, 100 rows a day, labels two days late
    served = [serve(_day(project, i), version="production", rows=100) for i in (5, 6, 7)]
    # then each day's batch was written, and all of its requests answered
    assert [s.batch_written for s in served] == [True, True, True]
    assert [s.rows for s in served] == [100, 100, 100] and not any(s.rejected for s in served)
    assert all(len(s.request_ids) == -(-100 // ROWS_PER_REQUEST) for s in served)
    # and only day 7 sent labels: day 5's, since nothing was served on days 3 and 4
    assert [s.labels_for for s in served] == [None, None, _day(project, 5)]
    assert [s.labels for s in served] == [0, 0, 100]
    # and the prediction log holds exactly each day's requests, stamped inside that day,
    # in files dated by the simulated day
    for s in served:
        logged = read_predictions(
            store,
            "loan-default",
            {"v1"},
            _midnight(s.day),
            _midnight(s.day + timedelta(days=1)),
            Skipped(),
        )
        assert [p.request_id for p in logged] == list(s.request_ids)
        assert {p.version for p in logged} == {"v1"}
    dated = {key.split("/")[3] for key in store.list("predictions/loan-default/v1/")}
    assert dated == {s.day.isoformat() for s in served}
    # and the labels are stamped at the end of day 7
    (feedback_file,) = store.list("feedback/loan-default/v1/")
    assert feedback_file.split("/")[3] == _day(project, 7).isoformat()
    times = set(pq.read_table(io.BytesIO(store.read(feedback_file))).column("_time").to_pylist())
    assert times == {_midnight(_day(project, 8)).timestamp() - 1}
    # and monitoring, up to the end of day 7, sees one window per day with those rows
    until = _midnight(_day(project, 8))
    result = monitor(
        project.model_copy(
            update={"monitoring": project.monitoring.model_copy(update={"windows": 4})}
        ),
        stores.registry,
        stores.source,
        until=until,
        now=until,
        record=False,
    )
    reports = {r.start.date(): r for r in result.reports}
    assert sorted(reports) == [s.day for s in served]
    for s in served:
        assert reports[s.day].health.rows == 100
        assert reports[s.day].health.requests == len(s.request_ids)
    # with day 5's labels joined to its requests, and none yet for days 6 and 7
    assert [reports[s.day].performance.labelled for s in served] == [100, 0, 0]
    labels = read_labels(store, "loan-default", {"v1"}, until - timedelta(days=1), until, Skipped())
    assert set(labels) == set(served[0].request_ids)


def test_a_batch_already_there_is_served_as_it_is(project: Settings, serve: Serve) -> None:
    # given day 4's batch, written before (the newest the model was trained on)
    before = sorted(p.name for p in Path(project.data.source).iterdir())
    # when day 4 is served
    served = serve(_day(project, 4), version="v1", rows=30)
    # then it is read, not written again, and its 30 rows are answered in two requests
    assert not served.batch_written
    assert sorted(p.name for p in Path(project.data.source).iterdir()) == before
    assert served.rows == 30 and len(served.request_ids) == 2


def test_rows_the_contract_refuses_are_400s_and_are_neither_logged_nor_labelled(
    project: Settings,
    serve: Serve,
) -> None:
    # given a client that sends a channel v1's contract does not know for customers over 65
    def mobile_seniors(part: pd.DataFrame) -> pd.DataFrame:
        return part.assign(channel=part["channel"].where(part["age"] <= 65, "mobile"))

    # when day 5 is served so, and its labels come back on day 7
    day5 = serve(_day(project, 5), version="v1", rows=200, alter=mobile_seniors)
    day7 = serve(_day(project, 7), version="v1", rows=200)
    # then the requests holding such a row were refused, naming the feature, and the others answered
    assert day5.rejected and day5.request_ids
    assert all("unknown category 'mobile'" in m for m in day5.rejected.values())
    assert day5.rows + ROWS_PER_REQUEST * len(day5.rejected) == 200
    # and only the answered requests were logged and labelled
    store = LocalStore(project.storage.uri)
    assert _logged_ids(store, day5.day) == list(day5.request_ids)
    assert day7.labels_for == day5.day and day7.labels == day5.rows


def test_bad_arguments_are_one_clear_error(project: Settings, serve: Serve) -> None:
    with pytest.raises(SimulationError, match="rows must be at least 1"):
        serve(_day(project, 5), version="v1", rows=0)
    with pytest.raises(SimulationError, match="label_delay_days must be 0 or more"):
        serve(_day(project, 5), version="v1", label_delay_days=-1)
    with pytest.raises(VersionNotFound):
        serve(_day(project, 5), version="v9")


def test_a_version_that_cannot_be_served_writes_nothing(
    project: Settings, stores: Stores, serve: Serve
) -> None:
    # given v2, registered with a model file that does not load
    registry = stores.registry
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    registry.register({**files, MODEL_FILE: b"not a model"}, run_id="r2", fingerprint="broken")
    # when a day is served by it
    with pytest.raises(ModelUnavailable, match="cannot serve loan-default v2"):
        serve(_day(project, 5), version="v2")
    # then neither the day's batch nor any log was written
    assert not (Path(project.data.source) / f"{_day(project, 5)}.parquet").exists()
    assert not LocalStore(project.storage.uri).list("predictions/")


# --- over HTTP: a loopback server answering as seldon-core's REST wrapper does ---------

Answer = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]


@pytest.fixture
def http() -> Iterator[Callable[[Answer], str]]:
    """Start a loopback server answering each POST with `answer(path, body)`; its URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code, reply = answer(self.path, body)
                raw = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _seldon(model: FlywheelModel) -> Answer:
    """The model class behind Seldon's two REST routes, a refusal a 400 with its status."""

    def answer(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            if path == "/api/v1.0/predictions":
                return 200, model.score(body)
            model.judge_feedback(body["request"], body["response"], body["truth"])
            return 200, {"meta": {}}
        except BadRequest as error:
            return 400, {"status": {"code": 400, "info": str(error), "status": "FAILURE"}}

    return answer


def test_over_http_a_replaying_server_logs_each_day_at_its_simulated_time(
    project: Settings, serve: Serve, http: Callable[[Answer], str]
) -> None:
    # given v1 served over HTTP with stamp_from_request, as `simulate --servers` starts it
    model = FlywheelModel(
        model_version="v1", store_uri=project.storage.uri, stamp_from_request="true"
    )
    model.load()
    url = http(_seldon(model))

    def mobile_seniors(part: pd.DataFrame) -> pd.DataFrame:
        return part.assign(channel=part["channel"].where(part["age"] <= 65, "mobile"))

    # when day 5 is served through it (some requests holding a row the contract refuses),
    # and day 7, when day 5's labels come back
    day5 = serve(_day(project, 5), version="v1", rows=200, alter=mobile_seniors, gateway=url)
    day7 = serve(_day(project, 7), version="v1", rows=200, gateway=url)
    # then the server's 400s are refused requests, with its message
    assert day5.rejected and all("unknown category 'mobile'" in m for m in day5.rejected.values())
    assert day5.rows + ROWS_PER_REQUEST * len(day5.rejected) == 200
    # and the answered ones are logged at once, stamped inside day 5, in day 5's folder
    store = LocalStore(project.storage.uri)
    assert _logged_ids(store, day5.day) == list(day5.request_ids)
    dated = {key.split("/")[3] for key in store.list("predictions/loan-default/v1/")}
    assert dated == {day5.day.isoformat(), day7.day.isoformat()}
    # and day 5's labels came back on day 7, stamped at its end
    assert day7.labels_for == day5.day and day7.labels == day5.rows
    end = _midnight(_day(project, 8))
    labels = read_labels(store, "loan-default", {"v1"}, end - timedelta(days=1), end, Skipped())
    assert set(labels) == set(day5.request_ids)
    times = {
        at
        for key in store.list("feedback/loan-default/v1/")
        for at in pq.read_table(io.BytesIO(store.read(key))).column("_time").to_pylist()
    }
    assert times == {end.timestamp() - 1}


def test_over_http_a_message_carries_what_the_in_process_model_gets(
    project: Settings, http: Callable[[Answer], str]
) -> None:
    # given a server that records what it is sent
    received: list[tuple[str, dict[str, Any]]] = []

    def record(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        received.append((path, body))
        return 200, {"data": {"ndarray": [[0.9, 0.1]]}}

    transport = OverHttp(http(record))
    part = pd.DataFrame({"age": [30], "channel": ["web"]})
    sent = request(project, "r-1", part, 1_767_225_600.0)
    # when a request and a feedback are sent
    answered = transport.score(sent)
    transport.feedback(sent, answered, truth([1], 1_767_311_999.0))
    # then each is Seldon's REST message, the request exactly as built, tagged with its time
    assert received[0] == ("/api/v1.0/predictions", sent)
    assert sent["meta"] == {"puid": "r-1", "tags": {"sent_at": 1_767_225_600.0}}
    assert received[1] == (
        "/api/v1.0/feedback",
        {
            "request": sent,
            "response": answered,
            "truth": {"data": {"ndarray": [1]}, "meta": {"tags": {"sent_at": 1_767_311_999.0}}},
        },
    )


def test_over_http_a_server_failure_or_no_server_stops_the_day_in_one_line(
    project: Settings, http: Callable[[Answer], str]
) -> None:
    # given a server answering 500, and a port nobody listens on
    def broken(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 500, {"status": {"code": 500, "info": "model crashed", "status": "FAILURE"}}

    failing = OverHttp(http(broken))
    sent = request(project, "r-1", pd.DataFrame({"age": [30]}), 1_767_225_600.0)
    # when a request is sent, then it is a SimulationError naming what answered, not a refusal
    with pytest.raises(SimulationError, match=r"predictions answered 500: model crashed"):
        failing.score(sent)
    with pytest.raises(SimulationError, match=r"did not answer"):
        OverHttp("http://127.0.0.1:9", timeout=2).score(sent)


def test_over_http_an_answer_from_another_version_stops_the_day(
    project: Settings, stores: Stores, serve: Serve, http: Callable[[Answer], str]
) -> None:
    # given v2 registered, but the server still serving v1
    registry = stores.registry
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    registry.register(files, run_id="r2", fingerprint="copy")
    model = FlywheelModel(
        model_version="v1", store_uri=project.storage.uri, stamp_from_request="true"
    )
    model.load()
    url = http(_seldon(model))
    # when day 5 is served as v2 through it, then the day stops, naming who answered
    with pytest.raises(SimulationError, match=r"answered by 'v1', not v2"):
        serve(_day(project, 5), version="v2", rows=30, gateway=url)

    # and a serving class to inject in-process is refused with a server
    class Faulty(FlywheelModel):
        pass

    with pytest.raises(SimulationError, match="model_class replaces the in-process"):
        serve(_day(project, 5), version="v1", gateway=url, model_class=Faulty)
