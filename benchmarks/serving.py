"""`make bench-serving`: what Flywheel's serving costs against its peers, side by side in one run.

Three models, one of each task, each registered by `flywheel run` with its compiled
scorer: the loan-default binary classifier of `flywheel.yaml` on the generator's
data (numeric and categorical features), and the multiclass and regression models
of `examples/wine` and `examples/diabetes` on scikit-learn's tables (numeric
features).
For each model, every peer serves the same registered `model.joblib` (or, for the
ceiling, nothing) on loopback with two worker processes and one OpenMP thread each,
and gets the same one-row request:

1. `ceiling`: a seldon-core 1.17.1 class returning a constant, the wrapper's own ceiling;
2. `seldon_sklearn`: a seldon class calling `predict_proba`, what most Seldon users write;
3. `mlserver`: MLServer 1.7.1's scikit-learn runtime (`.venv-mlserver`), as the V2
   protocol's pandas codec asks for the row (`predict_proba` of a classifier, `predict`
   of a regressor);
4. `flywheel`: Flywheel's model class as `flywheel serve` deploys it (contract
   validation, metrics, tags, the prediction log on), requests sent to it directly;
5. `gateway`: the same server behind the local traffic-splitting gateway (the binary
   model's only).

All peers run at once and are measured in turn, in `--rounds` rounds, each round in
another order of models and peers, so that a busy minute on the machine falls on
every peer alike. In a round each peer of each model gets a closed loop (`--clients` threads with keep-alive connections,
at most `--requests` requests or `--seconds` seconds) for throughput, then an open
loop at `--rate` requests a second for `--seconds` seconds for latency: requests
leave on a schedule whether or not earlier ones have returned, and latency counts
from the scheduled time, so a stalled server cannot hide its queue (coordinated
omission). Batch scoring (1,000 rows a request) compares Flywheel with the seldon
class calling scikit-learn. Each ratio is taken within a round; the run reports its
median and range over the rounds, judges the goals on the medians, and ends with
each model's table (each figure the median of its rounds), each goal met or MISSED
with its figure, and one JSON line of the figures (the binary model's as they were,
the others' prefixed with their task). Before the servers start, each model's
compiled scorer and scikit-learn score one checked row in this process, so the
scorer's own cost is measured even where a server cannot answer a model.
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
from collections.abc import Iterator, Sequence
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
# The models, by task: what each is. The binary one's figures keep their names.
MODELS = {
    "binary": "loan default, binary: HistGradientBoosting, the generator's mixed features",
    "multiclass": "wine, 3 classes: multinomial LogisticRegression, 13 numeric features",
    "regression": "diabetes, regression: HistGradientBoosting, 10 numeric features",
}
# Each model's project, and how its batches are made; `flywheel run` registers it.
PROJECTS = {
    "binary": (REPO / "flywheel.yaml", ["data", "generate", "--next", "7"]),
    "multiclass": (
        REPO / "examples" / "wine" / "flywheel.yaml",
        ["data", "split", "sklearn:wine", "--rows-per-day", "30"],
    ),
    "regression": (
        REPO / "examples" / "diabetes" / "flywheel.yaml",
        ["data", "split", "sklearn:diabetes", "--rows-per-day", "60"],
    ),
}

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
        self.classifier = getattr(self.model, "classes_", None) is not None

    def predict(self, X, names=None, meta=None):
        if self.classifier:
            return self.model.predict_proba(pd.DataFrame(X))
        return self.model.predict(pd.DataFrame(X)).reshape(-1, 1)
"""


@dataclass(frozen=True)
class Target:
    """Where one peer answers and what it is sent."""

    address: str
    path: str
    body: bytes


def seldon_target(address: str, rows: int = 1, row: dict[str, Any] = ROW) -> Target:
    """Seldon's protocol: the rows as `jsonData` records."""
    body = json.dumps({"jsonData": [row] * rows}).encode()
    return Target(address, "/api/v1.0/predictions", body)


def mlserver_target(
    address: str, model: str, row: dict[str, Any] = ROW, output: str = "predict_proba"
) -> Target:
    """The V2 protocol with MLServer's pandas codec: one input per column, strings as `str`,
    and `output` asked for by name: a classifier's `predict_proba` (the runtime returns
    `predict` otherwise), a regressor's `predict`."""
    inputs = []
    for name, value in row.items():
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
        "outputs": [{"name": output}],
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


@dataclass(frozen=True)
class Model:
    """One registered model (v1) the peers serve, and the row each request carries."""

    task: str
    settings: Any  # flywheel.config.Settings, imported when the bench runs
    row: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.settings.model_name)

    @property
    def model_file(self) -> Path:
        store = Path(self.settings.storage.uri)
        return store / "models" / self.name / "versions" / "v1" / "model.joblib"

    @property
    def output(self) -> str:
        """What MLServer's runtime is asked for: probabilities, or a regressor's values."""
        return "predict" if self.task == "regression" else "predict_proba"


def project(kept: Path | None, prefix: str) -> Path:
    """The folder of the projects kept by an earlier run (--keep), else a new one named with
    `prefix`."""
    if kept is not None:
        return kept.resolve()
    return Path(tempfile.mkdtemp(prefix=prefix))


def models(work: Path, tasks: list[str]) -> dict[str, Model]:
    """Each task's model, in its own project under `work`: registered now, unless an earlier
    run kept it there."""
    from flywheel.batches import read_table
    from flywheel.config import load_settings

    out = {}
    for task in tasks:
        folder = work / task
        config, data = PROJECTS[task]
        if not (folder / "flywheel.yaml").exists():
            folder.mkdir(parents=True, exist_ok=True)
            print(f">> registering the {task} model in {folder}", flush=True)
            register(folder, config, data)
        store = folder / ".flywheel" / "store"
        settings = load_settings(
            folder / "flywheel.yaml", env={}, overrides=[f"storage.uri={store}"]
        )
        row = ROW
        if task != "binary":  # the table's first row
            table = read_table(data[2]).iloc[0]
            row = {name: float(table[name]) for name in settings.features.numeric}
        out[task] = Model(task, settings, row)
    return out


def register(work: Path, config: Path, data: list[str]) -> None:
    """A project of `config` with one registered model (v1): its batches made by `flywheel
    data`'s `data` arguments, then `flywheel run`."""
    shutil.copy(config, work / "flywheel.yaml")
    flywheel = [str(REPO / ".venv" / "bin" / "flywheel"), "-c", str(work / "flywheel.yaml")]
    for args in (data, ["run"]):
        done = subprocess.run([*flywheel, *args], cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise SystemExit(f"error: `flywheel {' '.join(args)}` failed in {work}: {said}")


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
def mlserver_peer(model_files: dict[str, Path], work: Path) -> Iterator[tuple[str, int]]:
    """MLServer's sklearn runtime serving each named model file, two inference workers, one
    OpenMP thread each."""
    from harness.servers import free_ports, stop, wait_until

    folder = work / "mlserver"
    for name, model_file in model_files.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(model_file, folder / name / "model.joblib")
        (folder / name / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": "v1"},
                }
            )
        )
    http_port, grpc_port, metrics_port = free_ports(3)
    settings = {
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 2,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
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
        for name in model_files:
            url = f"http://{address}/v2/models/{name}/ready"
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status != 200:
                    return False
        return True

    try:
        wait_until(ready, 180, "MLServer", process, log)
        yield address, process.pid
    finally:
        stop(process)


def answers(target: Target) -> None:
    """One request, answered 200, or a RuntimeError saying what came back: a peer that cannot
    answer a model is reported, not measured."""
    host, port = target.address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", target.path, target.body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        said = response.read().decode(errors="replace")
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status} to one row: {' '.join(said.split())[:200]}")


def scorer_costs(model: Model, seconds: float = 0.5) -> dict[str, float]:
    """Microseconds for one checked row through the compiled scorer and through scikit-learn,
    in this process on one OpenMP thread as a serving worker has (each the best of three
    runs of at least `seconds`)."""
    from threadpoolctl import threadpool_limits

    from flywheel.compiled import COMPILED_FILE
    from flywheel.predictor import Predictor, load_model

    compiled_file = model.model_file.parent / COMPILED_FILE
    fitted = load_model(model.model_file.read_bytes())
    features = model.settings.features
    row = [[model.row.get(c) for c in features.columns]]
    out: dict[str, float] = {}
    with threadpool_limits(1):
        for path, artifact in (
            ("compiled", compiled_file.read_bytes() if compiled_file.exists() else None),
            ("sklearn", None),
        ):
            scorer = Predictor(fitted, features.numeric, features.categorical, compiled=artifact)
            if path == "compiled" and scorer.scorer is None:
                continue
            scorer.predict_rows(row)
            best = float("inf")
            for _ in range(3):
                calls, started = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - started) < seconds:
                    scorer.predict_rows(row)
                    calls += 1
                best = min(best, elapsed / calls)
            out[f"{path}_us"] = best * 1e6
    return out


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


def goals(
    measured: dict[str, float | None], gateway: bool = True
) -> dict[str, tuple[bool | None, str]]:
    """The serving goals: (met, or None when the run did not measure it; the figure); the
    gateway's only when `gateway` (it fronts the binary model alone)."""

    def check(value: float | None, ok: bool, text: str) -> tuple[bool | None, str]:
        return (None, "not measured") if value is None else (ok, text)

    f = measured
    answered = (
        f"; answered {f['open_rps']:.0f}/s of the {f['open_offered_rps']:.0f}/s sent"
        if f.get("open_rps") is not None and f.get("open_offered_rps") is not None
        else ""
    )
    added = check(
        f["gateway_added_p50_ms"],
        (f["gateway_added_p50_ms"] or 0.0) <= GOAL_GATEWAY_P50_MS,
        f"{f['gateway_added_p50_ms'] or 0.0:+.2f} ms",
    )
    if added[0] is not None and (f.get("open_kept_up") or 0.0) < KEPT_UP:
        added = (None, f"not comparable: the open loop outran the server{answered}")
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
        f"the gateway adds <= {GOAL_GATEWAY_P50_MS:g} ms at p50": added,
        "no errors": check(
            f["errors"], f["errors"] == 0, f"{f['errors'] or 0.0:.0f} failed requests"
        ),
    }
    if not gateway:
        del out[f"the gateway adds <= {GOAL_GATEWAY_P50_MS:g} ms at p50"]
    return out


def table(
    results: dict[str, dict[str, Any]], rate: float, peers: Sequence[str] = tuple(PEERS)
) -> list[str]:
    """One row per peer of `peers`: closed-loop throughput and latency, open-loop latency,
    memory."""
    head = (
        f"{'peer':44} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{f'@{rate:g}/s p50':>11} {f'@{rate:g}/s p99':>11} {'errors':>6} {'RSS MB':>7}"
    )
    lines = [head, "-" * len(head)]
    for peer in peers:
        label, r = PEERS[peer], results.get(peer)
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


def last_line(
    measured: dict[str, dict[str, float | None]],
    ranges: dict[str, dict[str, tuple[float, float, float]]],
    costs: dict[str, dict[str, float]],
) -> dict[str, float | None]:
    """The JSON line's figures: the binary model's under the names they have always had, each
    other model's prefixed with its task; ratios with their lowest and highest round, and the
    in-process scorer costs."""
    out: dict[str, float | None] = {}
    for task in measured:
        prefix = "" if task == "binary" else f"{task}_"
        out.update(
            {f"{prefix}{k}": None if v is None else round(v, 4) for k, v in measured[task].items()}
        )
        for key, (low, _, high) in ranges.get(task, {}).items():
            out[f"{prefix}{key}_low"], out[f"{prefix}{key}_high"] = round(low, 4), round(high, 4)
        for key, value in costs.get(task, {}).items():
            out[f"{prefix}scorer_{key}"] = round(value, 2)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=7, help="rounds, each measuring every peer in turn"
    )
    parser.add_argument(
        "--requests", type=int, default=1500, help="closed-loop requests per peer a round, at most"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="each load phase's limit, per peer a round"
    )
    parser.add_argument("--clients", type=int, default=4, help="closed-loop clients")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests a second")
    parser.add_argument("--batch-requests", type=int, default=40)
    parser.add_argument(
        "--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS)
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS)
    )
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    parser.add_argument("--keep", action="store_true", help="keep the registered projects")
    parser.add_argument("--project", type=Path, help="projects kept by --keep: skip registering")
    args = parser.parse_args(argv)
    chosen = [p for p in PEERS if p in args.peers.split(",")]
    began = time.perf_counter()

    from flywheel.rollout.local import LocalDriver

    work = project(args.project, "flywheel-bench-serving-")
    (work / "peers.py").write_text(PEER_CLASSES)
    # Each round: model -> peer -> its measurement.
    rounds: list[dict[str, dict[str, dict[str, Any]]]] = []
    failed: dict[str, dict[str, str]] = {}

    def failing(task: str, name: str, error: Exception) -> None:
        # One peer failing (a missing virtualenv, a crash, a model it cannot answer) must
        # not cost the others.
        why = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
        failed.setdefault(task, {})[name] = why
        print(f">> {task}: {PEERS[name]} failed: {why}", flush=True)

    # Every peer of every model up at once: task -> name -> (one-row target, pid, batch).
    up: dict[str, dict[str, tuple[Target, int, Target | None]]] = {}
    costs: dict[str, dict[str, float]] = {}
    try:
        served = models(work, [t for t in MODELS if t in args.models.split(",")])
        for task, model in served.items():
            costs[task] = scorer_costs(model)
            print(f">> {task}: one row in this process, {costs[task]}", flush=True)
        up = {task: {} for task in served}
        with contextlib.ExitStack() as stack:

            def start(name: str, task: str | None, begin: Any) -> None:
                print(f">> starting {PEERS[name]}" + (f" ({task})" if task else ""), flush=True)
                try:
                    begin()
                except Exception as error:
                    for each in [task] if task else list(served):
                        failing(each, name, error)

            if "ceiling" in chosen:

                def ceiling() -> None:
                    address, pid = stack.enter_context(seldon_peer("peers.Bare", {}, work))
                    for task, model in served.items():
                        up[task]["ceiling"] = (seldon_target(address, row=model.row), pid, None)

                start("ceiling", None, ceiling)
            if "mlserver" in chosen:

                def mlserver() -> None:
                    if not (MLSERVER_VENV / "bin" / "mlserver").exists():
                        raise FileNotFoundError(
                            f"no {MLSERVER_VENV}: `make bench-serving` builds it"
                        )
                    files = {model.name: model.model_file for model in served.values()}
                    address, pid = stack.enter_context(mlserver_peer(files, work))
                    for task, model in served.items():
                        target = mlserver_target(address, model.name, model.row, model.output)
                        up[task]["mlserver"] = (target, pid, None)

                start("mlserver", None, mlserver)
            for task, model in served.items():
                if "seldon_sklearn" in chosen:

                    def sklearn(task: str = task, model: Model = model) -> None:
                        parameters = {"model_path": str(model.model_file)}
                        address, pid = stack.enter_context(
                            seldon_peer("peers.SklearnOnly", parameters, work)
                        )
                        batch = seldon_target(address, BATCH_ROWS, model.row)
                        up[task]["seldon_sklearn"] = (
                            seldon_target(address, row=model.row),
                            pid,
                            batch,
                        )

                    start("seldon_sklearn", task, sklearn)
                if "flywheel" in chosen or (task == "binary" and "gateway" in chosen):

                    def flywheel(task: str = task, model: Model = model) -> None:
                        driver = stack.enter_context(
                            LocalDriver(model.settings, workdir=work / task / "serve")
                        )
                        driver.serve("v1")
                        backend = driver.backends["v1"]
                        address = backend.url.removeprefix("http://")
                        if "flywheel" in chosen:
                            up[task]["flywheel"] = (
                                seldon_target(address, row=model.row),
                                backend.process.pid,
                                seldon_target(address, BATCH_ROWS, model.row),
                            )
                        if task == "binary" and "gateway" in chosen and driver.gateway:
                            gateway = driver.gateway_url.removeprefix("http://")
                            up[task]["gateway"] = (
                                seldon_target(gateway, row=model.row),
                                driver.gateway.pid,
                                None,
                            )

                    start("flywheel", task, flywheel)
            # A peer that starts but cannot answer its model is reported, not measured.
            for task, peers in up.items():
                for name, (target, _, _) in list(peers.items()):
                    try:
                        answers(target)
                    except Exception as error:
                        failing(task, name, error)
                        del peers[name]
            for number in range(args.rounds):
                # Each round starts one model and one peer later, so none is always first or last.
                tasks = _turned(list(up), number)
                print(f">> round {number + 1} of {args.rounds}: {', '.join(tasks)}", flush=True)
                measured: dict[str, dict[str, Any]] = {task: {} for task in up}
                for task in tasks:
                    for name in _turned(list(up[task]), number):
                        if name in failed.get(task, {}):
                            continue
                        target, pid, batch = up[task][name]
                        try:
                            measured[task][name] = measure(target, args, pid, batch)
                        except Exception as error:
                            failing(task, name, error)
                rounds.append(measured)
    finally:
        if args.project is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif args.project is None:
            print(f">> kept {work} (--project {work} reuses them)", flush=True)

    print(
        f"\none-row requests, {args.rounds} interleaved rounds: a closed loop of {args.clients} "
        f"clients (<= {args.requests} requests or {args.seconds:g} s a peer), then an open loop "
        f"at {args.rate:g} requests/s for {args.seconds:g} s; each figure the median of the "
        f"rounds; {hardware()}; RSS of the gateway row is the gateway alone; "
        f"{(time.perf_counter() - began) / 60:.1f} min in all"
    )
    by_task: dict[str, dict[str, float | None]] = {}
    ranges: dict[str, dict[str, tuple[float, float, float]]] = {}
    for task in up:
        lost = failed.get(task, {})
        ran = [r[task] for r in rounds]
        complete = [r for r in ran if not lost or set(r) == set(up[task]) - set(lost)]
        rows = [p for p in PEERS if p != "gateway" or task == "binary"]
        print(f"\n{MODELS[task]}:\n")
        for line in table(combined(complete), args.rate, rows):
            print(line)
        for name, why in lost.items():
            print(f"{PEERS[name]} did not run: {why}")
        cost = costs.get(task, {})
        if cost:
            shown = ", ".join(f"{k.removesuffix('_us')} {v:.0f} us" for k, v in cost.items())
            print(f"one checked row in this process: {shown}")
        by_task[task] = rounds_figures(complete)
        ranges[task] = spread(complete)
        print(f"\nratios within a round, median (lowest-highest) over {len(complete)} rounds:")
        for key, (low, middle, high) in ranges[task].items():
            print(f"  {key:20} {middle:6.2f}x ({low:.2f}-{high:.2f})")
        print()
        for line in report(goals(by_task[task], gateway=task == "binary")):
            print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(
        json.dumps(
            {
                "hardware": hardware(),
                "rounds": rounds,
                "failed": failed,
                "figures": by_task,
                "ranges": ranges,
                "scorer_us": costs,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out / 'serving.json'}")
    print(json.dumps(last_line(by_task, ranges, costs)))
    return 1 if failed else 0  # a peer that did not run leaves the comparison incomplete


def _turned(items: list[str], by: int) -> list[str]:
    """`items` started `by` places later, wrapping round."""
    at = by % max(1, len(items))
    return items[at:] + items[:at]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
