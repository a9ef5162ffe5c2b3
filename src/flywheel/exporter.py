"""The operator's metrics endpoint, served by the rollout controller at /metrics.

The controller is the one Flywheel process that always runs on a cluster, so it
serves, beside its own looks and decisions (`flywheel.rollout.metrics`), what the
short-lived steps of the trigger engine stored: the newest monitoring window of
each served version (`flywheel.monitoring.prometheus`) and the engine's decisions
with its policy's thresholds (`flywheel.triggers.metrics`). Prometheus scrapes it
through the chart's ServiceMonitor, with no Pushgateway.

What comes from the store is read when scraped, at most once per `max_age` seconds,
and only the newest records: the rollout's state, the production alias, one
monitoring record and the manifest of each served version, and the decision
records written since the last read. A store that fails keeps the last good
figures and counts the failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import ValidationError

from flywheel.config import Settings
from flywheel.exposition import CONTENT_TYPE, Metric, Sample, render
from flywheel.monitoring import prometheus
from flywheel.monitoring.records import WINDOW_SIZES, newest_record
from flywheel.monitoring.window import WindowReport
from flywheel.registry import PRODUCTION
from flywheel.rollout import metrics as rollout_metrics
from flywheel.rollout import seldon
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.metrics import RolloutMetrics, state_samples
from flywheel.rollout.state import RolloutState
from flywheel.storage import StoreError
from flywheel.triggers import metrics as trigger_metrics
from flywheel.triggers.ledger import Ledger
from flywheel.triggers.metrics import TriggerMetrics, threshold_samples

log = logging.getLogger(__name__)


METRICS: dict[str, Metric] = {
    "flywheel_registry_version_created_timestamp_seconds": Metric(
        "When a served version was registered (its model's age is time() less this)"
    ),
    "flywheel_registry_alias_moved_timestamp_seconds": Metric(
        "When an alias last moved to the version it points at (production's promotion)"
    ),
    "flywheel_monitor_window_seconds": Metric(
        "The length of a monitoring window (monitoring.window): a version's first record "
        "comes after its first window closes"
    ),
    "flywheel_exporter_store_reads_total": Metric(
        "Reads of the store for these metrics, by result", "counter"
    ),
    "flywheel_exporter_store_read_timestamp_seconds": Metric(
        "When the store was last read successfully for these metrics"
    ),
    **rollout_metrics.METRICS,
    **prometheus.METRICS,
    **trigger_metrics.METRICS,
}


@dataclass(frozen=True)
class _Stored:
    """What one read of the store found."""

    state: RolloutState | None
    production: str | None
    reports: tuple[WindowReport, ...]
    created: dict[str, float]
    # When production's alias moved to it.
    promoted_at: float | None


class Exporter:
    """The metrics of one model's rollout controller, monitoring and trigger engine."""

    def __init__(
        self,
        settings: Settings,
        controller: RolloutController,
        rollout: RolloutMetrics,
        *,
        max_age: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.controller = controller
        self.registry = controller.registry
        self.rollout = rollout
        ledger = Ledger(self.registry.store, settings.model_name)
        self.triggers = TriggerMetrics(ledger, settings.model_name)
        self.max_age = max_age
        self.clock = clock
        self._reading = threading.Lock()  # one scrape reads the store at a time
        self._lock = threading.Lock()  # guards the figures read
        self._stored: _Stored | None = None
        self._read_at: float | None = None
        self._good_at: float | None = None
        self._reads = {"ok": 0, "failed": 0}

    def text(self) -> str:
        """Prometheus' text format of everything, the store read if the last read is old.

        One scrape reads the store; a scrape meanwhile (a slow store) is answered at once
        with the last figures rather than waiting, or starting a read of its own.
        """
        with self._lock:
            due = self._read_at is None or self.clock() - self._read_at >= self.max_age
        if due and self._reading.acquire(blocking=False):
            try:
                self._read()
            finally:
                self._reading.release()
        with self._lock:
            return render([*self.rollout.samples(), *self._stored_samples()], METRICS)

    def _read(self) -> None:
        started = self.clock()
        try:
            stored = self._from_store()
            self.triggers.refresh()
        except (StoreError, ValidationError, ValueError) as error:
            with self._lock:
                self._read_at = started  # a failing store is not asked again at every scrape
                self._reads["failed"] += 1
            log.warning("metrics: cannot read the store (%s); serving the last figures", error)
            return
        with self._lock:
            self._stored, self._read_at, self._good_at = stored, started, started
            self._reads["ok"] += 1

    def _from_store(self) -> _Stored:
        model = self.settings.model_name
        state = self.controller.state()
        alias = self.registry.alias(PRODUCTION)
        production = alias.version if alias is not None else None
        promoted_at = datetime.fromisoformat(alias.at).timestamp() if alias is not None else None
        served = {production: "production"} if production is not None else {}
        if state is not None and not state.done:
            served = {state.canary: "canary", **served}
        reports, created = [], {}
        for version, role in served.items():
            created[version] = datetime.fromisoformat(
                self.registry.manifest(version).created_at
            ).timestamp()
            report = newest_record(
                self.registry.store, model, version, self.settings.monitoring.window
            )
            if report is not None:
                reports.append(report.model_copy(update={"role": role}))
        return _Stored(state, production, tuple(reports), created, promoted_at)

    def _stored_samples(self) -> Iterator[Sample]:
        model = {"model": self.settings.model_name}
        for result, count in self._reads.items():
            yield Sample("flywheel_exporter_store_reads_total", {**model, "result": result}, count)
        stored = self._stored
        if stored is None:
            return
        yield Sample("flywheel_exporter_store_read_timestamp_seconds", model, self._good_at)
        yield from state_samples(
            self.settings.model_name,
            seldon.deployment_name(self.settings),
            stored.state,
            stored.production,
            self.settings.rollout,
        )
        for version, at in stored.created.items():
            role = "production" if version == stored.production else "canary"
            labels = {**model, "version": version, "role": role}
            yield Sample("flywheel_registry_version_created_timestamp_seconds", labels, at)
        if stored.production is not None and stored.promoted_at is not None:
            yield Sample(
                "flywheel_registry_alias_moved_timestamp_seconds",
                {**model, "alias": PRODUCTION, "version": stored.production},
                stored.promoted_at,
            )
        window = WINDOW_SIZES[self.settings.monitoring.window].total_seconds()
        yield Sample("flywheel_monitor_window_seconds", model, window)
        yield from prometheus.samples(stored.reports)
        yield from threshold_samples(
            self.settings.model_name, self.settings.triggers, stored.reports
        )
        yield from self.triggers.samples()


def serve(exporter: Exporter, host: str, port: int) -> ThreadingHTTPServer:
    """Serve GET /metrics (and /healthz) from a daemon thread; `shutdown()` the server to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                try:
                    body, kind = exporter.text().encode(), CONTENT_TYPE
                except Exception:  # a scrape must never take the controller down
                    log.exception("metrics: cannot render")
                    self.send_error(500)
                    return
            elif self.path == "/healthz":
                body, kind = b"ok\n", "text/plain; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # a scrape every few seconds would flood the controller's log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
