"""`make bench-monitor`: monitoring one day-window of logged predictions, Flywheel against its
peers, in one run, on the same rows.

The store is made by `flywheel simulate` (2 days of the stable world, never retraining): a
registered production version (v1) with its model, contract, evaluation and reference
batches. For each size (`--rows`, default 100k, 1M and 10M rows) one day of that version's
traffic, the day after the simulation's, is logged into a copy of that store as serving logs
it, but written directly, not through a server: one-row requests with uuid4 request ids,
features drawn from the simulator's world three days into its covariate drift (a mild shift),
answered by the registered model (scored in chunks), written with the logger's own format
(`flywheel.logformat.prediction_table` and `to_parquet`) as one Parquet file per minute per
worker (2 workers: 2,880 files) under `predictions/<model>/<version>/<day>/`. Half of the
requests get their true label as feedback an hour later (`feedback_table`, under
`feedback/...`), well within the label delay. Generation is bounded in memory: about 50,000
rows at a time.

Every peer is a subprocess, timed on the same files (read once beforehand, so each finds them
in the page cache):

1. `evidently`: Evidently 0.7.23's `DataDriftPreset` on the nine features against the
   version's reference, the batches its contract was inferred from (`.venv-evidently`);
2. `nannyml`: NannyML 0.13.1's univariate drift (Kolmogorov-Smirnov and chi2, and
   Jensen-Shannon) against the same reference, and CBPE (ROC AUC, accuracy at 0.5) of the
   logged scores, fitted on the version's evaluation's newest batch (rows the model never
   trained on) with its labels and the model's scores (`.venv-nannyml`);
3. `flywheel_2cpu`: `flywheel monitor --until <the day's end>` on the store (one day-window),
   both cores, on a fresh copy of the store (hard links), so that its look is a first one;
4. `relook_2cpu`: the same store after one more minute of logs: another minute's rows served
   in the window's last minute (a busy minute: each worker's second file of that minute, and
   their feedback), looked at again;
5. `flywheel_1cpu` and `relook_1cpu`: the same on one CPU (pinned to core 0, as the chart's
   monitor pod has a 1-CPU limit), on another fresh copy;
6. `compact_2cpu` and `compact_1cpu`: a third look with its housekeeping on, which compacts
   the settled day's files into one (the looks above run with `--no-housekeeping`, as the
   peers have no counterpart of it). On two cores the looks summarise with `--workers 2`;
7. `joined_2cpu` and `joined_1cpu`: a first look again, on a fresh copy, with every label
   joined to every row (`monitoring.label_join: every`), and `relook_joined_*` its re-look
   after the same new minute: each must measure every label the day was given;
8. `compacted_joined_2cpu` and `compacted_joined_1cpu`: every label joined again once
   `compact_*` has compacted the day, whose compacted files are read a row group at a
   time (its memory is judged with the join's).

Flywheel's modules are compiled to bytecode beforehand, as installing it compiles them. For
each: wall time, rows/s and peak resident memory (the process and its children, polled
every 0.1 s, and the kernel's own peak of the largest). A peer that runs past 15 minutes or
8 GiB is killed and reported so; its rows/s is then an upper bound. The run ends with a
table per size, the goals each met or MISSED with its figure, and one JSON line of the
figures. Flywheel's rows are judged only where `flywheel monitor` reported every row of the
window: a monitor that cannot read these logs is not fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.serving import REPO, hardware, rss_mb

SIZES = (100_000, 1_000_000, 10_000_000)
MINUTES = 24 * 60
WORKERS = 2
# Fake worker pids, as the file names carry them.
FIRST_PID = 4101
# Rows drawn and scored at once (whole files): memory stays bounded, scoring stays efficient.
CHUNK_ROWS = 50_000
LABELLED_SHARE = 0.5
LABEL_LAG_S = 3600.0
THRESHOLD = 0.5
# Days into the simulator's covariate drift the logged day is drawn from: a mild shift.
DRIFT_DAYS = 3

LIMIT_S = 15 * 60.0
LIMIT_MB = 8 * 1024.0
POLL_S = 0.1

# The goals of issue 21.
GOAL_2CPU_S = 60.0
GOAL_1CPU_S = 120.0
GOAL_MEMORY_MB = 1024.0
GOAL_FLAT = 1.2  # peak memory at 10M rows at most 1.2 times that at 1M
GOAL_VS_PEERS = 10.0
GOAL_RELOOK_S = 2.0
BIG, MIDDLE = 10_000_000, 1_000_000

PEERS = {
    "flywheel_2cpu": "Flywheel monitor, 2 cores",
    "relook_2cpu": "Flywheel re-look, 1 new minute, 2 cores",
    "flywheel_1cpu": "Flywheel monitor, 1 CPU",
    "relook_1cpu": "Flywheel re-look, 1 new minute, 1 CPU",
    "compact_2cpu": "Flywheel look + compaction of the day, 2 cores",
    "compact_1cpu": "Flywheel look + compaction of the day, 1 CPU",
    "joined_2cpu": "Flywheel monitor, every label joined, 2 cores",
    "joined_1cpu": "Flywheel monitor, every label joined, 1 CPU",
    "relook_joined_2cpu": "Flywheel re-look, every label joined, 2 cores",
    "relook_joined_1cpu": "Flywheel re-look, every label joined, 1 CPU",
    "compacted_joined_2cpu": "Flywheel, every label joined, day compacted, 2 cores",
    "compacted_joined_1cpu": "Flywheel, every label joined, day compacted, 1 CPU",
    "evidently": "Evidently 0.7.23, DataDriftPreset",
    "nannyml": "NannyML 0.13.1, univariate drift + CBPE",
}
PEER_VENVS = {name: REPO / f".venv-{name}" for name in ("evidently", "nannyml")}
# The peers' own telemetry, off: the machine reaches no analytics service.
QUIET = {
    "NML_DISABLE_USAGE_LOGGING": "1",
    "DO_NOT_TRACK": "1",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "ITERATIVE_DO_NOT_TRACK": "1",
}
# Where `flywheel monitor` says how many rows a window's report holds, and how many labels
# its headline metric measured.
_ROWS = re.compile(r"(\d+) requests, (\d+) rows")
_LABELS = re.compile(r" on (\d+) labels")


def label(rows: int) -> str:
    """A size's short name: 100k, 1m, 10m."""
    for unit, name in ((1_000_000, "m"), (1000, "k")):
        if rows >= unit and rows % unit == 0:
            return f"{rows // unit}{name}"
    return str(rows)


# --- the store ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """The simulated store and what the benchmark needs of its production version."""

    work: Path
    template: Path  # the store, without logs
    batches: Path
    settings: Any  # flywheel.config.Settings
    version: str
    day: date  # the logged day

    @property
    def model(self) -> str:
        return str(self.settings.model_name)

    @property
    def numeric(self) -> list[str]:
        return list(self.settings.features.numeric)

    @property
    def categorical(self) -> list[str]:
        return list(self.settings.features.categorical)

    @property
    def until(self) -> str:
        """The end of the logged day, as `flywheel monitor --until` takes it."""
        return f"{self.day + timedelta(days=1):%Y-%m-%d}T00:00:00"


def simulate(work: Path) -> Project:
    """A store with a registered production version, made by `flywheel simulate` in `work`."""
    from flywheel.config import load_settings
    from flywheel.registry import PRODUCTION
    from flywheel.stores import Stores

    root = work / "simulation"
    if not (root / "store").is_dir():
        print(f">> simulating 2 days into {root}", flush=True)
        command = [
            str(REPO / ".venv" / "bin" / "flywheel"),
            "-c",
            str(REPO / "flywheel.yaml"),
            "simulate",
            *("--days", "2", "--scenario", "stable", "--policy", "never", "--traffic", "200"),
            *("--no-oracle", "--out", str(root)),
        ]
        done = subprocess.run(command, cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise SystemExit(f"error: `flywheel simulate` failed in {work}: {said}")
        # Its own days' logs and records are not the benchmark's rows.
        for prefix in ("predictions", "feedback", "monitoring"):
            shutil.rmtree(root / "store" / prefix, ignore_errors=True)
    config = write_config(work / "template.yaml", root / "store", root / "batches")
    settings = load_settings(config, env={})
    version = Stores(settings).registry.resolve(PRODUCTION)
    if version is None:
        raise SystemExit(f"error: the simulation in {root} left no production version")
    newest = max(date.fromisoformat(p.name[:10]) for p in (root / "batches").glob("*.parquet"))
    return Project(
        work, root / "store", root / "batches", settings, version, newest + timedelta(days=1)
    )


def write_config(path: Path, store: Path, batches: Path, label_join: str = "sample") -> Path:
    """flywheel.yaml for a store: the repository's, monitoring one day-window (and the
    triggers judging one window, and labels a day late at most, as the configuration
    requires), its labels joined to the sample or to every row."""
    import yaml

    config = yaml.safe_load((REPO / "flywheel.yaml").read_text())
    config["storage"]["uri"] = str(store)
    config["data"]["source"] = str(batches)
    config.setdefault("monitoring", {}).update(
        {"window": "day", "windows": 1, "label_delay_days": 1, "label_join": label_join}
    )
    for trigger in ("drift", "estimated_performance"):
        if config["triggers"].get(trigger):
            config["triggers"][trigger]["windows"] = 1
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def predictor(project: Project) -> Any:
    """The production version's model, through its compiled scorer as serving loads it."""
    from flywheel.predictor import Predictor, load_model
    from flywheel.registry import MODEL_FILE
    from flywheel.stores import Stores

    registry = Stores(project.settings).registry
    return Predictor(
        load_model(registry.read(project.version, MODEL_FILE)),
        project.numeric,
        project.categorical,
        compiled=registry.read_optional(project.version, "scorer.compiled"),
    )


def write_references(project: Project, scorer: Any) -> tuple[Path, Path]:
    """The peers' references: the batches the version's contract was inferred from, and its
    evaluation's newest batch with its labels and the model's scores."""
    import pandas as pd

    from flywheel import batches
    from flywheel.contract import Contract
    from flywheel.evaluation import Evaluation
    from flywheel.stores import Stores

    stores = Stores(project.settings)
    registry, source = stores.registry, stores.source
    contract = Contract.from_json(registry.read(project.version, "contract.json"))
    evaluated = Evaluation.model_validate_json(registry.read(project.version, "evaluation.json"))
    found = {b.day.isoformat(): b for b in source.available()}

    def frame(day: str) -> pd.DataFrame:
        batch = found[day[:10]]
        return batches.parse(batch.name, source.store.read(batch.key))

    reference = project.work / "reference.parquet"
    pd.concat([frame(b) for b in contract.batches], ignore_index=True).to_parquet(reference)
    newest = frame(evaluated.newest_batch).reset_index(drop=True)
    newest["score"] = scorer.predictions(newest)
    scored = project.work / "reference_scored.parquet"
    newest.to_parquet(scored)
    return reference, scored


# --- the logged day -----------------------------------------------------------------------


@dataclass
class Logs:
    """One size's logged day in its store, and the re-look's minute, held until it is written."""

    store: Path
    rows: int
    labelled: int = 0
    files: list[Path] = field(default_factory=list)
    bytes: int = 0
    minute: dict[str, bytes] = field(default_factory=dict)
    minute_rows: int = 0


class _Logger:
    """Writes a day's prediction and feedback files as serving's workers would: per worker a
    pid and a sequence number for each log, each file named by when it was written."""

    def __init__(self, project: Project, scorer: Any, seed: int) -> None:
        import numpy as np

        self.project = project
        self.scorer = scorer
        self.rng = np.random.default_rng([seed, 21])
        self.sequences: dict[tuple[str, int], int] = {}
        self.start = datetime.combine(project.day, datetime.min.time(), tzinfo=UTC).timestamp()
        self.features = [*project.numeric, *project.categorical]

    def key(self, log: str, worker: int, at: float) -> str:
        """Where a worker's next file of `log`, written at `at`, goes."""
        number = self.sequences[(log, worker)] = self.sequences.get((log, worker), 0) + 1
        when = datetime.fromtimestamp(at, UTC)
        p = self.project
        return (
            f"{log}/{p.model}/{p.version}/{when:%Y-%m-%d}/{when:%H%M%S%f}-"
            f"{FIRST_PID + worker}-{number:06d}.parquet"
        )

    def traffic(self, rows: int, chunk: int) -> Any:
        """`rows` applicants from the simulator's world, a few days into its covariate drift."""
        from flywheel.synthetic import generate_day

        generator = self.project.settings.data.generator.model_copy(
            update={
                "scenario": "covariate_drift",
                "seed": int(self.rng.integers(2**31)) + chunk,
                "rows_per_day": rows,
                "start_date": self.project.day - timedelta(days=7 + DRIFT_DAYS),
                "change_day": 7,
            }
        )
        return generate_day(self.project.day, generator)

    def files(
        self, plan: Sequence[tuple[int, int, int]], chunk: int
    ) -> Iterator[tuple[str, bytes, int, int]]:
        """(key, Parquet bytes, rows, labelled rows) of each file that `plan` asks for: (minute
        of the day, worker, rows) each, all scored together."""
        from flywheel import logformat

        total = sum(rows for _, _, rows in plan)
        if total == 0:
            return
        frame = self.traffic(total, chunk)
        outputs = self.scorer.outputs(frame).tolist()
        values = frame[self.features].to_numpy(object).tolist()
        truth = frame[self.project.settings.features.label].to_numpy().tolist()
        raw = self.rng.bytes(16 * total)
        metadata = {"model": self.project.model, "version": self.project.version}
        at = 0
        for minute, worker, rows in plan:
            if rows == 0:
                continue
            times = sorted((self.start + minute * 60 + self.rng.uniform(0, 60, rows)).tolist())
            latencies = self.rng.lognormal(1.0, 0.4, rows).round(3).tolist()
            labelled = (self.rng.random(rows) < LABELLED_SHARE).tolist()
            predictions, feedback = [], []
            for i in range(rows):
                request_id = str(uuid.UUID(bytes=raw[16 * (at + i) : 16 * (at + i + 1)], version=4))
                predictions.append(
                    {
                        "request_id": request_id,
                        "time": times[i],
                        "latency_ms": latencies[i],
                        "features": self.features,
                        "inputs": [values[at + i]],
                        "outputs": [outputs[at + i]],
                    }
                )
                if labelled[i]:
                    feedback.append(
                        {
                            "request_id": request_id,
                            "time": times[i] + LABEL_LAG_S,
                            "labels": [truth[at + i]],
                        }
                    )
            at += rows
            table = logformat.prediction_table(
                predictions, self.project.numeric, self.project.categorical, len(outputs[0])
            )
            # A file is written just after its last record.
            written = times[-1] + 0.001
            yield (
                self.key("predictions", worker, written),
                logformat.to_parquet(table, metadata),
                rows,
                0,
            )
            if feedback:
                table = logformat.feedback_table(feedback)
                key = self.key("feedback", worker, feedback[-1]["time"] + 0.001)
                yield key, logformat.to_parquet(table, metadata), 0, len(feedback)


def plan_day(
    rows: int, minutes: int = MINUTES, workers: int = WORKERS
) -> list[tuple[int, int, int]]:
    """(minute, worker, rows) of every file of the day: `rows` shared evenly, a file per minute
    per worker."""
    files = minutes * workers
    base, extra = divmod(rows, files)
    return [
        (minute, worker, base + (minute * workers + worker < extra))
        for minute in range(minutes)
        for worker in range(workers)
    ]


def log_day(
    project: Project,
    scorer: Any,
    rows: int,
    store: Path,
    seed: int = 0,
    minutes: int = MINUTES,
) -> Logs:
    """A copy of the project's store (hard links) with `rows` logged over the day's `minutes`
    (the first ones), and the re-look's minute: another minute's rows, served in the last."""
    copy_store(project.template, store)
    logs = Logs(store=store, rows=rows)
    logger = _Logger(project, scorer, seed)
    plan = plan_day(rows, minutes)
    for number, chunk in enumerate(chunks(plan)):
        for key, data, served, labelled in logger.files(chunk, number):
            # Written straight to the files: the store's fsync of each would double the time.
            (store / key).parent.mkdir(parents=True, exist_ok=True)
            (store / key).write_bytes(data)
            logs.labelled += labelled
            logs.bytes += len(data)
            if served:
                logs.files.append(store / key)
    last = [(minutes - 1, worker, count) for _, worker, count in plan[-WORKERS:]]
    for key, data, served, _ in logger.files(last, len(plan)):
        logs.minute[key] = data
        logs.minute_rows += served
    return logs


def chunks(
    plan: Sequence[tuple[int, int, int]], rows: int = CHUNK_ROWS
) -> Iterator[list[tuple[int, int, int]]]:
    """The plan's files in runs of about `rows` rows (whole files), in order."""
    chunk: list[tuple[int, int, int]] = []
    held = 0
    for entry in plan:
        chunk.append(entry)
        held += entry[2]
        if held >= rows:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def copy_store(source: Path, target: Path) -> None:
    """A copy of a local store whose files are hard links: a store writes new files (and
    replaces, never rewrites, old ones), so neither copy sees the other's writes."""
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(source), str(target)], check=True)


def compile_sources() -> None:
    """Flywheel's modules compiled to bytecode, as installing a package compiles them (pip
    does, and so the images): an editable install where PYTHONDONTWRITEBYTECODE is set, as on
    some VMs, otherwise compiles every module changed since at each start, 0.6 s of a look."""
    import compileall

    compileall.compile_dir(REPO / "src" / "flywheel", quiet=1)


def warm(files: Sequence[Path]) -> None:
    """Read every file once, so that each peer finds them in the page cache."""
    for path in files:
        with path.open("rb") as handle:
            while handle.read(1 << 20):
                pass


# --- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One peer's run: its wall time, peak memory and how it ended."""

    wall_s: float
    peak_mb: float
    status: str  # "ok", "killed: ..." or "failed: ..."
    output: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def killed(self) -> bool:
        return self.status.startswith("killed")


def measure(
    command: Sequence[str],
    log: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    limit_s: float = LIMIT_S,
    limit_mb: float = LIMIT_MB,
) -> Measured:
    """Run `command` (on `cpus` only, if given) until it ends, or kill it and its children
    past `limit_s` seconds or `limit_mb` MiB; its output goes to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    why = ""
    peak = 0.0
    with log.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pin,
        )
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, rss_mb(process.pid))
            elapsed = time.perf_counter() - started
            if peak > limit_mb:
                why = f"killed: past {limit_mb / 1024:g} GiB after {elapsed:.0f} s"
            elif elapsed > limit_s:
                why = f"killed: past {limit_s / 60:g} min"
            if why:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                _, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(POLL_S)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss (KiB) catches a peak of one process between two polls.
    peak = max(peak, usage.ru_maxrss / 1024)
    output = log.read_text(errors="replace")
    if not why and process.returncode != 0:
        last = (output.strip().splitlines() or ["no output"])[-1][:200]
        why = f"failed: exit {process.returncode}: {last}"
    return Measured(wall, peak, why or "ok", output)


def rows_reported(output: str) -> int | None:
    """The rows `flywheel monitor` says its window reports hold; None if it does not say."""
    found = _ROWS.findall(output)
    if found:
        return sum(int(rows) for _, rows in found)
    return 0 if "No served requests" in output else None


def peer_spec(project: Project, logs: Logs, reference: Path, scored: Path) -> dict[str, Any]:
    """What `benchmarks.monitor_peers` reads: the day's prediction files, the references and
    the features."""
    from flywheel import logformat

    return {
        "files": [str(p) for p in logs.files],
        "reference": str(reference),
        "scored_reference": str(scored),
        "numeric": project.numeric,
        "categorical": project.categorical,
        "label": project.settings.features.label,
        "time_column": project.settings.features.time_column,
        "time": logformat.TIME,
        "score": logformat.output_column(1),
        "threshold": THRESHOLD,
    }


def run_flywheel(
    project: Project, logs: Logs, name: str, cpus: set[int] | None, folder: Path
) -> dict[str, Measured]:
    """`flywheel monitor` on a fresh copy of the size's store, then again after the re-look's
    minute is written into it: `name` and its re-look."""
    store = folder / f"store-{name}"
    copy_store(logs.store, store)
    config = write_config(folder / f"{name}.yaml", store, project.batches)
    # Both cores summarise new files in two processes; the chart's pod has one CPU. The
    # look is timed without its housekeeping (the compaction of the settled day, which
    # the peers have no counterpart of); `compact_*` times that on its own afterwards.
    command = [
        str(REPO / ".venv" / "bin" / "flywheel"),
        "--config",
        str(config),
        "monitor",
        "--until",
        project.until,
        "--report",
        str(folder / f"{name}.html"),
        "--workers",
        "1" if cpus else "2",
        "--no-housekeeping",
    ]
    out = {name: measure(command, folder / f"{name}.log", cwd=folder, cpus=cpus)}
    if out[name].ok:
        _write_minute(logs, store)
        again = name.replace("flywheel", "relook")
        out[again] = measure(command, folder / f"{again}.log", cwd=folder, cpus=cpus)
        tidy = name.replace("flywheel", "compact")
        out[tidy] = measure(
            [*command[:-1], "--housekeeping"], folder / f"{tidy}.log", cwd=folder, cpus=cpus
        )
        # Every label joined on the compacted day: its files read a row group at a time.
        after = name.replace("flywheel", "compacted_joined")
        config = write_config(folder / f"{after}.yaml", store, project.batches, "every")
        out[after] = measure(
            [*command[:2], str(config), *command[3:]],
            folder / f"{after}.log",
            cwd=folder,
            cpus=cpus,
        )
    shutil.rmtree(store, ignore_errors=True)
    # A first look again, on a fresh copy, with every label joined to every row.
    copy_store(logs.store, store)
    every = name.replace("flywheel", "joined")
    joined = [
        *command[:2],
        str(write_config(folder / f"{every}.yaml", store, project.batches, "every")),
        *command[3:],
    ]
    out[every] = measure(joined, folder / f"{every}.log", cwd=folder, cpus=cpus)
    if out[every].ok:
        _write_minute(logs, store)
        again = name.replace("flywheel", "relook_joined")
        out[again] = measure(joined, folder / f"{again}.log", cwd=folder, cpus=cpus)
    shutil.rmtree(store, ignore_errors=True)
    return out


def _write_minute(logs: Logs, store: Path) -> None:
    """The re-look's minute of logs, written into a store."""
    for key, data in logs.minute.items():
        target = store / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def run_peer(name: str, spec: Path, folder: Path) -> Measured:
    """A peer in its own virtualenv, on the spec's files."""
    python = PEER_VENVS[name] / "bin" / "python"
    if not python.exists():
        return Measured(
            0.0, 0.0, f"failed: no {PEER_VENVS[name].name}: `make bench-monitor` builds it", ""
        )
    env = {**os.environ, **QUIET, "PYTHONPATH": str(REPO)}
    command = [str(python), "-m", "benchmarks.monitor_peers", name, str(spec)]
    return measure(command, folder / f"{name}.log", cwd=folder, env=env)


def found(output: str) -> dict[str, Any]:
    """A peer's JSON line, or {}."""
    for line in reversed(output.strip().splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict) and "rows" in value:
                return value
    return {}


# --- figures, goals, tables ---------------------------------------------------------------


def figures(
    runs: dict[str, Measured], rows: int, minute_rows: int = 0, labels: int = 0
) -> dict[str, dict[str, Any]]:
    """Each peer's figures at one size: wall, rows/s (an upper bound for a killed peer), peak
    memory, status; Flywheel's with the rows it reported and the rows it should have, and
    with every label joined, the labels too."""
    out: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        relook = name.startswith(("relook", "compact"))
        finished = run.ok or run.killed
        entry: dict[str, Any] = {
            "wall_s": run.wall_s,
            "rows_per_s": rows / run.wall_s if finished and run.wall_s > 0 and not relook else None,
            "peak_mb": run.peak_mb,
            "status": run.status,
        }
        if name.startswith(("flywheel", "relook", "compact", "joined")):
            entry["rows_reported"] = rows_reported(run.output) if run.ok else None
            entry["rows_expected"] = rows + (minute_rows if relook else 0)
        if name.startswith("joined"):
            measured = _LABELS.findall(run.output) if run.ok else []
            entry["labels_reported"] = sum(map(int, measured)) if measured else None
            entry["labels_expected"] = labels
        else:
            entry |= {k: v for k, v in found(run.output).items() if k != "peer"}
        out[name] = entry
    return out


def _complete(entry: dict[str, Any] | None) -> str:
    """Why a Flywheel run's figures cannot be judged ("" if they can)."""
    if entry is None:
        return "not measured"
    if entry["status"] != "ok":
        return ""
    reported, expected = entry.get("rows_reported"), entry.get("rows_expected")
    if reported is None:
        return "not comparable: flywheel monitor did not say how many rows it read"
    if reported != expected:
        return f"not comparable: flywheel monitor reported {reported:,} of {expected:,} rows"
    return ""


def goals(by_size: dict[int, dict[str, dict[str, Any]]]) -> dict[str, tuple[bool | None, str]]:
    """The goals of issue 21: (met, or None when not measured or not comparable; the figure)."""

    def at(rows: int, name: str) -> dict[str, Any] | None:
        return by_size.get(rows, {}).get(name)

    def timed(entry: dict[str, Any] | None, limit: float) -> tuple[bool | None, str]:
        why = _complete(entry)
        if why or entry is None:
            return None, why or "not measured"
        if entry["status"] != "ok":
            return False, entry["status"]
        return entry["wall_s"] <= limit, f"{entry['wall_s']:.1f} s"

    out: dict[str, tuple[bool | None, str]] = {
        f"10M rows in <= {GOAL_2CPU_S:g} s on 2 cores": timed(
            at(BIG, "flywheel_2cpu"), GOAL_2CPU_S
        ),
        f"10M rows in <= {GOAL_1CPU_S:g} s on 1 CPU": timed(at(BIG, "flywheel_1cpu"), GOAL_1CPU_S),
    }
    big = [e for n in ("flywheel_2cpu", "flywheel_1cpu") if (e := at(BIG, n)) is not None]
    why = next((w for e in big if (w := _complete(e))), "" if big else "not measured")
    peak = max((e["peak_mb"] for e in big), default=0.0)
    out[f"10M rows within {GOAL_MEMORY_MB / 1024:g} GiB"] = (
        (None, why) if why else (peak <= GOAL_MEMORY_MB, f"peak {peak:.0f} MiB")
    )
    growth: list[tuple[float, str]] = []
    why = ""
    for name in ("flywheel_2cpu", "flywheel_1cpu"):
        low, high = at(MIDDLE, name), at(BIG, name)
        if low is None or high is None:
            continue
        why = why or _complete(low) or _complete(high)
        if low["peak_mb"] > 0:
            growth.append((high["peak_mb"] / low["peak_mb"], name))
    if why or not growth:
        out[f"memory flat from 1M to 10M rows (<= {GOAL_FLAT:g}x)"] = (None, why or "not measured")
    else:
        ratio, name = max(growth)
        out[f"memory flat from 1M to 10M rows (<= {GOAL_FLAT:g}x)"] = (
            ratio <= GOAL_FLAT,
            f"{ratio:.2f}x ({PEERS[name]})",
        )
    ratio, against = versus_peers(by_size.get(MIDDLE, {}))
    out[f">= {GOAL_VS_PEERS:g}x the faster peer's rows/s at 1M"] = (
        (None, against) if ratio is None else (ratio >= GOAL_VS_PEERS, f"{ratio:.1f}x {against}")
    )
    relooks = by_size.get(max(by_size, default=0), {})
    looked = [relooks[n] for n in ("relook_2cpu", "relook_1cpu") if n in relooks]
    why = next((w for e in looked if (w := _complete(e))), "" if looked else "not measured")
    if why:
        out[f"a re-look after one new minute in <= {GOAL_RELOOK_S:g} s"] = (None, why)
    else:
        slowest = max(looked, key=lambda e: e["wall_s"])
        out[f"a re-look after one new minute in <= {GOAL_RELOOK_S:g} s"] = (
            all(e["status"] == "ok" for e in looked) and slowest["wall_s"] <= GOAL_RELOOK_S,
            f"{slowest['wall_s']:.2f} s at {label(max(by_size))} rows"
            if slowest["status"] == "ok"
            else slowest["status"],
        )
    joined = at(BIG, "joined_1cpu")
    why = _complete(joined)
    name = f"10M rows with every label joined on 1 CPU in <= {GOAL_1CPU_S:g} s within 1 GiB"
    if why or joined is None:
        out[name] = (None, why or "not measured")
    else:
        # Its memory with the day compacted too, when that was measured.
        after = at(BIG, "compacted_joined_1cpu")
        peak = max(
            joined["peak_mb"], after["peak_mb"] if after and after["status"] == "ok" else 0.0
        )
        out[name] = (
            joined["status"] == "ok" and joined["wall_s"] <= GOAL_1CPU_S and peak <= GOAL_MEMORY_MB,
            f"{joined['wall_s']:.1f} s, peak {peak:.0f} MiB"
            + (
                f" ({after['peak_mb']:.0f} MiB compacted)"
                if after and after["status"] == "ok"
                else ""
            )
            if joined["status"] == "ok"
            else joined["status"],
        )
    counted = [
        (rows, entry)
        for rows, runs in by_size.items()
        for n, entry in runs.items()
        if n.startswith("joined") and entry["status"] == "ok"
    ]
    wrong = [
        f"{entry['labels_reported']} of {entry['labels_expected']:,} at {label(rows)}"
        for rows, entry in counted
        if entry["labels_reported"] != entry["labels_expected"]
    ]
    out["every label joined to its row"] = (
        (None, "not measured")
        if not counted
        else (not wrong, f"measured {wrong[0]}" if wrong else f"{len(counted)} runs")
    )
    every = [
        (rows, name, entry)
        for rows, runs in by_size.items()
        for name, entry in runs.items()
        if "rows_expected" in entry
    ]
    short = [
        f"{entry['rows_reported']} of {entry['rows_expected']:,} rows ({PEERS[name]}, {label(rows)})"
        for rows, name, entry in every
        if entry["status"] == "ok" and entry["rows_reported"] != entry["rows_expected"]
    ]
    more = f", and {len(short) - 1} more run(s) short" if len(short) > 1 else ""
    out["flywheel monitor reported every logged row"] = (
        (None, "not measured")
        if not every
        else (not short, f"reported {short[0]}{more}" if short else f"{len(every)} runs")
    )
    return out


def versus_peers(runs: dict[str, dict[str, Any]]) -> tuple[float | None, str]:
    """Flywheel's rows/s on 2 cores over the faster peer's (a killed peer's rows/s is an upper
    bound, so the ratio a lower one), and which peer; or None and why not."""
    mine = runs.get("flywheel_2cpu")
    why = _complete(mine)
    if why or mine is None:
        return None, why or "not measured"
    timed = {
        n: runs[n]["rows_per_s"]
        for n in ("evidently", "nannyml")
        if runs.get(n, {}).get("rows_per_s")
    }
    if not timed or not mine.get("rows_per_s"):
        return None, "no peer finished or was stopped"
    faster = max(timed, key=lambda n: timed[n])
    return mine["rows_per_s"] / timed[faster], PEERS[faster]


def table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """One row per peer: wall, rows/s, peak memory, Flywheel's (2 cores) rows/s over the
    peer's, and how it ended."""
    head = f"{'peer':42} {'wall s':>8} {'rows/s':>11} {'peak MiB':>9} {'Flywheel x':>10}  status"
    lines = [head, "-" * len(head)]
    mine = (runs.get("flywheel_2cpu") or {}).get("rows_per_s")
    for name, what in PEERS.items():
        entry = runs.get(name)
        if entry is None:
            lines.append(f"{what:42} {'not run':>8}")
            continue
        speed = entry["rows_per_s"]
        bound = "<" if speed and entry["status"].startswith("killed") else ""
        ratio = (
            f"{'>' if bound else ''}{mine / speed:.1f}x"
            if mine and speed and name in PEER_VENVS
            else "-"
        )
        status = entry["status"]
        if "rows_expected" in entry and entry["status"] == "ok":
            status = f"ok, reported {entry['rows_reported']} of {entry['rows_expected']:,} rows"
        lines.append(
            f"{what:42} {entry['wall_s']:8.1f} {bound + (f'{speed:,.0f}' if speed else '-'):>11} "
            f"{entry['peak_mb']:9.0f} {ratio:>10}  {status}"
        )
    return lines


def report(checked: dict[str, tuple[bool | None, str]]) -> list[str]:
    """Each goal, met or MISSED, with its figure."""
    words = {True: "met", False: "MISSED", None: "unknown"}
    return [f"{words[ok]:>12}  {name}: {detail}" for name, (ok, detail) in checked.items()]


def last_line(by_size: dict[int, dict[str, dict[str, Any]]]) -> dict[str, float | None]:
    """The JSON line's figures: each peer's wall, rows/s and peak memory at each size, and the
    ratios the goals judge."""
    out: dict[str, float | None] = {}
    for rows, runs in by_size.items():
        for name, entry in runs.items():
            for key in ("wall_s", "rows_per_s", "peak_mb"):
                value = entry.get(key)
                out[f"{name}_{label(rows)}_{key}"] = None if value is None else round(value, 3)
    ratio, _ = versus_peers(by_size.get(MIDDLE, {}))
    out["vs_faster_peer_1m"] = None if ratio is None else round(ratio, 3)
    return out


# --- the run ------------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    """--rows: comma-separated row counts (100000, 1_000_000, 100k, 1m)."""
    out = []
    for part in text.split(","):
        word = part.strip().lower().replace("_", "")
        scale = {"k": 1000, "m": 1_000_000}.get(word[-1:], 1)
        out.append(int(word.rstrip("km")) * scale)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows",
        type=sizes,
        default=list(SIZES),
        help="logged rows in the day, per size: 100k,1m,10m",
    )
    parser.add_argument(
        "--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS)
    )
    parser.add_argument("--minutes", type=int, default=MINUTES, help="minutes of the day logged")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--project", type=Path, help="a work folder kept by --keep: skip simulating"
    )
    args = parser.parse_args(argv)
    chosen = [p for p in PEERS if p in args.peers.split(",")]
    began = time.perf_counter()
    work = (
        args.project.resolve()
        if args.project
        else Path(tempfile.mkdtemp(prefix="flywheel-bench-monitor-"))
    )
    logs_dir = args.out / "monitor"
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    described: dict[int, str] = {}
    try:
        project = simulate(work)
        compile_sources()
        scorer = predictor(project)
        reference, scored = write_references(project, scorer)
        for rows in args.rows:
            folder = work / label(rows)
            folder.mkdir(parents=True, exist_ok=True)
            print(f">> logging {rows:,} rows of {project.day} into {folder}", flush=True)
            started = time.perf_counter()
            logs = log_day(project, scorer, rows, folder / "store", args.seed, args.minutes)
            described[rows] = (
                f"{rows:,} rows in {len(logs.files):,} prediction files ({logs.bytes / 2**20:,.0f} MiB "
                f"with {logs.labelled:,} labels as feedback), logged in "
                f"{time.perf_counter() - started:.0f} s; the re-look adds {logs.minute_rows:,} rows"
            )
            print(f">> {described[rows]}", flush=True)
            spec = folder / "peers.json"
            spec.write_text(json.dumps(peer_spec(project, logs, reference, scored)))
            warm(logs.files)
            runs: dict[str, Measured] = {}
            for name, cpus in (("flywheel_2cpu", None), ("flywheel_1cpu", {0})):
                if name in chosen:
                    print(f">> {label(rows)}: {PEERS[name]}", flush=True)
                    runs |= run_flywheel(project, logs, name, cpus, folder)
            for name in ("evidently", "nannyml"):
                if name in chosen:
                    print(f">> {label(rows)}: {PEERS[name]}", flush=True)
                    runs[name] = run_peer(name, spec, folder)
            for name, run in runs.items():
                (logs_dir / label(rows)).mkdir(parents=True, exist_ok=True)
                (logs_dir / label(rows) / f"{name}.log").write_text(run.output)
            by_size[rows] = {
                n: e
                for n, e in figures(runs, rows, logs.minute_rows, logs.labelled).items()
                if n in chosen or n.startswith("relook")
            }
            if not args.keep:
                shutil.rmtree(logs.store, ignore_errors=True)
    finally:
        if args.keep or args.project:
            print(f">> kept {work} (--project {work} reuses its simulation)", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"\none day-window of one-row requests, {WORKERS} workers logging a Parquet file a "
        f"minute each; each peer a subprocess on the same files; {hardware()}; "
        f"{(time.perf_counter() - began) / 60:.1f} min in all"
    )
    print(
        "references: the version's contract batches (drift); its evaluation's newest batch "
        "with labels and the model's scores (NannyML's CBPE)"
    )
    for rows, runs in by_size.items():
        print(f"\n{described[rows]}:\n")
        for line in table(runs):
            print(line)
        for name in ("evidently", "nannyml"):
            entry = runs.get(name, {})
            if "found" in entry:
                print(
                    f"{PEERS[name]}: {entry['found']} (read {entry['read_s']:.1f} s, "
                    f"analysed {entry['analyse_s']:.1f} s)"
                )
    print()
    for line in report(goals(by_size)):
        print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "monitor.json").write_text(
        json.dumps(
            {"hardware": hardware(), "sizes": {str(k): v for k, v in by_size.items()}}, indent=2
        )
    )
    print(f"\nwrote {args.out / 'monitor.json'} and each run's output in {logs_dir}")
    print(json.dumps(last_line(by_size)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
