"""Real servers on loopback for tests and benchmarks: each starts, waits until ready, and stops."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.rollout.gateway import ExecutorRequests
from flywheel.rollout.seldon import SERVING_ENV
from flywheel.serving.workers import WORKERS_ENV
from tools.build import binary


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll `check` until it is true; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {process.returncode}:\n{tail}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} was not ready after {timeout:.0f}s:\n{tail}")


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible endpoint and the keys it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    data_dir: Path
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def seaweedfs(
    identities: Sequence[dict[str, Any]] = (), data: Path | None = None
) -> Iterator[S3Server]:
    """SeaweedFS (`weed mini`, Apache-2.0) with its S3 gateway on loopback, torn down on exit.

    Its admin key is the server's; `identities` are more of its s3.json identities. With
    `data`, it starts over a copy of that data folder (of a server stopped by `stop`).
    """
    weed = binary("weed")
    access, secret = "flywheel-test", "flywheel-test-secret"
    work = Path(tempfile.mkdtemp(prefix="flywheel-s3-"))
    config = work / "s3.json"
    identity = {
        "name": "flywheel",
        "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity, *identities]}))
    ports = free_ports(11)
    names = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
        "debug.port",
    ]
    args = [f"-{name}={port}" for name, port in zip(names, ports, strict=True)]
    log = work / "weed.log"
    command = [
        str(weed),
        "mini",
        f"-dir={work / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *args,
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-admin.port.legacy=0",
        "-master.telemetry=false",
        f"-s3.config={config}",
        "-master.volumeSizeLimitMB=64",
    ]
    if data is None:
        (work / "data").mkdir()
    else:
        shutil.copytree(data, work / "data")
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    endpoint = f"127.0.0.1:{ports[6]}"
    server = S3Server(
        endpoint=endpoint, access_key=access, secret_key=secret, data_dir=work, process=process
    )
    try:
        wait_until(lambda: _s3_ready(server), 90, "SeaweedFS S3", process, log)
        yield server
    finally:
        stop(process)
        shutil.rmtree(work, ignore_errors=True)


def _s3_ready(server: S3Server) -> bool:
    from minio import Minio

    client = Minio(
        server.endpoint, access_key=server.access_key, secret_key=server.secret_key, secure=False
    )
    bucket = "readiness-probe"
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    import io

    client.put_object(bucket, "probe", io.BytesIO(b"ok"), 2)
    return True


REPO = Path(__file__).resolve().parents[1]
SERVING_VENV = REPO / ".venv-serving"


@dataclass(frozen=True)
class SeldonServer:
    """A seldon-core microservice on loopback."""

    http: str
    grpc: str
    metrics: str
    process: subprocess.Popen[bytes]
    log: Path


def seldon_command(
    model_class: str, parameters: list[dict[str, str]], ports: list[int], workers: int = 1
) -> list[str]:
    """The seldon-core-microservice command line, from the serving virtualenv."""
    return [
        str(SERVING_VENV / "bin" / "seldon-core-microservice"),
        model_class,
        f"--http-port={ports[0]}",
        f"--grpc-port={ports[1]}",
        f"--metrics-port={ports[2]}",
        f"--workers={workers}",
        "--log-level=INFO",
        f"--parameters={json.dumps(parameters)}",
    ]


@contextlib.contextmanager
def seldon_microservice(
    parameters: dict[str, str],
    *,
    model_class: str = "flywheel.serving.model.FlywheelModel",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    workers: int | None = None,
    ready_timeout: float = 60,
    wait: bool = True,
) -> Iterator[SeldonServer]:
    """Start a real seldon-core microservice serving `model_class` and wait until it answers
    its health check (unless not `wait`). `workers` defaults to `env`'s GUNICORN_WORKERS,
    as seldon-core's own default does (a Deployment's environment sets it), else 1."""
    import urllib.request

    ports = free_ports(3)
    params = [{"name": k, "value": v, "type": "STRING"} for k, v in parameters.items()]
    log = Path(tempfile.mkstemp(prefix="seldon-", suffix=".log")[1])
    full_env = {**os.environ, **SERVING_ENV, **(env or {})}
    if workers is None:
        workers = int((env or {}).get(WORKERS_ENV, 1))
    with log.open("wb") as out:
        process = subprocess.Popen(
            seldon_command(model_class, params, ports, workers),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
    server = SeldonServer(
        http=f"127.0.0.1:{ports[0]}",
        grpc=f"127.0.0.1:{ports[1]}",
        metrics=f"127.0.0.1:{ports[2]}",
        process=process,
        log=log,
    )

    def ready() -> bool:
        with urllib.request.urlopen(f"http://{server.http}/health/status", timeout=2) as response:
            return bool(response.status == 200)

    try:
        if wait:
            wait_until(ready, ready_timeout, "seldon-core microservice", process, log)
        yield server
    finally:
        stop(process)


@dataclass(frozen=True)
class Target:
    """One endpoint Prometheus scrapes, and the labels a ServiceMonitor would attach."""

    job: str
    address: str
    path: str = "/metrics"
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PrometheusServer:
    """A real Prometheus on loopback, scraping static targets."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    scrape_seconds: float

    def query(self, promql: str, at: float | None = None) -> list[dict[str, object]]:
        """An instant query's result list."""
        import urllib.parse
        import urllib.request

        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active targets as the targets API lists them (labels before and after
        relabeling, health, scrape URL)."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/api/v1/targets?state=active", timeout=5) as r:
            targets: list[dict[str, Any]] = json.loads(r.read())["data"]["activeTargets"]
        return targets

    def scraped_after(self, moment: float, timeout: float = 30, job: str | None = None) -> None:
        """Wait until every target's (or `job`'s) latest scrape came after `moment`, and
        succeeded."""
        up_series = f'up{{job="{job}"}}' if job else "up"

        def fresh() -> bool:
            # `up` is 1 for a target whose last scrape succeeded; `timestamp(up)` is when
            # that scrape began. (The timestamp of an expression such as `up == 1` is
            # the query's own time, not the sample's.)
            up = self.query(up_series)
            began = self.query(f"timestamp({up_series})")
            return (
                len(began) == len(up) > 0
                and all(r["value"][1] == "1" for r in up)  # type: ignore[index]
                and all(float(r["value"][1]) > moment for r in began)  # type: ignore[index]
            )

        wait_until(fresh, timeout, "a Prometheus scrape", self.process, self.log)


@contextlib.contextmanager
def prometheus(targets: list[Target], scrape_seconds: float = 1.0) -> Iterator[PrometheusServer]:
    """Start Prometheus (built by `make tools`) scraping `targets` every `scrape_seconds`."""
    jobs: dict[tuple[str, str], list[dict[str, object]]] = {}
    for t in targets:
        jobs.setdefault((t.job, t.path), []).append(
            {"targets": [t.address], "labels": dict(t.labels)}
        )
    every = f"{round(scrape_seconds * 1000)}ms"
    config = {
        "global": {"scrape_interval": every, "scrape_timeout": every},
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": groups}
            for (job, path), groups in jobs.items()
        ],
    }
    with prometheus_configured(config, scrape_seconds) as server:
        yield server


@contextlib.contextmanager
def prometheus_configured(
    config: dict[str, object], scrape_seconds: float
) -> Iterator[PrometheusServer]:
    """Start Prometheus with `config` (its prometheus.yml), scraping every `scrape_seconds`."""
    import urllib.request

    import yaml

    work = Path(tempfile.mkdtemp(prefix="prometheus-"))
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    (port,) = free_ports(1)
    log = work / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary("prometheus")),
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log, scrape_seconds)

    def ready() -> bool:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    try:
        wait_until(ready, 60, "Prometheus", process, log)
        yield server
    finally:
        stop(process)
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Exporter:
    """A metrics endpoint on loopback serving Seldon's executor's request histogram, into
    which the test observes calls (Seldon's executor is not on the Go module proxy)."""

    address: str
    requests: ExecutorRequests


@contextlib.contextmanager
def executor_exporter(deployment: str) -> Iterator[Exporter]:
    """Serve an `ExecutorRequests` at /prometheus (the executor's path) and /metrics."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    requests = ExecutorRequests(deployment)

    class Scrape(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/prometheus", "/metrics"):
                self.send_error(404)
                return
            body = requests.exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scrape)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Exporter(f"127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
