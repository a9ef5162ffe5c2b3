"""The traffic-splitting gateway, run as a real process on loopback.

The backends are small HTTP servers in this process that answer the Seldon
protocol as a seldon-core microservice does; the gateway in front of real
microservices is covered by tests/integration/test_rollout_local.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flywheel.rollout.gateway import PREDICT
from flywheel.serving.metrics import score_bucket

SCORE = 0.8  # what every backend answers for P(defaulted)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Seldon(BaseHTTPRequestHandler):
    """Answers like a seldon-core microservice: probabilities and a request id; 400 on "bad"."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("bad"):
            status, answer = 400, {"status": {"code": 400, "info": "bad request"}}
        else:
            status = 200
            answer = {
                "data": {"names": ["repaid", "defaulted"], "ndarray": [[1 - SCORE, SCORE]]},
                "meta": {"tags": {"request_id": uuid.uuid4().hex}},
            }
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Seldon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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


def test_feedback_counts_accuracy_for_the_side_that_answered(gateway: str, backend: str) -> None:
    _routes(gateway, {"stable": {"version": "v1", "url": backend}, "canary_weight": 0})
    ids = [_predict(gateway)[1]["meta"]["tags"]["request_id"] for _ in range(3)]
    feedback = f"{gateway}/api/v1.0/feedback"
    # the backend predicts default (0.8 >= 0.5): right for truth 1, wrong for truth 0
    assert _call("POST", feedback, {"request_id": ids[0], "truth": 1})[0] == 200
    assert _call("POST", feedback, {"request_id": ids[1], "truth": 0})[0] == 200
    # a label counts once, and unknown or malformed feedback is refused
    status, answer, _ = _call("POST", feedback, {"request_id": ids[0], "truth": 1})
    assert status == 404 and f"unknown or expired request id {ids[0]}" in answer["status"]["info"]
    assert _call("POST", feedback, {"truth": 1})[0] == 400
    stable = _call("GET", f"{gateway}/admin/windows")[1]["stable"]
    assert (stable["labelled"], stable["correct"]) == (2, 1)


def test_new_routes_start_a_new_window(gateway: str, backend: str) -> None:
    first = _routes(gateway, {"stable": {"version": "v1", "url": backend}, "canary_weight": 0})
    request_id = _predict(gateway)[1]["meta"]["tags"]["request_id"]
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
    # predictions of the old window cannot be labelled in the new one
    status, _, _ = _call(
        "POST", f"{gateway}/api/v1.0/feedback", {"request_id": request_id, "truth": 1}
    )
    assert status == 404


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
