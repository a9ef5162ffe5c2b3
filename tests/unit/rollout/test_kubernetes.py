"""The Kubernetes driver without a cluster: its helpers, and the servers it talks to refusing.

Here the API server and Prometheus are small stand-ins on loopback that refuse
as the real ones do. The driver against a real kube-apiserver and a real
Prometheus is tests/integration/test_kube_driver.py.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from flywheel.config import Settings
from flywheel.rollout.driver import Inconclusive
from flywheel.rollout.kubernetes import (
    KubernetesDriver,
    _counted,
    _histogram,
    _reason,
    server_error,
)
from flywheel.rollout.state import RolloutError

Handler = Callable[[str, str, bytes], tuple[int, Any]]


def test_cumulative_buckets_in_seconds_become_counts_in_milliseconds() -> None:
    # given Prometheus' cumulative `le` buckets, in any order
    rows = {"+Inf": 100.0, "0.005": 50.0, "0.01": 90.0}
    # then each bucket holds its own count, bounded in milliseconds
    assert _histogram(rows) == ((5.0, 10.0, math.inf), (50, 40, 10))


def test_an_empty_histogram_is_one_empty_bucket_and_resets_never_count_negative() -> None:
    assert _histogram({}) == ((math.inf,), (0,))
    # a counter reset between scrapes of two buckets can make a higher bucket read lower
    assert _histogram({"0.005": 10.4, "0.01": 9.6, "+Inf": 12}) == (
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
        driver.set_traffic("v1", "v2", 10)
    with pytest.raises(RolloutError, match=message):
        driver.weights()


def test_an_unreachable_prometheus_makes_the_look_inconclusive() -> None:
    with pytest.raises(Inconclusive, match=r"cannot query Prometheus at http://127.0.0.1:1: "):
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


def test_the_whole_object_is_applied_server_side_and_a_refusal_names_the_reason(
    server: Callable[[Handler], str],
) -> None:
    # given an API server with no SeldonDeployment yet, that refuses the object
    calls: list[tuple[str, str, bytes]] = []

    def api(method: str, path: str, body: bytes) -> tuple[int, Any]:
        calls.append((method, path, body))
        if method == "GET":
            return _status(404, "NotFound", "seldondeployments.machinelearning.seldon.io not found")
        return _status(422, "Invalid", "spec.predictors[0].graph: Required value")

    driver = _driver(server(api))
    # when the driver sets a canary's traffic, then the refusal carries the server's message
    with pytest.raises(
        RolloutError,
        match=r"refused SeldonDeployment flywheel/loan-default: spec\.predictors\[0\]\.graph",
    ):
        driver.set_traffic("v1", "v2", 10)
    # and after reading what is deployed, it was one server-side apply of the whole object,
    # as the controller's field manager
    (read, (method, path, body)) = calls
    assert read[0] == "GET"
    assert (method, path) == (
        "PATCH",
        "/apis/machinelearning.seldon.io/v1/namespaces/flywheel/seldondeployments/loan-default"
        "?fieldManager=flywheel-rollout&force=true",
    )
    applied = json.loads(body)
    assert applied["kind"] == "SeldonDeployment" and "resourceVersion" not in applied["metadata"]
    assert [(p["name"], p["traffic"]) for p in applied["spec"]["predictors"]] == [
        ("a", 90),
        ("b", 10),
    ]


def test_a_read_the_api_server_forbids_is_named(server: Callable[[Handler], str]) -> None:
    driver = _driver(server(lambda *_: _status(403, "Forbidden", "no")))
    with pytest.raises(
        RolloutError, match="cannot read SeldonDeployment flywheel/loan-default: Forbidden"
    ):
        driver.get()


def test_a_counter_counts_from_its_last_sample_before_the_step_through_resets() -> None:
    # given a series' samples around a step that began at 100: 530 before it, then a restart
    samples = [[95, "500"], [99, "530"], [101, "560"], [103, "4"], [105, "10"]]
    # then 30 + 4 (a reset counts from 0) + 6; never what came before its last earlier sample
    assert _counted(samples, since=100) == 40
    # and the first scrape in the step counts already, a scrape at the start included
    assert _counted([[99, "530"], [101, "537"]], since=100) == 7
    assert _counted([[99, "530"], [100, "531"]], since=100) == 1
    # a series new in the step counts from 0, its first sample included
    assert _counted([[101, "7"]], since=100) == 7
    # and one with nothing since the step began has counted nothing
    assert _counted([[99, "7"]], since=100) == 0


@pytest.mark.parametrize(
    ("code", "failed"),
    [
        ("500", True),
        ("503", True),
        ("200", False),
        ("404", False),
        ("429", False),
        ("Internal", True),
        ("Unavailable", True),
        ("Unknown", True),
        ("DeadlineExceeded", True),
        ("Unimplemented", True),
        ("DataLoss", True),
        ("OK", False),
        ("InvalidArgument", False),
        ("NotFound", False),
        ("ResourceExhausted", False),
        ("Canceled", False),
        ("5xx", False),
    ],
)
def test_server_errors_are_rest_5xx_and_the_grpc_codes_served_as_5xx(
    code: str, failed: bool
) -> None:
    assert server_error(code) is failed


def test_a_query_prometheus_refuses_makes_the_look_inconclusive_naming_why(
    server: Callable[[Handler], str],
) -> None:
    # Prometheus answers a query it cannot run with HTTP 400 or 422 and says why in the
    # body: the driver names that reason, not just the HTTP status
    url = server(lambda *_: (400, {"status": "error", "error": "parse error at char 7"}))
    message = r"Prometheus refused 'seldon_api_executor_server_requests_seconds_count\{.*': parse error at char 7"
    with pytest.raises(Inconclusive, match=message):
        _driver("http://127.0.0.1:1", url).measure(0)
    # and a 200 whose status is not success is named with the query and the error
    refusing = server(lambda *_: (200, {"status": "error", "error": "too many samples"}))
    with pytest.raises(Inconclusive, match=r"Prometheus refused '.*\[\d+ms\]': too many samples"):
        _driver("http://127.0.0.1:1", refusing).measure(0)


def test_the_executors_prediction_series_alone_are_selected(
    server: Callable[[Handler], str],
) -> None:
    queries: list[str] = []

    def prometheus(method: str, path: str, body: bytes) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlsplit

        queries.append(parse_qs(urlsplit(path).query)["query"][0])
        return 200, {"status": "success", "data": {"resultType": "matrix", "result": []}}

    _driver("http://127.0.0.1:1", server(prometheus)).windows(0, ["stable", "canary"])
    executor = [q for q in queries if q.startswith("seldon_api_executor_server_requests")]
    assert len(executor) == 2 and all(
        'predictor_name=~"stable|canary",service=~"predictions|/seldon\\\\.protos\\\\.Seldon/Predict"}'
        in q
        for q in executor
    ), executor


def test_a_look_that_cannot_tell_where_traffic_goes_is_inconclusive(
    server: Callable[[Handler], str],
) -> None:
    # given a Prometheus with no series at all, two scrape intervals into the step
    empty = server(
        lambda *_: (200, {"status": "success", "data": {"resultType": "matrix", "result": []}})
    )
    driver = _driver("http://127.0.0.1:1", empty)
    driver.api.api_client.configuration.retries = 0
    since = time.time() - 2 * driver.settings.rollout.scrape_interval_seconds
    # when the API server that says which predictors take traffic cannot be reached,
    # then the look is inconclusive, naming it
    with pytest.raises(Inconclusive, match=r"cannot reach the API server at http://127\.0\.0\.1:1"):
        driver.measure(since)
    # and before two scrape intervals have passed, an empty Prometheus is no evidence yet
    stable, canary = driver.measure(time.time())
    assert (stable.requests, canary.requests) == (0, 0)


def test_a_prometheus_that_dies_mid_answer_makes_the_look_inconclusive() -> None:
    # given a Prometheus that promises a body and closes the connection half-way through it
    class CutShort(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"status": "succ')
            self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        # when the driver measures, then the look is inconclusive, naming the cut
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with pytest.raises(Inconclusive, match=r"cannot query Prometheus at .*: IncompleteRead"):
            _driver("http://127.0.0.1:1", url).measure(0)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_each_tasks_answers_and_labels_are_read_from_the_models_counters_in_one_query(
    server: Callable[[Handler], str],
) -> None:
    # given Prometheus holding a multiclass predictor's per-class scores and right answers,
    # and a regression predictor's prediction bins and error counters
    def series(name: str, predictor: str, value: float, **labels: str) -> dict[str, Any]:
        metric = {"__name__": name, "predictor_name": predictor, **labels}
        return {"metric": metric, "values": [[1.0, "0"], [2.0, str(value)]]}

    own = [
        series("flywheel_scores_total", "stable", 5, **{"class": "a", "bucket": "9"}),
        series("flywheel_scores_total", "stable", 5, **{"class": "b", "bucket": "0"}),
        series("flywheel_feedback_total", "stable", 4, correct="true"),
        series("flywheel_feedback_total", "stable", 1, correct="false"),
        series("flywheel_predictions_total", "canary", 3, bucket="12"),
        series("flywheel_feedback_errors_total", "canary", 2, bucket="14"),
        series("flywheel_feedback_errors_total", "canary", 1, bucket="15"),
        series("flywheel_feedback_abs_error_total", "canary", 75.5),
        series("flywheel_feedback_squared_error_total", "canary", 2200.25),
    ]
    queries: list[str] = []

    def prometheus(method: str, path: str, body: bytes) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(path).query)["query"][0]
        queries.append(query)
        result = own if query.startswith('{__name__=~"flywheel_scores_total|') else []
        return 200, {"status": "success", "data": {"resultType": "matrix", "result": result}}

    # when both predictors' windows are read
    windows = _driver("http://127.0.0.1:1", server(prometheus)).windows(0, ["stable", "canary"])
    # then the model's counters came in one query besides the executor's two
    assert len(queries) == 3
    stable, canary = windows["stable"], windows["canary"]
    assert stable.class_scores == {"a": (0,) * 9 + (5,), "b": (5,) + (0,) * 9}
    assert (stable.labelled, stable.correct, stable.scored) == (5, 4, 5)
    assert canary.scores == (0,) * 12 + (3,)
    assert canary.label_errors == (0,) * 14 + (2, 1)
    assert (canary.labelled, canary.correct) == (3, 0)
    assert (canary.abs_error_sum, canary.squared_error_sum) == (75.5, 2200.25)
    assert canary.mean_absolute_error == pytest.approx(75.5 / 3)
