"""`make bench-serving`: what Flywheel's serving costs against its peers, side by side in one run.

Every peer serves the same registered `model.joblib` (or, for the ceiling, nothing)
on loopback with two worker processes and one OpenMP thread each, and gets the same
one-row request:

1. `ceiling`: a seldon-core 1.17.1 class returning a constant, the wrapper's own ceiling;
2. `seldon_sklearn`: a seldon class calling `predict_proba`, what most Seldon users write;
3. `mlserver`: MLServer 1.7.1's scikit-learn runtime (`.venv-mlserver`), as the V2
   protocol's pandas codec asks for the row;
4. `flywheel`: Flywheel's model class as `flywheel serve` deploys it (contract
   validation, metrics, tags, the prediction log on), requests sent to it directly;
5. `gateway`: the same server behind the local traffic-splitting gateway.

All peers run at once and are measured in turn, in `--rounds` rounds, each round in
another order, so that a busy minute on the machine falls on every peer alike. In a
round each peer gets a closed loop (`--clients` threads with keep-alive connections,
at most `--requests` requests or `--seconds` seconds) for throughput, then an open
loop at `--rate` requests a second for `--seconds` seconds for latency: requests
leave on a schedule whether or not earlier ones have returned, and latency counts
from the scheduled time, so a stalled server cannot hide its queue (coordinated
omission). Batch scoring (1,000 rows a request) compares Flywheel with the seldon
class calling scikit-learn. Each ratio is taken within a round; the run reports its
median and range over the rounds, judges the goals on the medians, and ends with
the table (each figure the median of its rounds), each goal met or MISSED with its
figure, and one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MLSERVER_VENV = REPO / ".venv-mlserver"

ROW: dict[str, Any] = {
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
BATCH_ROWS = 1000

# The serving goals, as ratios from one run.
GOAL_VS_CEILING = 0.8
GOAL_VS_MLSERVER = 5.0
GOAL_OPEN_P99_MS = 10.0
GOAL_GATEWAY_P50_MS = 1.0
# Below this share of the offered rate answered, open-loop latencies are queueing.
KEPT_UP = 0.95

PEERS = {
    "ceiling": "seldon class returning a constant (ceiling)",
    "seldon_sklearn": "seldon class calling scikit-learn",
    "mlserver": "MLServer 1.7.1 sklearn runtime",
    "flywheel": "Flywheel, direct",
    "gateway": "Flywheel behind the gateway",
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


@dataclass(frozen=True)
class Target:
    """Where one peer answers and what it is sent."""

    address: str
    path: str
    body: bytes


def seldon_target(address: str, rows: int = 1) -> Target:
    """Seldon's protocol: the rows as `jsonData` records."""
    body = json.dumps({"jsonData": [ROW] * rows}).encode()
    return Target(address, "/api/v1.0/predictions", body)


def mlserver_target(address: str, model: str) -> Target:
    """The V2 protocol with MLServer's pandas codec: one input per column, strings as `str`,
    and `predict_proba` asked for by name (the runtime returns `predict` otherwise)."""
    inputs = []
    for name, value in ROW.items():
        if isinstance(value, str):
            spec: dict[str, Any] = {"datatype": "BYTES", "parameters": {"content_type": "str"}}
        elif isinstance(value, int):
            spec = {"datatype": "INT64"}
        else:
            spec = {"datatype": "FP64"}
        inputs.append({"name": name, "shape": [1], "data": [value], **spec})
    body = {
        "parameters": {"content_type": "pd"},
        "inputs": inputs,
        "outputs": [{"name": "predict_proba"}],
    }
    return Target(address, f"/v2/models/{model}/infer", json.dumps(body).encode())


# --- load ------------------------------------------------------------------------


class _Client:
    """One keep-alive connection that reconnects after a failure."""

    def __init__(self, target: Target) -> None:
        self.target = target
        host, port = target.address.split(":")
        self.host, self.port = host, int(port)
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def send(self) -> bool:
        """One request; True when it was answered 200."""
        try:
            self.connection.request(
                "POST", self.target.path, self.target.body, {"Content-Type": "application/json"}
            )
            response = self.connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            return False

    def close(self) -> None:
        self.connection.close()


def warm(target: Target, requests: int = 20) -> None:
    """The first requests pay for imports and caches in each worker; they are not measured."""
    client = _Client(target)
    for _ in range(requests):
        client.send()
    client.close()


def closed_loop(target: Target, requests: int, seconds: float, clients: int) -> dict[str, float]:
    """`clients` threads, each sending its next request when the last one returns."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    per_client = max(1, requests // clients)

    def client() -> None:
        nonlocal errors
        connection, failed = _Client(target), 0
        mine: list[float] = []
        while len(mine) < per_client and time.perf_counter() < deadline:
            started = time.perf_counter()
            failed += not connection.send()
            mine.append(time.perf_counter() - started)
        connection.close()
        with lock:
            latencies.extend(mine)
            errors += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarise(latencies, time.perf_counter() - started, errors)


def open_loop(
    target: Target, rate: float, seconds: float, connections: int = 16
) -> dict[str, float]:
    """`rate` requests a second on a fixed schedule; latency counts from the scheduled time."""
    total = max(1, int(rate * seconds))
    schedule = itertools.count()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start = time.perf_counter() + 0.05

    def sender() -> None:
        nonlocal errors
        connection, failed = _Client(target), 0
        mine: list[float] = []
        while (i := next(schedule)) < total:
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            failed += not connection.send()
            mine.append(time.perf_counter() - due)
        connection.close()
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [threading.Thread(target=sender) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarise(latencies, time.perf_counter() - start, errors)


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted values (q in 0..100)."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def summarise(latencies: list[float], elapsed: float, errors: int) -> dict[str, float]:
    """Throughput and latency (in ms) of one load phase."""
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": errors,
        "rps": len(ordered) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
    }


# --- processes ---------------------------------------------------------------------


def hardware() -> str:
    """The CPU model, its count and the memory, for a benchmark record to say where it ran."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.0f} GiB"
    return f"{os.cpu_count()} x {model}{memory}"


def _status(pid: int | str) -> dict[str, str]:
    """/proc/<pid>/status as a dict ({} if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def rss_mb(root_pid: int) -> float:
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


def project(kept: Path | None, prefix: str) -> tuple[Path, Path, Path]:
    """(folder, flywheel.yaml, store) of a project kept by an earlier run (--keep), else of a
    model registered now in a new folder named with `prefix`."""
    if kept is not None:
        work = kept.resolve()
        return work, work / "flywheel.yaml", work / ".flywheel" / "store"
    work = Path(tempfile.mkdtemp(prefix=prefix))
    print(f">> registering a model in {work}", flush=True)
    return (work, *register(work))


def register(work: Path) -> tuple[Path, Path]:
    """A project with one registered model (v1); returns its config and store."""
    shutil.copy(REPO / "flywheel.yaml", work / "flywheel.yaml")
    flywheel = [str(REPO / ".venv" / "bin" / "flywheel"), "-c", str(work / "flywheel.yaml")]
    for args in (["data", "generate", "--next", "7"], ["run"]):
        done = subprocess.run([*flywheel, *args], cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise SystemExit(f"error: `flywheel {' '.join(args)}` failed in {work}: {said}")
    return work / "flywheel.yaml", work / ".flywheel" / "store"


@contextlib.contextmanager
def seldon_peer(
    model_class: str, parameters: dict[str, str], cwd: Path
) -> Iterator[tuple[str, int]]:
    """A seldon-core microservice with two workers; yields its HTTP address and pid."""
    from harness.servers import seldon_microservice

    with seldon_microservice(
        parameters,
        model_class=model_class,
        cwd=cwd,
        env={"PYTHONPATH": str(cwd)},
        workers=2,
        ready_timeout=120,
    ) as server:
        yield server.http, server.process.pid


@contextlib.contextmanager
def mlserver_peer(model_file: Path, work: Path, name: str) -> Iterator[tuple[str, int]]:
    """MLServer's sklearn runtime on `model_file`, two inference workers, one OpenMP thread each."""
    from harness.servers import free_ports, stop, wait_until

    folder = work / "mlserver"
    (folder / name).mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, folder / name / "model.joblib")
    http_port, grpc_port, metrics_port = free_ports(3)
    settings = {
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 2,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / name / "model-settings.json").write_text(
        json.dumps(
            {
                "name": name,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    log = folder / "mlserver.log"
    from flywheel.rollout.seldon import SERVING_ENV

    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(folder)],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SERVING_ENV},
            start_new_session=True,
        )
    address = f"127.0.0.1:{http_port}"

    def ready() -> bool:
        url = f"http://{address}/v2/models/{name}/ready"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    try:
        wait_until(ready, 180, "MLServer", process, log)
        yield address, process.pid
    finally:
        stop(process)


def measure(
    target: Target, args: argparse.Namespace, pid: int, batch: Target | None = None
) -> dict[str, Any]:
    """Closed loop, open loop, memory, and batch scoring when asked, for one running peer."""
    warm(target)
    result: dict[str, Any] = {
        "closed": closed_loop(target, args.requests, args.seconds, args.clients),
        "open": {**open_loop(target, args.rate, args.seconds), "offered_rps": args.rate},
        "rss_mb": rss_mb(pid),
    }
    if batch is not None:
        warm(batch, 3)
        result["batch"] = closed_loop(batch, args.batch_requests, args.seconds, 2)
    return result


# --- the report ----------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def figures(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The run's headline figures: the ratios the goals are judged on."""

    def get(peer: str, phase: str, key: str) -> float | None:
        value = results.get(peer, {}).get(phase, {}).get(key)
        return None if value is None else float(value)

    flywheel_rps = get("flywheel", "closed", "rps")
    gateway_p50, direct_p50 = get("gateway", "open", "p50_ms"), get("flywheel", "open", "p50_ms")
    # An open loop the server cannot keep up with measures its queue, not its latency.
    kept_up = {
        peer: _ratio(get(peer, "open", "rps"), get(peer, "open", "offered_rps"))
        for peer in ("flywheel", "gateway")
    }
    batch_flywheel = get("flywheel", "batch", "rps")
    batch_sklearn = get("seldon_sklearn", "batch", "rps")
    return {
        "flywheel_rps": flywheel_rps,
        "vs_ceiling": _ratio(flywheel_rps, get("ceiling", "closed", "rps")),
        "vs_mlserver": _ratio(flywheel_rps, get("mlserver", "closed", "rps")),
        "vs_seldon_sklearn": _ratio(flywheel_rps, get("seldon_sklearn", "closed", "rps")),
        "open_p99_ms": get("flywheel", "open", "p99_ms"),
        "open_rps": get("flywheel", "open", "rps"),
        "open_offered_rps": get("flywheel", "open", "offered_rps"),
        "open_kept_up": min((v for v in kept_up.values() if v is not None), default=None),
        "gateway_open_p99_ms": get("gateway", "open", "p99_ms"),
        "gateway_added_p50_ms": (
            gateway_p50 - direct_p50 if gateway_p50 is not None and direct_p50 is not None else None
        ),
        "batch_rows_per_s": None if batch_flywheel is None else batch_flywheel * BATCH_ROWS,
        "batch_vs_sklearn": _ratio(batch_flywheel, batch_sklearn),
        # None when no peer ran: "no errors" is then not met but unknown.
        "errors": float(
            sum(
                r.get(phase, {}).get("errors", 0)
                for r in results.values()
                for phase in ("closed", "open", "batch")
            )
        )
        if results
        else None,
    }


# The figures whose spread over the rounds is reported: the ratios between peers.
RATIOS = ("vs_ceiling", "vs_mlserver", "vs_seldon_sklearn", "batch_vs_sklearn")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def combined(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One result per peer from its rounds: each figure's median, errors summed."""
    out: dict[str, dict[str, Any]] = {}
    for peer in {p for r in rounds for p in r}:
        runs = [r[peer] for r in rounds if peer in r]
        merged: dict[str, Any] = {"rss_mb": _median([run["rss_mb"] for run in runs])}
        for phase in {ph for run in runs for ph, v in run.items() if isinstance(v, dict)}:
            phases = [run[phase] for run in runs if phase in run]
            merged[phase] = {
                key: sum(ph[key] for ph in phases)
                if key in ("errors", "requests")
                else _median([ph[key] for ph in phases])
                for key in phases[0]
            }
        out[peer] = merged
    return out


def spread(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, tuple[float, float, float]]:
    """(lowest, median, highest) of each ratio, each taken within one round."""
    each = [figures(r) for r in rounds]
    out = {}
    for key in RATIOS:
        values = [value for f in each if (value := f[key]) is not None]
        if values:
            out[key] = (min(values), _median(values), max(values))
    return out


def rounds_figures(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, float | None]:
    """The run's figures: the ratios' medians over the rounds (each taken within a round),
    the others from the combined results."""
    measured = figures(combined(rounds))
    for key, (_, middle, _) in spread(rounds).items():
        measured[key] = middle
    return measured


def goals(measured: dict[str, float | None]) -> dict[str, tuple[bool | None, str]]:
    """The serving goals: (met, or None when the run did not measure it; the figure)."""

    def check(value: float | None, ok: bool, text: str) -> tuple[bool | None, str]:
        return (None, "not measured") if value is None else (ok, text)

    f = measured
    answered = (
        f"; answered {f['open_rps']:.0f}/s of the {f['open_offered_rps']:.0f}/s sent"
        if f.get("open_rps") is not None and f.get("open_offered_rps") is not None
        else ""
    )
    gateway = check(
        f["gateway_added_p50_ms"],
        (f["gateway_added_p50_ms"] or 0.0) <= GOAL_GATEWAY_P50_MS,
        f"{f['gateway_added_p50_ms'] or 0.0:+.2f} ms",
    )
    if gateway[0] is not None and (f.get("open_kept_up") or 0.0) < KEPT_UP:
        gateway = (None, f"not comparable: the open loop outran the server{answered}")
    out = {
        f"Flywheel >= {GOAL_VS_CEILING}x the constant ceiling": check(
            f["vs_ceiling"],
            (f["vs_ceiling"] or 0.0) >= GOAL_VS_CEILING,
            f"{f['vs_ceiling'] or 0.0:.2f}x",
        ),
        f"Flywheel >= {GOAL_VS_MLSERVER:g}x MLServer's sklearn runtime": check(
            f["vs_mlserver"],
            (f["vs_mlserver"] or 0.0) >= GOAL_VS_MLSERVER,
            f"{f['vs_mlserver'] or 0.0:.2f}x",
        ),
        f"p99 <= {GOAL_OPEN_P99_MS:g} ms, open loop": check(
            f["open_p99_ms"],
            (f["open_p99_ms"] or 0.0) <= GOAL_OPEN_P99_MS,
            f"{f['open_p99_ms'] or 0.0:.1f} ms{answered}",
        ),
        f"the gateway adds <= {GOAL_GATEWAY_P50_MS:g} ms at p50": gateway,
        "no errors": check(
            f["errors"], f["errors"] == 0, f"{f['errors'] or 0.0:.0f} failed requests"
        ),
    }
    return out


def table(results: dict[str, dict[str, Any]], rate: float) -> list[str]:
    """One row per peer: closed-loop throughput and latency, open-loop latency, memory."""
    head = (
        f"{'peer':44} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{f'@{rate:g}/s p50':>11} {f'@{rate:g}/s p99':>11} {'errors':>6} {'RSS MB':>7}"
    )
    lines = [head, "-" * len(head)]
    for peer, label in PEERS.items():
        r = results.get(peer)
        if r is None:
            lines.append(f"{label:44} {'not run':>8}")
            continue
        closed, opened = r["closed"], r["open"]
        errors = closed["errors"] + opened["errors"]
        lines.append(
            f"{label:44} {closed['rps']:8.1f} {closed['p50_ms']:7.2f} {closed['p99_ms']:7.2f} "
            f"{opened['p50_ms']:11.2f} {opened['p99_ms']:11.2f} {errors:6.0f} {r['rss_mb']:7.0f}"
        )
    batch = [
        (PEERS[p], results[p]["batch"])
        for p in ("seldon_sklearn", "flywheel")
        if "batch" in results.get(p, {})
    ]
    if batch:
        lines += ["", f"batch scoring, {BATCH_ROWS} rows a request:"]
        lines += [
            f"{label:44} {b['rps'] * BATCH_ROWS:8.0f} rows/s  p50 {b['p50_ms']:.1f} ms  "
            f"p99 {b['p99_ms']:.1f} ms  errors {b['errors']:.0f}"
            for label, b in batch
        ]
    return lines


def report(goals_checked: dict[str, tuple[bool | None, str]]) -> list[str]:
    """Each goal, met or MISSED, with its figure."""
    words = {True: "met", False: "MISSED", None: "unknown"}
    return [f"{words[ok]:>12}  {name}: {detail}" for name, (ok, detail) in goals_checked.items()]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=7, help="rounds, each measuring every peer in turn"
    )
    parser.add_argument(
        "--requests", type=int, default=1500, help="closed-loop requests per peer a round, at most"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="each load phase's limit, per peer a round"
    )
    parser.add_argument("--clients", type=int, default=4, help="closed-loop clients")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests a second")
    parser.add_argument("--batch-requests", type=int, default=40)
    parser.add_argument(
        "--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS)
    )
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    parser.add_argument("--keep", action="store_true", help="keep the registered project")
    parser.add_argument("--project", type=Path, help="a project kept by --keep: skip registering")
    args = parser.parse_args(argv)
    chosen = [p for p in PEERS if p in args.peers.split(",")]

    from flywheel.config import load_settings
    from flywheel.rollout.local import LocalDriver

    work, config, store = project(args.project, "flywheel-bench-serving-")
    settings = load_settings(config, env={}, overrides=[f"storage.uri={store}"])
    model_file = store / "models" / settings.model_name / "versions" / "v1" / "model.joblib"
    (work / "peers.py").write_text(PEER_CLASSES)
    rounds: list[dict[str, dict[str, Any]]] = []
    failed: dict[str, str] = {}

    def failing(name: str, error: Exception) -> None:
        # One peer failing (a missing virtualenv, a crash) must not cost the others.
        failed[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        print(f">> {PEERS[name]} failed: {failed[name]}", flush=True)

    seldon_peers = {
        "ceiling": ("peers.Bare", {}),
        "seldon_sklearn": ("peers.SklearnOnly", {"model_path": str(model_file)}),
    }
    # Every peer up at once: name -> (one-row target, pid, batch target or None).
    up: dict[str, tuple[Target, int, Target | None]] = {}
    try:
        with contextlib.ExitStack() as stack:
            for name in chosen:
                if name == "gateway" and "flywheel" in chosen:
                    continue  # started with Flywheel's server, in front of it
                print(f">> starting {PEERS[name]}", flush=True)
                try:
                    if name in seldon_peers:
                        model_class, parameters = seldon_peers[name]
                        address, pid = stack.enter_context(
                            seldon_peer(model_class, parameters, work)
                        )
                        batch = (
                            seldon_target(address, BATCH_ROWS) if name == "seldon_sklearn" else None
                        )
                        up[name] = (seldon_target(address), pid, batch)
                    elif name == "mlserver":
                        if not (MLSERVER_VENV / "bin" / "mlserver").exists():
                            raise FileNotFoundError(
                                f"no {MLSERVER_VENV}: `make bench-serving` builds it"
                            )
                        address, pid = stack.enter_context(
                            mlserver_peer(model_file, work, settings.model_name)
                        )
                        up[name] = (mlserver_target(address, settings.model_name), pid, None)
                    elif name == "flywheel" or (name == "gateway" and "flywheel" not in chosen):
                        driver = stack.enter_context(LocalDriver(settings, workdir=work / "serve"))
                        driver.serve("v1")
                        backend = driver.backends["v1"]
                        address = backend.url.removeprefix("http://")
                        up["flywheel"] = (
                            seldon_target(address),
                            backend.process.pid,
                            seldon_target(address, BATCH_ROWS),
                        )
                        if "gateway" in chosen and driver.gateway is not None:
                            gateway = driver.gateway_url.removeprefix("http://")
                            up["gateway"] = (seldon_target(gateway), driver.gateway.pid, None)
                except Exception as error:
                    failing(name, error)
            up = {name: peer for name, peer in up.items() if name in chosen}
            for number in range(args.rounds):
                # Each round starts one peer later, so none is always measured first or last.
                order = list(up)[number % max(1, len(up)) :] + list(up)[: number % max(1, len(up))]
                print(f">> round {number + 1} of {args.rounds}: {', '.join(order)}", flush=True)
                measured: dict[str, dict[str, Any]] = {}
                for name in order:
                    if name in failed:
                        continue
                    target, pid, batch = up[name]
                    try:
                        measured[name] = measure(target, args, pid, batch)
                    except Exception as error:
                        failing(name, error)
                rounds.append(measured)
    finally:
        if args.project is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif args.project is None:
            print(f">> kept {work} (--project {work} reuses it)", flush=True)

    print(
        f"\none-row requests, {args.rounds} interleaved rounds: a closed loop of {args.clients} "
        f"clients (<= {args.requests} requests or {args.seconds:g} s a peer), then an open loop "
        f"at {args.rate:g} requests/s for {args.seconds:g} s; each figure the median of the "
        f"rounds; {hardware()}; RSS of the gateway row is the gateway alone\n"
    )
    complete = [r for r in rounds if not failed or set(r) == set(up) - set(failed)]
    for line in table(combined(complete), args.rate):
        print(line)
    for name, why in failed.items():
        print(f"{PEERS[name]} did not run: {why}")
    measured_figures = rounds_figures(complete)
    ranges = spread(complete)
    print(f"\nratios within a round, median (lowest-highest) over {len(complete)} rounds:")
    for key, (low, middle, high) in ranges.items():
        print(f"  {key:20} {middle:6.2f}x ({low:.2f}-{high:.2f})")
    print()
    for line in report(goals(measured_figures)):
        print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(
        json.dumps(
            {
                "hardware": hardware(),
                "rounds": rounds,
                "failed": failed,
                "figures": measured_figures,
                "ranges": ranges,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out / 'serving.json'}")
    last = {k: None if v is None else round(v, 4) for k, v in measured_figures.items()}
    for key, (low, _, high) in ranges.items():
        last[f"{key}_low"], last[f"{key}_high"] = round(low, 4), round(high, 4)
    print(json.dumps(last))
    return 1 if failed else 0  # a peer that did not run leaves the comparison incomplete


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
