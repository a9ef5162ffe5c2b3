"""The local driver's traffic-splitting gateway: one endpoint in front of stable and canary.

It proxies the Seldon REST protocol to two seldon-core microservices in the
proportion set through its admin API, and measures each side as the
SeldonDeployment's executor and Prometheus would: requests, server errors,
latency histogram, the distribution of predicted scores and, from feedback
with the true label, accuracy.

It also exports those requests to Prometheus at `/metrics` as Seldon's executor
does (`seldon_api_executor_server_requests_seconds`, with its labels), so the
Kubernetes driver's queries read the local loop as they read a cluster.

    python -m flywheel.rollout.gateway --port 8080 --deployment loan-default
    GET  /metrics        the executor's request histogram, per predictor and code
    PUT  /admin/routes   {"stable": {"version": "v1", "url": "http://..."}, "canary": {...}, "canary_weight": 10}
    GET  /admin/windows  what each side did since the routes last changed
    POST /api/v1.0/predictions, /api/v1.0/feedback  {"request_id": "...", "truth": 1}
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from flywheel.rollout.analysis import LATENCY_BOUNDS_MS, Window
from flywheel.serving.metrics import REQUESTS, SCORE_BUCKETS, score_bucket

log = logging.getLogger(__name__)
PREDICT = "/api/v1.0/predictions"
_REMEMBERED = 100_000  # request ids kept for feedback


@dataclass
class Side:
    """One backend and what it did in the current window."""

    version: str
    url: str
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BOUNDS_MS))
    scores: list[int] = field(default_factory=lambda: [0] * SCORE_BUCKETS)
    labelled: int = 0
    correct: int = 0

    def window(self) -> Window:
        return Window(
            requests=self.requests,
            errors=self.errors,
            latency_counts=tuple(self.latency),
            scores=tuple(self.scores),
            labelled=self.labelled,
            correct=self.correct,
        )


@dataclass
class Served:
    """Every request one predictor answered with one status code, since the gateway started."""

    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BOUNDS_MS))
    seconds: float = 0.0

    def lines(self, labels: str) -> list[str]:
        out, cumulative = [], 0
        for bound, n in zip(LATENCY_BOUNDS_MS, self.latency, strict=True):
            cumulative += n
            le = "+Inf" if bound == float("inf") else repr(bound / 1000)
            out.append(f'{REQUESTS}_bucket{{{labels},le="{le}"}} {cumulative}')
        out.append(f"{REQUESTS}_sum{{{labels}}} {self.seconds!r}")
        out.append(f"{REQUESTS}_count{{{labels}}} {cumulative}")
        return out


class Gateway:
    """Routing table, measurements and the two aiohttp faces (proxy and admin)."""

    def __init__(self, deployment: str = "loan-default") -> None:
        self.deployment = deployment
        self.served: dict[tuple[str, int], Served] = {}
        self.sides: dict[str, Side] = {}
        self.canary_weight = 0
        self.since = time.time()
        self.session: ClientSession | None = None
        self.predictions: OrderedDict[str, tuple[str, int]] = OrderedDict()

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
            return web.json_response(
                {"status": {"code": 503, "info": "no model is being served", "status": "FAILURE"}},
                status=503,
            )
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
        bucket = bisect.bisect_left(LATENCY_BOUNDS_MS, elapsed_ms)
        side.requests += 1
        side.latency[bucket] += 1
        served = self.served.setdefault((role, status), Served())
        served.latency[bucket] += 1
        served.seconds += elapsed_ms / 1000
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
            answer = json.loads(payload)
            rows = answer["data"]["ndarray"]
            request_id = answer.get("meta", {}).get("tags", {}).get("request_id")
        except (ValueError, KeyError, TypeError):
            return
        for row in rows:
            side.scores[score_bucket(row[1])] += 1
        if request_id and len(rows) == 1:
            self.predictions[request_id] = (role, int(rows[0][1] >= 0.5))
            if len(self.predictions) > _REMEMBERED:
                self.predictions.popitem(last=False)

    async def feedback(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            request_id, truth = str(body["request_id"]), int(body["truth"])
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {
                    "status": {
                        "code": 400,
                        "info": 'feedback needs {"request_id": ..., "truth": 0 or 1}',
                    }
                },
                status=400,
            )
        known = self.predictions.pop(request_id, None)
        if known is None:
            return web.json_response(
                {"status": {"code": 404, "info": f"unknown or expired request id {request_id}"}},
                status=404,
            )
        role, predicted = known
        if role in self.sides:
            self.sides[role].labelled += 1
            self.sides[role].correct += int(predicted == truth)
        return web.json_response({"status": {"code": 200}})

    async def set_routes(self, request: web.Request) -> web.Response:
        """New routes start a new measurement window (a new step)."""
        body = await request.json()
        weight = int(body.get("canary_weight", 0))
        if not 0 <= weight <= 100:
            return web.json_response({"error": "canary_weight must be within 0..100"}, status=400)
        self.sides = {
            role: Side(version=body[role]["version"], url=body[role]["url"].rstrip("/"))
            for role in ("stable", "canary")
            if body.get(role)
        }
        self.canary_weight = weight
        self.since = time.time()
        self.predictions.clear()
        return await self.windows(request)

    async def windows(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "since": self.since,
                "canary_weight": self.canary_weight,
                **{
                    role: {
                        "version": s.version,
                        **s.window().model_dump(mode="json"),
                        "client_errors": s.client_errors,
                    }
                    for role, s in self.sides.items()
                },
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus' text format; the labels are those Seldon's executor sets (its
        predictor_version is the predictor's `version` label, which Flywheel sets
        to the predictor's name)."""
        lines = [f"# TYPE {REQUESTS} histogram"]
        for (role, code), served in sorted(self.served.items()):
            labels = (
                f'deployment_name="{self.deployment}",predictor_name="{role}",'
                f'predictor_version="{role}",service="predictions",method="post",code="{code}"'
            )
            lines += served.lines(labels)
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

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
        application.router.add_post("/api/v1.0/feedback", self.feedback)
        application.router.add_put("/admin/routes", self.set_routes)
        application.router.add_get("/admin/windows", self.windows)
        application.router.add_get("/health", self.health)
        application.router.add_get("/metrics", self.metrics)
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
