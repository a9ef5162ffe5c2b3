"""The local driver: seldon-core microservices for stable and canary behind the gateway.

Each version is served by a real `seldon-core-microservice` from the serving
virtualenv (seldon-core cannot share kfp's). The gateway runs from this
environment. Everything listens on loopback and stops with the driver.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.rollout import seldon
from flywheel.rollout.analysis import Window
from flywheel.rollout.processes import ProcessBook, stop_group
from flywheel.serving.workers import WORKERS_ENV

if TYPE_CHECKING:
    from flywheel.batches import BatchSource
    from flywheel.registry import Registry

log = logging.getLogger(__name__)


class DeployRefused(FlywheelError, RuntimeError):
    """The version cannot be served, so no traffic was sent to it."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    # The whole group: a microservice's gunicorn workers share their master's group.
    stop_group(process.pid)
    process.wait()


def _http(method: str, url: str, body: Any = None, timeout: float = 5) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class Backend:
    """A running microservice for one version."""

    version: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self) -> dict[str, Any]:
        """This backend as the gateway's routes name it: where to send requests and
        feedback, and where its FEEDBACK counter is read."""
        route: dict[str, Any] = {"version": self.version, "url": self.url}
        if self.metrics_port is not None:
            route["metrics_url"] = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return route


def serving_python() -> Path:
    """The serving virtualenv's interpreter (FLYWHEEL_SERVING_PYTHON, else ./.venv-serving)."""
    configured = os.environ.get("FLYWHEEL_SERVING_PYTHON")
    if configured:
        if not Path(configured).is_file():
            raise DeployRefused(f"FLYWHEEL_SERVING_PYTHON is {configured}, which does not exist")
        return Path(configured)
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = base / ".venv-serving" / "bin" / "python"
        if candidate.exists():
            return candidate
    raise DeployRefused(
        "no serving virtualenv: run `make setup` (it builds .venv-serving) or set FLYWHEEL_SERVING_PYTHON"
    )


class LocalDriver:
    """Stable and canary microservices, plus the gateway, on loopback."""

    def __init__(
        self,
        settings: Settings,
        *,
        gateway_port: int = 0,
        workdir: Path | None = None,
        ready_timeout: float = 90,
        parameters: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        # Model-class parameters beyond the deployment's, e.g. a replay's stamp_from_request.
        self.parameters = dict(parameters or {})
        self.workdir = workdir or Path(settings.pipeline.root).resolve().parent / "serve"
        self.ready_timeout = ready_timeout
        self.backends: dict[str, Backend] = {}
        self.gateway_port = gateway_port or _free_port()
        self.gateway: subprocess.Popen[bytes] | None = None
        self.applied: tuple[str, str, int] | None = None
        # One owner per directory; a killed owner cannot stop what it started, so
        # its successor does, from the book.
        self.book = ProcessBook(self.workdir)
        self.book.acquire()
        self.book.reap()

    def __enter__(self) -> LocalDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remember(self) -> None:
        leaders = [b.process.pid for b in self.backends.values()]
        if self.gateway is not None:
            leaders.append(self.gateway.pid)
        self.book.record(leaders)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    # --- processes ---------------------------------------------------------------

    def _spawn(
        self, command: list[str], name: str, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        return process, log_path

    def _wait(self, url: str, process: subprocess.Popen[bytes], log_path: Path, what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                reason = _last_error(log_path)
                raise DeployRefused(f"{what} stopped before becoming ready: {reason}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError, ValueError),
                urllib.request.urlopen(url, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.25)
        _stop(process)
        raise DeployRefused(f"{what} was not ready after {self.ready_timeout:.0f}s; see {log_path}")

    def ensure_gateway(self) -> None:
        if self.gateway is not None:
            if self.gateway.poll() is None:
                return
            stop_group(self.gateway.pid, timeout=2)
        process, log_path = self._spawn(
            [
                sys.executable,
                "-m",
                "flywheel.rollout.gateway",
                f"--port={self.gateway_port}",
                f"--deployment={seldon.deployment_name(self.settings)}",
            ],
            "gateway",
        )
        self.gateway = process
        self._wait(f"{self.gateway_url}/health", process, log_path, "the gateway")

    def backend(self, version: str) -> Backend:
        """A ready microservice for `version`, started if needed; DeployRefused if it cannot serve."""
        existing = self.backends.get(version)
        if existing is not None:
            if existing.process.poll() is None:
                return existing
            # Its leader died: stop what it left in its group before starting another.
            stop_group(existing.process.pid, timeout=2)
        s = self.settings
        if not s.storage.is_s3:  # the microservice runs elsewhere: give it an absolute path
            s = s.model_copy(
                update={
                    "storage": s.storage.model_copy(
                        update={"uri": str(Path(s.storage.uri).resolve())}
                    )
                }
            )
        parameters = seldon.parameters(s, version) + [
            {"name": k, "type": "STRING", "value": v} for k, v in self.parameters.items()
        ]
        http, metrics = _free_port(), _free_port()
        python = serving_python()
        command = [
            str(python.parent / "seldon-core-microservice"),
            seldon.MODEL_CLASS,
            f"--http-port={http}",
            f"--metrics-port={metrics}",
            # The gateway calls the model over REST: a gRPC server would only load
            # the model once more while the REST workers load theirs.
            "--grpc-workers=0",
            f"--workers={s.serving.workers}",
            "--log-level=WARNING",
            f"--parameters={json.dumps(parameters)}",
        ]
        # The worker count in the environment, as on a cluster: the health check waits
        # for every worker.
        env = {**seldon.SERVING_ENV, WORKERS_ENV: str(s.serving.workers)}
        process, log_path = self._spawn(command, f"model-{version}", env=env)
        backend = Backend(
            version=version, port=http, process=process, log=log_path, metrics_port=metrics
        )
        self.backends[version] = backend
        self._remember()
        try:
            self._wait(
                f"{backend.url}/health/status", process, log_path, f"{s.model_name} {version}"
            )
        except DeployRefused:
            _stop(self.backends.pop(version).process)
            self._remember()
            raise
        log.info("serving %s %s on %s", s.model_name, version, backend.url)
        return backend

    # --- the Driver protocol ------------------------------------------------------

    def set_traffic(self, stable: str, canary: str, canary_weight: int, *, slot: str = "a") -> None:
        if self.applied == (stable, canary, canary_weight):
            return
        self.ensure_gateway()
        routes: dict[str, Any] = {
            "stable": self.backend(stable).route(),
            "canary_weight": canary_weight,
        }
        if canary_weight > 0 or canary in self.backends:
            routes["canary"] = self.backend(canary).route()
        edges = self.prediction_edges(stable)
        if edges is not None:
            routes["prediction_edges"] = list(edges)
        _http("PUT", f"{self.gateway_url}/admin/routes", routes)
        self.applied = (stable, canary, canary_weight)

    def prediction_edges(self, stable: str) -> tuple[float, ...] | None:
        """The bins both sides' predicted values are counted in when the stable version is
        a regression: its contract's label profile edges; None for a classifier."""
        from flywheel.contract import Contract
        from flywheel.registry import Registry

        raw = Registry.from_settings(self.settings).read_optional(stable, "contract.json")
        contract = Contract.from_json(raw) if raw is not None else None
        if contract is None or contract.task != "regression":
            return None
        return contract.label_profile.edges if contract.label_profile else ()

    def measure(self, since: float) -> tuple[Window, Window]:
        windows = _http("GET", f"{self.gateway_url}/admin/windows")
        fields = set(Window.model_fields)

        def window(role: str) -> Window:
            raw = windows.get(role)
            return Window(**{k: v for k, v in raw.items() if k in fields}) if raw else Window()

        return window("stable"), window("canary")

    def finish(self, serving: str, *, slot: str = "a") -> None:
        self.ensure_gateway()
        _http(
            "PUT",
            f"{self.gateway_url}/admin/routes",
            {"stable": self.backend(serving).route(), "canary_weight": 0},
        )
        self.applied = (serving, serving, 0)
        for version in [v for v in self.backends if v != serving]:
            _stop(self.backends.pop(version).process)
        self._remember()

    def serve(self, version: str) -> None:
        """Serve `version` alone (no rollout)."""
        self.finish(version)

    def close(self) -> None:
        """Stop every process this driver started."""
        for backend in self.backends.values():
            _stop(backend.process)
        self.backends.clear()
        if self.gateway is not None:
            _stop(self.gateway)
            self.gateway = None
        self.book.release()


_EXCEPTION_LINE = re.compile(
    r"^(?:\w+\.)*[A-Z]\w*(?:Error|Exception|Unavailable|NotFound|Conflict|Violation|Busy|Refused|Exists): "
)


def _last_error(log_path: Path) -> str:
    """Why a microservice did not start, from its log.

    Our model class's ModelUnavailable names the cause in its message, so it wins;
    otherwise the first exception logged (what follows is often the server's own
    noise while shutting down), with its class name but not its module path.
    """
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
    ours = [line for line in exceptions if re.match(r"^(?:\w+\.)*ModelUnavailable: ", line)]
    if ours:
        return ours[-1].split("ModelUnavailable: ", 1)[1].strip()[:500]
    if exceptions:
        return re.sub(r"^(?:\w+\.)+", "", exceptions[0]).strip()[:500]
    return lines[-1][:500] if lines else "no output"


def newest_batch(source: BatchSource) -> Any:
    """The newest batch of `source`, as synthetic traffic to replay."""
    from flywheel import batches

    newest = source.available()[-1]
    return batches.parse(newest.name, source.store.read(newest.key))


def local_canary(
    settings: Settings,
    reg: Registry,
    source: BatchSource,
    version: str,
    *,
    rps: float,
    traffic: bool = True,
    on_tick: Any = None,
) -> tuple[Any, dict[str, int]]:
    """Roll `version` of `reg` out as a canary on loopback, with synthetic traffic replaying
    the newest batch of `source`; return the final state."""
    from flywheel.registry import PRODUCTION
    from flywheel.rollout.controller import RolloutController
    from flywheel.rollout.driver import StateOnlyDriver
    from flywheel.rollout.lock import StoreLock
    from flywheel.rollout.traffic import SyntheticTraffic

    reg.manifest(version)
    # One controller per rollout: a killed one's lock is taken over at once on this
    # host (another host's once it expires), and a live one's is refused.
    lock = StoreLock.for_rollout(reg.store, settings.model_name)
    with lock.holding(wait=2 * lock.seconds):
        # A rollout of this version that a killed process left in progress is resumed.
        pending = RolloutController(reg, StateOnlyDriver(), settings.rollout).in_progress(version)
        stable = pending.stable if pending else reg.resolve(PRODUCTION)
        driver = LocalDriver(settings)
        load = None
        try:
            # Both sides must be serving before any traffic moves: a canary that cannot
            # load is refused here, and the stable model never sees a failed request.
            if stable is not None and stable != version:
                driver.serve(stable)
                driver.backend(version)
                if traffic:
                    load = SyntheticTraffic(
                        driver.gateway_url, newest_batch(source), settings.features, rps=rps
                    ).start()
            controller = RolloutController(
                reg, driver, settings.rollout, on_tick=on_tick, lock=lock
            )
            state = controller.resume_or_start(version)
            if not state.done:
                state = controller.run()
            return state, dict(load.stop() if load else {})
        finally:
            if load is not None:
                load.stop()
            driver.close()
