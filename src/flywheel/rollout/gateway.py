"""The local driver's traffic-splitting gateway: one endpoint in front of stable and canary.

It proxies the Seldon REST protocol to two seldon-core microservices in the
proportion set through its admin API, and measures each side as the
SeldonDeployment's executor and Prometheus would: requests, server errors,
latency histogram and the distribution of answers, bucketed as the model buckets them
(`serving.metrics.answer_buckets`): P(positive), each class's probability, or a
regression's predicted value on the bins the routes give (`prediction_edges`, the
stable version's label profile, so both sides are binned alike).

Feedback (Seldon's `/api/v1.0/feedback`: the request, the response, the truth and
a reward) goes to the model that answered, named by the response's
`model_version` tag, else to a side drawn by the traffic weights as Seldon's
ingress would; the model counts its right and wrong answers in its own FEEDBACK
counter (a regression its errors in ERRORS, ABS_ERROR and SQUARED_ERROR), and the
labels in the windows are those counters' increase over the window, read from each
model's metrics endpoint as Prometheus reads it.

It also exports every call it serves to Prometheus at `/metrics` (and at
`/prometheus`, the executor's path) as Seldon's executor does: one histogram,
`seldon_api_executor_server_requests_seconds`, with the executor's labels and
buckets, in which predictions, feedback and status calls are told apart only by the
`service` label. So the Kubernetes driver's queries read the local loop as they read
a cluster. (It serves REST alone: the executor's gRPC series, named by method and
gRPC code, come from `ExecutorRequests` in tests.)

    python -m flywheel.rollout.gateway --port 8080 --deployment loan-default
    GET  /metrics        the executor's request histogram, per predictor, service and code
    PUT  /admin/routes   {"stable": {"version": "v1", "url": "http://...", "metrics_url": "http://.../metrics"},
                          "canary": {...}, "canary_weight": 10, "prediction_edges": [...]}
    GET  /admin/windows  what each side did since the routes last changed
    POST /api/v1.0/predictions  a SeldonMessage
    POST /api/v1.0/feedback     {"request": ..., "response": ..., "truth": ..., "reward": ...}
    GET  /api/v1.0/health/status  the status of a model, drawn by the traffic weights
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from flywheel.rollout.analysis import LATENCY_BOUNDS_MS, Window
from flywheel.serving.metrics import (
    ABS_ERROR,
    ERRORS,
    FEEDBACK,
    REQUEST_BUCKETS,
    REQUESTS,
    SCORE_BUCKETS,
    SQUARED_ERROR,
    WHOLE,
    answer_buckets,
)

log = logging.getLogger(__name__)
PREDICT = "/api/v1.0/predictions"
FEEDBACK_PATH = "/api/v1.0/feedback"
STATUS_PATH = "/api/v1.0/health/status"


@dataclass(frozen=True)
class Labels:
    """A model's counters of the labels it was sent: a classifier's right and wrong
    answers, a regression's rows by absolute-error bucket and the sums of its errors."""

    right: float = 0.0
    wrong: float = 0.0
    errors: dict[int, float] = field(default_factory=dict)
    abs_error: float = 0.0
    squared_error: float = 0.0

    def since(self, start: Labels) -> Labels:
        """What was added since `start`; a counter below its start value was reset (the
        model restarted), and counts from 0."""

        def added(now: float, then: float) -> float:
            return now - then if now >= then else now

        return Labels(
            right=added(self.right, start.right),
            wrong=added(self.wrong, start.wrong),
            errors={b: added(n, start.errors.get(b, 0.0)) for b, n in self.errors.items()},
            abs_error=added(self.abs_error, start.abs_error),
            squared_error=added(self.squared_error, start.squared_error),
        )


@dataclass
class Side:
    """One backend and what it did in the current window."""

    version: str
    url: str
    metrics_url: str | None = None
    # The predictor name its series carry (a SeldonDeployment's slot; the role by default).
    predictor: str = ""
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    feedback: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BOUNDS_MS))
    scores: list[int] = field(default_factory=lambda: [0] * SCORE_BUCKETS)
    class_scores: dict[str, list[int]] = field(default_factory=dict)
    # The model's label counters when the window began; None until read.
    labels_at_start: Labels | None = None

    def count(self, buckets: dict[tuple[str, int], int]) -> None:
        """Add one answer's buckets (`answer_buckets`) to the histograms."""
        for (name, bucket), n in buckets.items():
            histogram = (
                self.scores
                if name == WHOLE
                else self.class_scores.setdefault(name, [0] * SCORE_BUCKETS)
            )
            histogram.extend([0] * (bucket + 1 - len(histogram)))
            histogram[bucket] += n

    def window(self, labels_now: Labels | None) -> Window:
        labels = Labels()
        if labels_now is not None and self.labels_at_start is not None:
            labels = labels_now.since(self.labels_at_start)
        errors = [0] * (max(labels.errors, default=-1) + 1)
        for bucket, n in labels.errors.items():
            errors[bucket] = round(n)
        return Window(
            requests=self.requests,
            errors=self.errors,
            latency_counts=tuple(self.latency),
            scores=tuple(self.scores),
            class_scores={k: tuple(v) for k, v in self.class_scores.items()},
            labelled=round(labels.right + labels.wrong) + sum(errors),
            correct=round(labels.right),
            label_errors=tuple(errors),
            abs_error_sum=labels.abs_error,
            squared_error_sum=labels.squared_error,
        )


def feedback_counts(exposition: str) -> Labels:
    """A model's label counters (FEEDBACK, ERRORS, ABS_ERROR, SQUARED_ERROR) in Prometheus'
    text format, summed over their workers."""
    right = wrong = abs_error = squared_error = 0.0
    errors: dict[int, float] = {}
    for line in exposition.splitlines():
        name, _, rest = line.partition("{")
        if name not in (FEEDBACK, ERRORS, ABS_ERROR, SQUARED_ERROR):
            continue
        labels, _, raw = rest.rpartition(" ")
        value = float(raw)
        if name == FEEDBACK:
            if 'correct="true"' in labels:
                right += value
            elif 'correct="false"' in labels:
                wrong += value
        elif name == ERRORS:
            found = re.search(r'bucket="(\d+)"', labels)
            if found:
                errors[int(found[1])] = errors.get(int(found[1]), 0.0) + value
        elif name == ABS_ERROR:
            abs_error += value
        else:
            squared_error += value
    return Labels(right, wrong, errors, abs_error, squared_error)


@dataclass
class Served:
    """The calls of one series (predictor, service, method, code): the executor's buckets."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(REQUEST_BUCKETS) + 1))
    seconds: float = 0.0

    def lines(self, labels: str) -> list[str]:
        out, cumulative = [], 0
        for bound, n in zip((*REQUEST_BUCKETS, math.inf), self.counts, strict=True):
            cumulative += n
            le = "+Inf" if bound == math.inf else repr(bound)
            out.append(f'{REQUESTS}_bucket{{{labels},le="{le}"}} {cumulative}')
        out.append(f"{REQUESTS}_sum{{{labels}}} {self.seconds!r}")
        out.append(f"{REQUESTS}_count{{{labels}}} {cumulative}")
        return out


class ExecutorRequests:
    """Seldon's executor's request histogram: a series per predictor, `service` (over
    REST "predictions", "feedback", "status" or "metadata"; over gRPC the full method),
    `method` (the HTTP method in lower case; "unary" over gRPC) and `code` (the HTTP
    status; over gRPC the code's name), with the executor's labels and buckets.

    `predictor_version` is the predictor's `version` annotation, which Flywheel does
    not set: empty, as on a cluster.
    """

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self._series: dict[tuple[str, str, str, str], Served] = {}
        self._lock = threading.Lock()  # tests observe from one thread while another serves

    def observe(self, predictor: str, service: str, method: str, code: str, seconds: float) -> None:
        """One call, as the executor times it."""
        with self._lock:
            served = self._series.setdefault((predictor, service, method, code), Served())
            served.counts[bisect.bisect_left(REQUEST_BUCKETS, seconds)] += 1
            served.seconds += seconds

    def exposition(self) -> str:
        """Prometheus' text format, as the executor's /prometheus serves it."""
        lines = [f"# TYPE {REQUESTS} histogram"]
        with self._lock:
            for (predictor, service, method, code), served in sorted(self._series.items()):
                labels = (
                    f'code="{code}",deployment_name="{self.deployment}",method="{method}",'
                    f'predictor_name="{predictor}",predictor_version="",service="{service}"'
                )
                lines += served.lines(labels)
        return "\n".join(lines) + "\n"


class Gateway:
    """Routing table, measurements and the two aiohttp faces (proxy and admin)."""

    def __init__(self, deployment: str = "loan-default") -> None:
        self.deployment = deployment
        self.requests = ExecutorRequests(deployment)
        self.sides: dict[str, Side] = {}
        self.canary_weight = 0
        self.since = time.time()
        self.session: ClientSession | None = None
        # A regression's prediction bins (the stable version's label profile); None: not
        # a regression, or not given, and predicted values are not counted.
        self.edges: list[float] | None = None

    def route(self) -> str | None:
        if (
            "canary" in self.sides
            and self.canary_weight > 0
            and random.random() * 100 < self.canary_weight
        ):
            return "canary"
        return "stable" if "stable" in self.sides else None

    async def predict(self, request: web.Request) -> web.StreamResponse:
        role = self.route()
        if role is None:
            return _status(503, "no model is being served")
        side = self.sides[role]
        body = await request.read()
        assert self.session is not None
        started = time.perf_counter()
        try:
            async with self.session.post(
                side.url + PREDICT, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                payload = await response.read()
                status = response.status
        except Exception as error:  # a backend that is down is a server error of that side
            payload = json.dumps(
                {
                    "status": {
                        "code": 502,
                        "info": f"{role} {side.version} unreachable: {error}",
                        "status": "FAILURE",
                    }
                }
            ).encode()
            status = 502
        elapsed_ms = (time.perf_counter() - started) * 1000
        side.requests += 1
        side.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, elapsed_ms)] += 1
        self.requests.observe(side.predictor, "predictions", "post", str(status), elapsed_ms / 1000)
        if status >= 500:
            side.errors += 1
        elif status >= 400:
            side.client_errors += 1
        else:
            self._observe(role, side, payload)
        return web.Response(
            body=payload,
            status=status,
            content_type="application/json",
            headers={"X-Flywheel-Version": side.version, "X-Flywheel-Role": role},
        )

    def _observe(self, role: str, side: Side, payload: bytes) -> None:
        try:
            data = json.loads(payload)["data"]
            side.count(answer_buckets(data["ndarray"], data.get("names") or [], self.edges))
        except (ValueError, KeyError, TypeError, IndexError):
            return

    async def feedback(self, request: web.Request) -> web.Response:
        """Forward Seldon feedback to the model that answered, as Seldon's executor does."""
        body = await request.read()
        try:
            message = json.loads(body)
            if not isinstance(message, dict) or not isinstance(message.get("truth"), dict):
                raise ValueError
        except ValueError:
            return _status(
                400,
                'feedback is a Seldon Feedback message: {"request": ..., "response": ..., '
                '"truth": {"data": {"ndarray": [...]}}, "reward": ...}',
            )
        role = self._answered(message.get("response")) or self.route()
        if role is None:
            return _status(503, "no model is being served")
        answer = await self._forward(role, "feedback", "post", FEEDBACK_PATH, body)
        if answer.status < 400:
            self.sides[role].feedback += 1
        return answer

    async def status(self, request: web.Request) -> web.Response:
        """A model's status (its /health/status), drawn by the traffic weights."""
        role = self.route()
        if role is None:
            return _status(503, "no model is being served")
        return await self._forward(role, "status", "get", "/health/status")

    async def _forward(
        self, role: str, service: str, method: str, path: str, body: bytes | None = None
    ) -> web.Response:
        """`role`'s model's answer to a call, timed in the executor's histogram as `service`
        (the executor times every call it serves there, not only predictions)."""
        side = self.sides[role]
        assert self.session is not None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        started = time.perf_counter()
        try:
            async with self.session.request(
                method.upper(), side.url + path, data=body, headers=headers
            ) as response:
                payload, status = await response.read(), response.status
        except Exception as error:  # a model that is down is a server error of its side
            self.requests.observe(
                side.predictor, service, method, "502", time.perf_counter() - started
            )
            return _status(502, f"{role} {side.version} unreachable: {error}")
        self.requests.observe(
            side.predictor, service, method, str(status), time.perf_counter() - started
        )
        return web.Response(
            body=payload,
            status=status,
            content_type="application/json",
            headers={"X-Flywheel-Version": side.version, "X-Flywheel-Role": role},
        )

    def _answered(self, response: Any) -> str | None:
        """The side serving the version that the response's tags name, if any."""
        try:
            version = response["meta"]["tags"]["model_version"]
        except (KeyError, TypeError):
            return None
        return next((role for role, s in self.sides.items() if s.version == version), None)

    async def _labels(self, side: Side) -> Labels | None:
        """The model's label counters now, or None if they cannot be read."""
        if side.metrics_url is None or self.session is None:
            return None
        try:
            async with self.session.get(side.metrics_url) as response:
                if response.status != 200:
                    return None
                return feedback_counts(await response.text())
        except Exception:  # a model that is down has no labels to give
            return None

    async def set_routes(self, request: web.Request) -> web.Response:
        """New routes start a new measurement window (a new step)."""
        body = await request.json()
        weight = int(body.get("canary_weight", 0))
        if not 0 <= weight <= 100:
            return web.json_response({"error": "canary_weight must be within 0..100"}, status=400)
        self.sides = {
            role: Side(
                version=body[role]["version"],
                url=body[role]["url"].rstrip("/"),
                metrics_url=body[role].get("metrics_url"),
                predictor=body[role].get("predictor") or role,
            )
            for role in ("stable", "canary")
            if body.get(role)
        }
        self.canary_weight = weight
        edges = body.get("prediction_edges")
        self.edges = [float(e) for e in edges] if isinstance(edges, list) else None
        self.since = time.time()
        for side in self.sides.values():
            side.labels_at_start = await self._labels(side)
        return await self.windows(request)

    async def windows(self, request: web.Request) -> web.Response:
        sides = {}
        for role, side in list(self.sides.items()):
            labels = await self._labels(side)
            if side.labels_at_start is None:  # unreadable when the window began: from now
                side.labels_at_start = labels
            sides[role] = {
                "version": side.version,
                **side.window(labels).model_dump(mode="json"),
                "client_errors": side.client_errors,
                "feedback": side.feedback,
            }
        return web.json_response(
            {"since": self.since, "canary_weight": self.canary_weight, **sides}
        )

    async def metrics(self, request: web.Request) -> web.Response:
        """The executor's request histogram in Prometheus' text format."""
        return web.Response(text=self.requests.exposition(), content_type="text/plain")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "routes": {r: s.version for r, s in self.sides.items()},
                "canary_weight": self.canary_weight,
            }
        )

    def app(self) -> web.Application:
        application = web.Application(client_max_size=8 * 1024 * 1024)
        application.router.add_post(PREDICT, self.predict)
        application.router.add_post(FEEDBACK_PATH, self.feedback)
        application.router.add_get(STATUS_PATH, self.status)
        application.router.add_put("/admin/routes", self.set_routes)
        application.router.add_get("/admin/windows", self.windows)
        application.router.add_get("/health", self.health)
        application.router.add_get("/metrics", self.metrics)
        application.router.add_get("/prometheus", self.metrics)
        application.on_startup.append(self._open)
        application.on_cleanup.append(self._close)
        return application

    async def _open(self, _: web.Application) -> None:
        # gunicorn's sync workers (seldon-core's REST server) close every connection
        # after one response; reusing pooled connections races those closes and
        # hangs or fails requests, so each request gets a fresh loopback connection.
        self.session = ClientSession(
            connector=TCPConnector(limit=256, force_close=True), timeout=ClientTimeout(total=30)
        )

    async def _close(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()


def _status(code: int, info: str) -> web.Response:
    """A Seldon status answer."""
    return web.json_response(
        {"status": {"code": code, "info": info, "status": "FAILURE"}}, status=code
    )


def main(argv: list[str] | None = None) -> None:
    """Run the gateway on loopback (or `--host`)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--deployment", default="loan-default", help="the deployment_name label of /metrics"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gateway %(levelname)s %(message)s")
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except (
        ImportError
    ):  # pragma: no cover - uvloop is in the lock file; this keeps the gateway portable
        pass
    web.run_app(
        Gateway(args.deployment).app(), host=args.host, port=args.port, access_log=None, print=None
    )


if __name__ == "__main__":
    main()
