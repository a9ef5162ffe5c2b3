"""The traffic-splitting gateway, run as a real process on loopback.

The backends are small HTTP servers in this process that answer the Seldon
protocol as a seldon-core microservice does, feedback included, and export their
FEEDBACK counter at /metrics; the gateway in front of real microservices is
covered by tests/integration/test_rollout_local.py.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flywheel.rollout.gateway import PREDICT
from flywheel.serving.metrics import FEEDBACK, REQUEST_BUCKETS, REQUESTS, score_bucket

SCORE = 0.8  # what every backend answers for P(defaulted)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Backend:
    """A fake seldon-core microservice for one version, and the feedback it received."""

    url: str
    version: str
    feedback: list[dict[str, Any]] = field(default_factory=list)
    right: int = 0
    wrong: int = 0

    def route(self) -> dict[str, str]:
        return {"version": self.version, "url": self.url, "metrics_url": f"{self.url}/metrics"}


def _serve(version: str) -> tuple[ThreadingHTTPServer, Backend]:
    """Answers like a seldon-core microservice: probabilities and tags; 400 on "bad";
    feedback judged against its answer (default) and counted in FEEDBACK."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    backend = Backend(f"http://127.0.0.1:{server.server_address[1]}", version)
    lock = threading.Lock()

    class Seldon(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            text = "".join(
                f'{FEEDBACK}{{correct="{c}",method="feedback",worker_id="1"}} {float(n)}\n'
                for c, n in (("true", backend.right), ("false", backend.wrong))
            )
            self._answer(200, text.encode(), "text/plain")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            tags = {"model_version": version, "request_id": uuid.uuid4().hex}
            if self.path == "/api/v1.0/feedback":
                truth = body["truth"]["data"]["ndarray"][0]
                with lock:
                    backend.feedback.append(body)
                    backend.right += int(truth == 1)
                    backend.wrong += int(truth != 1)
                status, answer = 200, {"meta": {"tags": tags}}
            elif body.get("bad"):
                status, answer = 400, {"status": {"code": 400, "info": "bad request"}}
            else:
                status = 200
                answer = {
                    "data": {"names": ["repaid", "defaulted"], "ndarray": [[1 - SCORE, SCORE]]},
                    "meta": {"tags": tags},
                }
            self._answer(status, json.dumps(answer).encode(), "application/json")

        def _answer(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Seldon
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, backend


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backend, Backend]]:
    servers = [_serve("v1"), _serve("v2")]
    yield servers[0][1], servers[1][1]
    for server, _ in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def backend(backends: tuple[Backend, Backend]) -> str:
    return backends[0].url


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flywheel.rollout.gateway", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _call("GET", f"{url}/health")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the gateway did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _call(method: str, url: str, body: Any = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def _routes(gateway: str, routes: dict[str, Any]) -> dict[str, Any]:
    status, windows, _ = _call("PUT", f"{gateway}/admin/routes", routes)
    assert status == 200, windows
    return windows


def _predict(gateway: str, body: Any = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    return _call("POST", gateway + PREDICT, body or {"jsonData": [{"income": 1.0}]})


def test_with_no_routes_nothing_is_served(gateway: str) -> None:
    _routes(gateway, {"canary_weight": 0})
    assert _call("GET", f"{gateway}/health")[1] == {"routes": {}, "canary_weight": 0}
    status, answer, _ = _predict(gateway)
    assert status == 503 and answer["status"]["info"] == "no model is being served"


def test_a_weight_outside_0_to_100_is_refused_and_the_routes_kept(
    gateway: str, backend: str
) -> None:
    _routes(gateway, {"stable": {"version": "v1", "url": backend}, "canary_weight": 0})
    status, answer, _ = _call(
        "PUT",
        f"{gateway}/admin/routes",
        {"stable": {"version": "v2", "url": backend}, "canary_weight": 101},
    )
    assert status == 400 and answer == {"error": "canary_weight must be within 0..100"}
    assert _call("GET", f"{gateway}/health")[1] == {"routes": {"stable": "v1"}, "canary_weight": 0}


def test_the_stable_side_is_measured(gateway: str, backend: str) -> None:
    # given all traffic on stable v1
    windows = _routes(
        gateway, {"stable": {"version": "v1", "url": backend + "/"}, "canary_weight": 0}
    )
    assert windows["stable"]["requests"] == 0 and "canary" not in windows
    # when five requests and one the backend refuses go through
    answers = [_predict(gateway) for _ in range(5)]
    refused, _, _ = _predict(gateway, {"bad": True})
    # then each is answered by v1, which says so in the headers
    assert {(s, h["X-Flywheel-Role"], h["X-Flywheel-Version"]) for s, _, h in answers} == {
        (200, "stable", "v1")
    }
    assert refused == 400
    # and the window counts requests, latency, scores, and client errors apart from errors
    stable = _call("GET", f"{gateway}/admin/windows")[1]["stable"]
    assert (stable["requests"], stable["errors"], stable["client_errors"]) == (6, 0, 1)
    assert sum(stable["latency_counts"]) == 6
    assert stable["scores"][score_bucket(SCORE)] == 5 and sum(stable["scores"]) == 5
    assert stable["latency_bounds_ms"][-1] == float("inf")


def test_an_unreachable_canary_is_a_server_error_of_the_canary(gateway: str, backend: str) -> None:
    # given every request sent to a canary whose server is down
    _routes(
        gateway,
        {
            "stable": {"version": "v1", "url": backend},
            "canary": {"version": "v2", "url": "http://127.0.0.1:1"},
            "canary_weight": 100,
        },
    )
    # when a request comes in
    status, answer, headers = _predict(gateway)
    # then it fails as a 502 naming the canary, counted against the canary only
    assert status == 502 and headers["X-Flywheel-Role"] == "canary"
    assert answer["status"]["info"].startswith("canary v2 unreachable")
    windows = _call("GET", f"{gateway}/admin/windows")[1]
    assert (windows["canary"]["requests"], windows["canary"]["errors"]) == (1, 1)
    assert windows["stable"]["requests"] == 0 and windows["canary_weight"] == 100


def _feedback(gateway: str, answer: dict[str, Any] | None, truth: int) -> tuple[int, Any, Any]:
    body = {"request": {"jsonData": [{"income": 1.0}]}, "truth": {"data": {"ndarray": [truth]}}}
    if answer is not None:
        body["response"] = answer
    return _call("POST", f"{gateway}/api/v1.0/feedback", body)


def test_feedback_goes_to_the_model_that_answered_and_accuracy_is_its_own_count(
    gateway: str, backends: tuple[Backend, Backend]
) -> None:
    v1, v2 = backends
    # given labels v1 received before this window, which must not count in it
    _routes(gateway, {"stable": v1.route(), "canary_weight": 0})
    _feedback(gateway, _predict(gateway)[1], 1)
    # and a window with half the traffic on each
    _routes(gateway, {"stable": v1.route(), "canary": v2.route(), "canary_weight": 50})
    answers = [_predict(gateway) for _ in range(40)]
    by_role = {
        r: [a for s, a, h in answers if h["X-Flywheel-Role"] == r] for r in ("stable", "canary")
    }
    assert by_role["stable"] and by_role["canary"]
    sent = {r: len(v.feedback) for r, v in (("stable", v1), ("canary", v2))}
    # when a label comes back for each answer: right for stable's first, wrong for canary's first
    status, reply, headers = _feedback(gateway, by_role["stable"][0], 1)
    assert status == 200 and reply["meta"]["tags"]["model_version"] == "v1"
    assert (headers["X-Flywheel-Role"], headers["X-Flywheel-Version"]) == ("stable", "v1")
    status, _, headers = _feedback(gateway, by_role["canary"][0], 0)
    assert status == 200 and headers["X-Flywheel-Version"] == "v2"
    # then each reached the model that answered, as it was sent
    assert len(v1.feedback) == sent["stable"] + 1 and len(v2.feedback) == sent["canary"] + 1
    assert v1.feedback[-1]["response"] == by_role["stable"][0]
    # and each side's labels in the window are its model's own counter, from the window's start
    windows = _call("GET", f"{gateway}/admin/windows")[1]
    assert (windows["stable"]["labelled"], windows["stable"]["correct"]) == (1, 1)
    assert (windows["canary"]["labelled"], windows["canary"]["correct"]) == (1, 0)
    assert (windows["stable"]["feedback"], windows["canary"]["feedback"]) == (1, 1)


def test_feedback_naming_no_served_version_goes_where_the_weights_send_it(
    gateway: str, backends: tuple[Backend, Backend]
) -> None:
    v1, v2 = backends
    _routes(gateway, {"stable": v1.route(), "canary": v2.route(), "canary_weight": 100})
    before = len(v2.feedback)
    status, _, headers = _feedback(gateway, None, 1)
    assert status == 200 and headers["X-Flywheel-Role"] == "canary"
    stale = {"meta": {"tags": {"model_version": "v0"}}}
    assert _feedback(gateway, stale, 1)[2]["X-Flywheel-Role"] == "canary"
    assert len(v2.feedback) == before + 2


@pytest.mark.parametrize(
    "body", [{"request_id": "abc", "truth": 1}, {"request": {"jsonData": []}}, [1, 2]]
)
def test_feedback_that_is_not_a_seldon_feedback_message_is_refused(
    gateway: str, backends: tuple[Backend, Backend], body: Any
) -> None:
    v1, _ = backends
    _routes(gateway, {"stable": v1.route(), "canary_weight": 0})
    before = len(v1.feedback)
    status, answer, _ = _call("POST", f"{gateway}/api/v1.0/feedback", body)
    assert status == 400 and "a Seldon Feedback message" in answer["status"]["info"]
    assert len(v1.feedback) == before


def test_new_routes_start_a_new_window(gateway: str, backend: str) -> None:
    first = _routes(gateway, {"stable": {"version": "v1", "url": backend}, "canary_weight": 0})
    _predict(gateway)
    time.sleep(0.01)
    second = _routes(
        gateway,
        {
            "stable": {"version": "v1", "url": backend},
            "canary": {"version": "v2", "url": backend},
            "canary_weight": 50,
        },
    )
    assert second["since"] > first["since"]
    assert second["stable"]["requests"] == 0 and second["canary"]["requests"] == 0


def test_traffic_is_split_by_the_canary_weight(gateway: str, backend: str) -> None:
    _routes(
        gateway,
        {
            "stable": {"version": "v1", "url": backend},
            "canary": {"version": "v2", "url": backend},
            "canary_weight": 50,
        },
    )
    roles = [_predict(gateway)[2]["X-Flywheel-Role"] for _ in range(200)]
    # 50% of 200: outside 60..140 has a chance below 1e-8
    assert 60 <= roles.count("canary") <= 140
    windows = _call("GET", f"{gateway}/admin/windows")[1]
    assert windows["canary"]["requests"] == roles.count("canary")
    assert windows["stable"]["requests"] == roles.count("stable")


def _executor_series(
    gateway: str,
) -> tuple[dict[tuple[str, ...], float], set[tuple[str, ...]], set[float]]:
    """From the executor's histogram the gateway exports at /prometheus: the calls per
    (predictor, service, method, code), and the buckets' label names and bounds."""
    with urllib.request.urlopen(f"{gateway}/prometheus", timeout=10) as response:
        text = response.read().decode()
    counts: dict[tuple[str, ...], float] = {}
    names: set[tuple[str, ...]] = set()
    bounds: set[float] = set()
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if name == f"{REQUESTS}_count":
            key = tuple(labels[k] for k in ("predictor_name", "service", "method", "code"))
            counts[key] = float(line.rsplit(" ", 1)[1])
        elif name == f"{REQUESTS}_bucket":
            names.add(tuple(sorted(labels)))
            bounds.add(float(labels["le"]))
    return counts, names, bounds


def test_the_executors_histogram_holds_feedback_and_status_calls_apart_from_predictions(
    gateway: str, backends: tuple[Backend, Backend]
) -> None:
    v1, _ = backends
    _routes(gateway, {"stable": v1.route(), "canary_weight": 0})
    before, _, _ = _executor_series(gateway)
    # when predictions (one refused), feedback and a status call go through the gateway
    for _ in range(3):
        assert _predict(gateway)[0] == 200
    assert _predict(gateway, {"bad": True})[0] == 400
    for _ in range(2):
        assert _feedback(gateway, None, 1)[0] == 200
    with urllib.request.urlopen(f"{gateway}/api/v1.0/health/status", timeout=10) as response:
        assert response.status == 200
    # then each is timed in the one histogram, told apart by service, method and code
    after, names, bounds = _executor_series(gateway)
    added = {k: n - before.get(k, 0.0) for k, n in after.items() if n != before.get(k, 0.0)}
    assert added == {
        ("stable", "predictions", "post", "200"): 3,
        ("stable", "predictions", "post", "400"): 1,
        ("stable", "feedback", "post", "200"): 2,
        ("stable", "status", "get", "200"): 1,
    }
    # with the executor's labels and buckets
    assert names == {
        (
            "code",
            "deployment_name",
            "le",
            "method",
            "predictor_name",
            "predictor_version",
            "service",
        )
    }
    assert sorted(bounds) == [*REQUEST_BUCKETS, float("inf")]
