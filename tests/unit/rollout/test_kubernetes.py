"""The Kubernetes driver without a cluster: its helpers, and the servers it talks to refusing.

Prometheus and the API server are HTTP servers outside Flywheel; here they are
small stand-ins on loopback that answer as the real ones do. The driver against
a real kube-apiserver is tests/integration/test_kube_driver.py.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from flywheel.config import Settings
from flywheel.rollout.analysis import Window
from flywheel.rollout.controller import RolloutError
from flywheel.rollout.kubernetes import KubernetesDriver, _histogram, _reason
from flywheel.rollout.seldon import render

Handler = Callable[[str, str, bytes], tuple[int, Any]]


def _rows(le_and_values: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"metric": {"le": le}, "value": [1700000000.0, str(v)]} for le, v in le_and_values]


def test_cumulative_buckets_in_seconds_become_counts_in_milliseconds() -> None:
    # given Prometheus' cumulative `le` buckets, in any order
    rows = _rows([("+Inf", 100), ("0.005", 50), ("0.01", 90)])
    # then each bucket holds its own count, bounded in milliseconds
    assert _histogram(rows) == ((5.0, 10.0, math.inf), (50, 40, 10))


def test_an_empty_histogram_is_one_empty_bucket_and_resets_never_count_negative() -> None:
    assert _histogram([]) == ((math.inf,), (0,))
    # increase() over a counter reset can make a higher bucket read lower
    assert _histogram(_rows([("0.005", 10.4), ("0.01", 9.6), ("+Inf", 12)])) == (
        (5.0, 10.0, math.inf),
        (10, 0, 2),
    )


def test_the_reason_is_the_api_servers_message_or_the_http_reason() -> None:
    with_status = ApiException(status=422, reason="Unprocessable Entity")
    with_status.body = json.dumps({"kind": "Status", "message": "spec.predictors: Required value"})
    assert _reason(with_status) == "spec.predictors: Required value"
    assert _reason(ApiException(status=500, reason="Internal Server Error")) == (
        "Internal Server Error"
    )
    not_json = ApiException(status=502, reason="Bad Gateway")
    not_json.body = "<html>proxy error</html>"
    assert _reason(not_json) == "Bad Gateway"


def _driver(api_host: str, prometheus: str = "http://127.0.0.1:1") -> KubernetesDriver:
    api = client.ApiClient(client.Configuration(host=api_host))
    return KubernetesDriver(Settings(), api_client=api, prometheus_url=prometheus + "/")


def test_an_unreachable_api_server_is_named() -> None:
    driver = _driver("http://127.0.0.1:1")
    message = r"cannot reach the API server at http://127.0.0.1:1: MaxRetryError"
    with pytest.raises(RolloutError, match=message):
        driver.get()
    with pytest.raises(RolloutError, match=message):
        driver.apply("v1", "v2", 10)
    with pytest.raises(RolloutError, match=message):
        driver.weights()


def test_an_unreachable_prometheus_is_named() -> None:
    with pytest.raises(RolloutError, match=r"cannot query Prometheus at http://127.0.0.1:1: "):
        _driver("http://127.0.0.1:1").measure(0)


@pytest.fixture
def server() -> Iterator[Callable[[Handler], str]]:
    """An HTTP server on loopback answering with `handler(method, path, body)`."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: Handler) -> str:
        class Answer(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, body = handler(self.command, self.path, self.rfile.read(length))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_PATCH(self) -> None:
                self._answer()

            def log_message(self, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _status(code: int, reason: str, message: str) -> tuple[int, Any]:
    return code, {"kind": "Status", "status": "Failure", "reason": reason, "message": message}


def test_a_missing_deployment_is_created_and_a_refusal_names_the_reason(
    server: Callable[[Handler], str],
) -> None:
    # given an API server without the SeldonDeployment that refuses to create it
    calls: list[tuple[str, str]] = []

    def api(method: str, path: str, body: bytes) -> tuple[int, Any]:
        calls.append((method, path))
        if method == "GET":
            return _status(404, "NotFound", "not found")
        return _status(422, "Invalid", "spec.predictors[0].graph: Required value")

    driver = _driver(server(api))
    # then a missing object reads as None, and the refusal carries the server's message
    assert driver.get() is None and driver.weights() == {}
    with pytest.raises(
        RolloutError,
        match=r"refused SeldonDeployment flywheel/loan-default: spec\.predictors\[0\]\.graph",
    ):
        driver.apply("v1", None, 0)
    assert calls[-1] == (
        "POST",
        "/apis/machinelearning.seldon.io/v1/namespaces/flywheel/seldondeployments",
    )


def test_a_concurrent_change_is_refused_not_overwritten(server: Callable[[Handler], str]) -> None:
    # given a deployed object, and a patch the server rejects because it changed meanwhile
    patches: list[dict[str, Any]] = []
    current = render(Settings(), "v1")
    current["metadata"]["resourceVersion"] = "41"

    def api(method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "GET":
            return 200, current
        patches.append(json.loads(body))
        return _status(409, "Conflict", "the object has been modified")

    driver = _driver(server(api))
    assert driver.weights() == {"stable": ("v1", 100)}
    with pytest.raises(RolloutError, match="changed while being patched; try again"):
        driver.set_traffic("v1", "v2", 10)
    # the patch carried the version it was based on, and the whole predictor list
    (patch,) = patches
    assert patch["metadata"] == {"resourceVersion": "41"}
    assert [(p["name"], p["traffic"]) for p in patch["spec"]["predictors"]] == [
        ("stable", 90),
        ("canary", 10),
    ]


def test_a_read_the_api_server_forbids_is_named(server: Callable[[Handler], str]) -> None:
    driver = _driver(server(lambda *_: _status(403, "Forbidden", "no")))
    with pytest.raises(
        RolloutError, match="cannot read SeldonDeployment flywheel/loan-default: Forbidden"
    ):
        driver.get()


# What Prometheus holds for each query, by the metric the query asks about.
PROMETHEUS = {
    "errors": [{"metric": {"predictor_name": "canary"}, "value": [0, "3"]}],
    "requests": [
        {"metric": {"predictor_name": "stable"}, "value": [0, "1000"]},
        {"metric": {"predictor_name": "canary"}, "value": [0, "100.4"]},
    ],
    "buckets": [
        {"metric": {"predictor_name": "canary", "le": "0.005"}, "value": [0, "50"]},
        {"metric": {"predictor_name": "canary", "le": "0.01"}, "value": [0, "90"]},
        {"metric": {"predictor_name": "canary", "le": "+Inf"}, "value": [0, "100"]},
        {"metric": {"predictor_name": "stable", "le": "0.005"}, "value": [0, "1000"]},
        {"metric": {"predictor_name": "stable", "le": "+Inf"}, "value": [0, "1000"]},
    ],
    "scores": [
        {"metric": {"predictor_name": "canary", "bucket": "8"}, "value": [0, "60"]},
        {"metric": {"predictor_name": "canary", "bucket": "2"}, "value": [0, "40"]},
    ],
    "feedback": [
        {"metric": {"predictor_name": "canary", "correct": "true"}, "value": [0, "30"]},
        {"metric": {"predictor_name": "canary", "correct": "false"}, "value": [0, "10"]},
    ],
}


def _which(query: str) -> str:
    if 'code=~"5.."' in query:
        return "errors"
    if "_bucket{" in query:
        return "buckets"
    if "flywheel_scores_total" in query:
        return "scores"
    if "flywheel_feedback_total" in query:
        return "feedback"
    return "requests"


def test_measurements_are_read_from_prometheus_per_predictor(
    server: Callable[[Handler], str],
) -> None:
    # given Prometheus holding the executor's and the model's series for both predictors
    queries: list[str] = []

    def prometheus(method: str, path: str, body: bytes) -> tuple[int, Any]:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)["query"][0]
        queries.append(query)
        result = PROMETHEUS[_which(query)]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}

    driver = _driver("http://127.0.0.1:1", server(prometheus))
    # when the driver measures the step
    stable, canary = driver.measure(0)
    # then each predictor's window holds its own numbers
    assert canary == Window(
        requests=100,
        errors=3,
        latency_bounds_ms=(5.0, 10.0, math.inf),
        latency_counts=(50, 40, 10),
        scores=(0, 0, 40, 0, 0, 0, 0, 0, 60, 0),
        labelled=40,
        correct=30,
    )
    assert stable == Window(
        requests=1000, latency_bounds_ms=(5.0, math.inf), latency_counts=(1000, 0)
    )
    # and every query was scoped to this deployment
    assert len(queries) == 5
    assert all('namespace="flywheel",deployment_name="loan-default"' in q for q in queries)


def test_a_query_prometheus_refuses_is_named(server: Callable[[Handler], str]) -> None:
    # Prometheus answers a query it cannot run with HTTP 400 or 422 and says why in the
    # body: the driver names that reason, not just the HTTP status
    url = server(lambda *_: (400, {"status": "error", "error": "parse error at char 7"}))
    message = r"Prometheus refused 'sum by .*': parse error at char 7"
    with pytest.raises(RolloutError, match=message):
        _driver("http://127.0.0.1:1", url).measure(0)
    # and a 200 whose status is not success is named with the query and the error
    refusing = server(lambda *_: (200, {"status": "error", "error": "too many samples"}))
    with pytest.raises(RolloutError, match=r"Prometheus refused 'sum by .*': too many samples"):
        _driver("http://127.0.0.1:1", refusing).measure(0)
