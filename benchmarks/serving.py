"""`make bench-serving`: what Flywheel's serving layer costs, side by side in one run.

Peers, each a real `seldon-core-microservice` (1.17.1) with two gunicorn workers
on loopback, loaded with the same registered model and the same one-row request:

1. `Bare`: a class that returns a constant (the wrapper's own floor);
2. `SklearnOnly`: loads the model file and calls `predict_proba` on the rows, the
   class most Seldon users write, with no validation, metrics or logging;
3. `FlywheelModel`: contract validation, custom metrics, tags and the prediction log;
4. the same with OpenMP left at its default of a thread per core (the pathology
   that `SERVING_ENV` fixes);
5. `FlywheelModel` behind the local traffic-splitting gateway.

A closed loop of `--clients` threads with keep-alive connections sends
`--requests` requests to each; the report gives throughput, p50 and p99 latency,
the servers' resident memory, and ratios against `SklearnOnly`. MLServer's
sklearn runtime is not a peer: it needs its own virtualenv and pins, left for later.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ROW = {
    "income": 52000.0,
    "age": 40,
    "loan_amount": 12000.0,
    "credit_score": 680,
    "tenure_months": 24,
    "late_payments": 0,
    "region": "north",
    "channel": "web",
    "employment": "salaried",
}

PEER_CLASSES = """
import joblib, pandas as pd

class Bare:
    def predict(self, X, names=None, meta=None):
        return [[0.5, 0.5]]

class SklearnOnly:
    def __init__(self, model_path=""):
        self.model = joblib.load(model_path)

    def predict(self, X, names=None, meta=None):
        return self.model.predict_proba(pd.DataFrame(X))
"""


def _registered(work: Path) -> tuple[Path, Path]:
    """A project with one registered model (v1); returns its config and store."""
    shutil.copy(REPO / "flywheel.yaml", work / "flywheel.yaml")
    flywheel = [str(REPO / ".venv" / "bin" / "flywheel"), "-c", str(work / "flywheel.yaml")]
    for args in (["data", "generate", "--next", "7"], ["run"]):
        subprocess.run([*flywheel, *args], cwd=work, check=True, capture_output=True)
    return work / "flywheel.yaml", work / ".flywheel" / "store"


def _status(pid: int | str) -> dict[str, str]:
    """/proc/<pid>/status as a dict ({} if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _rss_mb(root_pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _status(entry.name)
        if "PPid" in fields:
            children.setdefault(int(fields["PPid"]), []).append(int(entry.name))
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        rss = _status(pid).get("VmRSS")
        if rss:
            total += int(rss.split()[0]) / 1024
    return total


def _load(address: str, requests: int, clients: int) -> dict[str, float]:
    """Closed-loop load: `clients` threads, each with one keep-alive connection."""
    host, port = address.split(":")
    body = json.dumps({"jsonData": [ROW]})
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    per_client = requests // clients

    def client() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        mine: list[float] = []
        failed = 0
        for _ in range(per_client):
            started = time.perf_counter()
            try:
                connection.request(
                    "POST",
                    "/api/v1.0/predictions",
                    body,
                    {"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            errors += failed

    warm = http.client.HTTPConnection(host, int(port), timeout=30)
    for _ in range(20):  # first requests pay for imports and caches in each worker
        warm.request("POST", "/api/v1.0/predictions", body, {"Content-Type": "application/json"})
        warm.getresponse().read()
    warm.close()
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


@contextlib.contextmanager
def _peer(
    model_class: str, parameters: dict[str, str], cwd: Path, env: dict[str, str]
) -> Iterator[tuple[str, int]]:
    from tests.harness.servers import seldon_microservice

    with seldon_microservice(
        parameters, model_class=model_class, cwd=cwd, env=env, workers=2, ready_timeout=120
    ) as server:
        yield server.http, server.process.pid


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / ".flywheel" / "bench")
    args = parser.parse_args(argv)

    from flywheel.config import load_settings
    from flywheel.rollout.local import LocalDriver

    work = Path(tempfile.mkdtemp(prefix="flywheel-bench-serving-"))
    print(f">> registering a model in {work}", flush=True)
    config, store = _registered(work)
    settings = load_settings(config, env={}, overrides=[f"storage.uri={store}"])
    model_file = store / "models" / "loan-default" / "versions" / "v1" / "model.joblib"
    (work / "peers.py").write_text(PEER_CLASSES)
    flywheel_params = {
        "model_name": "loan-default",
        "model_version": "v1",
        "store_uri": str(store),
        "log_predictions": "true",
    }
    env = {"PYTHONPATH": str(work)}
    default_omp = {**env, "OMP_NUM_THREADS": str(os.cpu_count() or 2)}
    peers: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
        ("seldon Bare (constant)", "peers.Bare", {}, env),
        ("seldon SklearnOnly", "peers.SklearnOnly", {"model_path": str(model_file)}, env),
        ("Flywheel model", "flywheel.serving.model.FlywheelModel", flywheel_params, env),
        (
            "Flywheel model, OpenMP default",
            "flywheel.serving.model.FlywheelModel",
            flywheel_params,
            default_omp,
        ),
    ]
    results: dict[str, dict[str, float]] = {}
    for name, model_class, parameters, peer_env in peers:
        print(f">> {name}", flush=True)
        # The OpenMP pathology answers a few requests a second: a short run shows it.
        count = min(args.requests, 200) if "OpenMP" in name else args.requests
        with _peer(model_class, parameters, work, peer_env) as (address, pid):
            results[name] = _load(address, count, args.clients)
            results[name]["rss_mb"] = _rss_mb(pid)
    print(">> Flywheel model behind the gateway", flush=True)
    driver = LocalDriver(settings)
    try:
        driver.serve("v1")
        gateway = driver.gateway_url.removeprefix("http://")
        results["Flywheel behind gateway"] = _load(gateway, args.requests, args.clients)
    finally:
        driver.close()

    reference = results["seldon SklearnOnly"]
    print(
        f"\n{args.requests} one-row requests, {args.clients} clients, 2 gunicorn workers, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"{'peer':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'RSS MB':>8} "
        f"{'rps vs sklearn':>15} {'p50 vs sklearn':>15}"
    )
    for name, r in results.items():
        print(
            f"{name:34} {r['rps']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:7.0f} "
            f"{r.get('rss_mb', float('nan')):8.0f} {r['rps'] / reference['rps']:15.2f} "
            f"{r['p50_ms'] / reference['p50_ms']:15.2f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out / 'serving.json'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
