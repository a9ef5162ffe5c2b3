"""Synthetic traffic: real rows at a fixed rate from a child process, and their true labels later.

The endpoint is a small HTTP server in this process that answers as the gateway does.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import pandas as pd
import pytest

from flywheel.config import FeatureSettings, GeneratorSettings
from flywheel.rollout.traffic import SyntheticTraffic
from flywheel.synthetic import generate_day

FEATURES = FeatureSettings()


@dataclass
class Seen:
    """What the endpoint received."""

    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/api/v1.0/predictions":
                request_id = uuid.uuid4().hex
                with seen.lock:
                    seen.requests[request_id] = body
                answer = {
                    "data": {"ndarray": [[0.3, 0.7]]},
                    "meta": {"tags": {"request_id": request_id}},
                }
            else:
                with seen.lock:
                    seen.feedback.append(body)
                answer = {"status": {"code": 200}}
            payload = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Flywheel-Role", "stable")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_day(date(2026, 1, 3), GeneratorSettings(rows_per_day=50))


def _wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_rows_go_out_at_the_rate_and_labels_come_back(
    endpoint: tuple[str, Seen], frame: pd.DataFrame
) -> None:
    # given a load of 40 requests a second, every answer to be labelled shortly after
    url, seen = endpoint
    traffic = SyntheticTraffic(
        url, frame, FEATURES, rps=40, label_fraction=1.0, label_delay=0.05
    ).start()
    # when it runs for a second after its first request
    _wait_for(lambda: seen.requests)
    time.sleep(1.0)
    stats = traffic.stop()
    # then about 40 went out, each answered and each labelled
    assert 20 <= stats["sent"] <= 60, stats
    assert stats["stable 2xx"] == stats["sent"] == len(seen.requests)
    assert stats["labels"] == len(seen.feedback) == stats["sent"]
    # and each request is one real row, as jsonData, and its feedback is a Seldon Feedback
    # message: that request, the answer it got, the row's label, and a reward for being right
    labels = {json.dumps(r, sort_keys=True): int(y) for r, y in _rows_and_labels(frame)}
    for item in seen.feedback:
        request_id = item["response"]["meta"]["tags"]["request_id"]
        assert item["request"] == seen.requests[request_id]
        (row,) = item["request"]["jsonData"]
        assert set(row) == set(FEATURES.columns)
        label = labels[json.dumps(row, sort_keys=True)]
        assert item["truth"] == {"data": {"ndarray": [label]}}
        assert item["reward"] == float(label == 1)  # the endpoint answers 0.7 for "defaulted"


def _rows_and_labels(frame: pd.DataFrame) -> list[tuple[dict[str, Any], int]]:
    rows = json.loads(frame[list(FEATURES.columns)].to_json(orient="records"))
    return list(zip(rows, frame[FEATURES.label], strict=True))


def test_no_labels_are_sent_when_none_are_asked_for(
    endpoint: tuple[str, Seen], frame: pd.DataFrame
) -> None:
    url, seen = endpoint
    traffic = SyntheticTraffic(url, frame, FEATURES, rps=50, label_fraction=0.0).start()
    _wait_for(lambda: len(seen.requests) >= 10)
    stats = traffic.stop()
    assert stats["sent"] >= 10 and stats["labels"] == 0 and seen.feedback == []


@pytest.fixture
def dropping() -> Iterator[tuple[str, list[int]]]:
    """An endpoint that accepts each connection and closes it at once, counting them."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed at teardown
                return
            accepted.append(1)
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()


def test_an_endpoint_that_fails_is_counted_not_raised(
    dropping: tuple[str, list[int]], frame: pd.DataFrame
) -> None:
    # given an endpoint that drops every connection
    url, accepted = dropping
    traffic = SyntheticTraffic(url, frame, FEATURES, rps=50).start()
    # when requests have been failing for a while
    _wait_for(lambda: len(accepted) >= 10)
    stats = traffic.stop()
    # then each failure is counted by its kind, and the load carried on
    assert stats["sent"] >= 10 and stats["failed"] == stats["sent"]
    kinds = {k.removeprefix("failed: "): n for k, n in stats.items() if k.startswith("failed: ")}
    assert sum(kinds.values()) == stats["failed"]
    # (a reset or a disconnect, depending on when the close lands)
    assert all(issubclass(getattr(aiohttp, kind), aiohttp.ClientError) for kind in kinds), kinds
    assert stats["labels"] == 0
    # and stopping again changes nothing
    assert traffic.stop() == stats


def test_stopping_a_load_that_never_started_is_empty(frame: pd.DataFrame) -> None:
    assert SyntheticTraffic("http://127.0.0.1:1", frame, FEATURES).stop() == {}
