"""A large store for `make bench-ui`, made in seconds from a small real one.

The seed is a short `flywheel simulate` (3 days, a retrain a day, a bad candidate rolled
back): every object in it was written by the real code, so it holds each format the UI
parses. `generate` clones it into the history of one model, a version a day:

- `versions` complete versions laid out as the registry writes them (claim, files,
  manifest.json last); metrics, gate decision, lineage and evaluation rewritten with each
  version's numbers, ids and dates; the files no page reads per version (the model, its
  scorer, the evaluation report, the contract) hard links to the seed's;
- the candidate alias moved to every version, production to every one promoted;
- `rollouts` rollouts, one per version (the first deployed directly, every seventh canary
  rolled back, the rest promoted): their state revisions under rollouts/<model>/ and their
  records (start, looks, steps, end) under the canary's records/, as the controller writes;
- `windows` window records: each day's window of the version then in production, looked at
  again and again as the day goes on and its labels arrive;
- the trigger engine's decisions of the newest `decisions` days, and the newest `runs` run
  records (every version's run, and every tenth day a run the gate refused).

`cached` keeps what it made under ~/.cache/flywheel/bench-ui, keyed by GENERATOR (bump it
when the output changes), the sizes and the store's URI (records name other records'
locations); `upload` copies it into any store, in parallel.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.monitoring.records import record_key
from flywheel.monitoring.window import WindowReport
from flywheel.registry import AliasState, Manifest
from flywheel.rollout.state import RolloutState
from flywheel.triggers.ledger import RunFinished, RunStarted

if TYPE_CHECKING:
    from flywheel.storage import ObjectStore

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "flywheel" / "bench-ui"
# The generator's version: in every cache key, so that a change to what it writes is a new key.
GENERATOR = "2"
SEED_DAYS = 3
END = datetime(2026, 11, 30, tzinfo=UTC)  # the history's last day starts here
# The newest version has served this many days by END: a production of three months, more
# windows than the monitoring page shows at once.
SERVED_DAYS = 90
ROLLED_BACK_EVERY = 7
REFUSED_EVERY = 10
RECORD_SECONDS = 20  # between two records of a rollout
LABELS_HOURS = 36  # a day's window is looked at until its labels are in
# A version's files each page may read, rewritten per version; the others are linked.
REWRITTEN = ("metrics.json", "decision.json", "lineage.json", "evaluation.json")
STAMP = "%Y%m%dT%H%M%S%fZ"
VARIANTS = 8  # differently jittered copies of each rollout record, drawn from
# Times no record holds, written in a window record's text and then replaced.
PLACEHOLDER_TIMES = tuple(datetime(1901, 1, day, tzinfo=UTC) for day in (1, 2, 3))
Json = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """How much history to make."""

    versions: int = 1000
    rollouts: int = 1000
    windows: int = 10_000
    decisions: int = 500
    runs: int = 500

    def key(self) -> str:
        """The sizes in a cache key."""
        return "-".join(str(value) for value in asdict(self).values())


@dataclass(frozen=True)
class Made:
    """A generated store, and the ids its pages are asked about."""

    root: Path
    model: str
    versions: list[str]  # oldest first
    production: str
    rollouts: list[str]  # oldest first
    runs: list[str]  # run ids in the ledger whose run registered a version, oldest first
    objects: int

    def save(self) -> None:
        """Keep the ids beside the store (outside it: the store is its `store` folder)."""
        meta = {k: v for k, v in asdict(self).items() if k != "root"}
        (self.root.parent / "made.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, root: Path) -> Made:
        """What `save` kept for the store at `root`."""
        return cls(root=root, **json.loads((root.parent / "made.json").read_text()))


# --- the seed ---------------------------------------------------------------------


def flywheel(*args: str) -> list[str]:
    """The command running `flywheel` with the repository's flywheel.yaml."""
    return [sys.executable, "-m", "flywheel.cli", "--config", str(REPO / "flywheel.yaml"), *args]


def environment() -> dict[str, str]:
    """This process's environment without FLYWHEEL_* settings: flywheel.yaml's, as given."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}


def seed(cache: Path = CACHE) -> Path:
    """The seed's store: a short simulation, run once (about a minute) and kept."""
    folder = cache / f"seed-{GENERATOR}"
    if (folder / "summary.json").exists():
        return folder / "store"
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f">> simulating the seed store ({SEED_DAYS} days) into {folder}", flush=True)
    command = flywheel(
        "simulate",
        f"--days={SEED_DAYS}",
        "--policy=daily",
        "--scenario=bad_candidate",
        "--change-day=1",
        # Its numbers are cloned, not measured: a small day keeps it to seconds.
        "--traffic=400",
        "--no-oracle",
        f"--out={folder}",
    )
    env = {**environment(), "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    return folder / "store"


@dataclass
class Templates:
    """The seed's objects the clones are made of."""

    model: str
    files: dict[str, bytes]  # a blessed, promoted version's REWRITTEN files
    linked: dict[str, Path]  # and its other files
    manifest: Json
    promoted: list[Json]  # a promoted rollout's records, oldest first
    promoted_states: list[Json]  # and its state revisions
    rolled_back: list[Json]
    rolled_back_states: list[Json]
    window: Json
    decision: Json
    started: Json
    finished: Json
    registration: Json


def _json(path: Path) -> Json:
    data: Json = json.loads(path.read_text())
    return data


def templates(seed_store: Path) -> Templates:
    """The seed's objects: a promoted version's, a promoted and a rolled-back rollout's, one
    window record, one decision, one run's records."""
    (models,) = (seed_store / "models").iterdir()
    model = models.name
    states = [_json(p) for p in sorted((seed_store / "rollouts" / model).glob("*.json"))]
    ended: dict[str, tuple[Path, list[Json]]] = {}
    for folder in sorted((models / "versions").iterdir(), key=lambda p: int(p.name[1:])):
        records = [_json(p) for p in sorted((folder / "records").glob("*.json"))]
        files = _json(folder / "manifest.json")["files"]
        # The promoted version's files are cloned too: one with each of them.
        if records and (records[-1]["kind"] != "rollout-promoted" or set(REWRITTEN) <= set(files)):
            ended[records[-1]["kind"]] = (folder, records)
    if {"rollout-promoted", "rollout-rolled-back"} - set(ended):
        raise RuntimeError(f"{seed_store}: the seed lacks a promoted or a rolled-back rollout")
    version, promoted = ended["rollout-promoted"]
    rolled_back = ended["rollout-rolled-back"][1]
    manifest = _json(version / "manifest.json")

    def of(records: list[Json]) -> list[Json]:
        return [s for s in states if s["rollout_id"] == records[-1]["rollout_id"]]

    def first(pattern: str) -> Json:
        return _json(min(seed_store.glob(pattern)))

    return Templates(
        model=model,
        files={name: (version / name).read_bytes() for name in REWRITTEN},
        linked={name: version / name for name in manifest["files"] if name not in REWRITTEN},
        manifest=manifest,
        promoted=promoted,
        promoted_states=of(promoted),
        rolled_back=rolled_back,
        rolled_back_states=of(rolled_back),
        window=first(f"monitoring/{model}/*/day/*/*.json"),
        decision=first(f"triggers/{model}/decisions/*.json"),
        started=first(f"triggers/{model}/runs/*/started.json"),
        finished=first(f"triggers/{model}/runs/*/finished.json"),
        registration=first("runs/*/registration.json"),
    )


# --- the history ------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One version of the history, and what became of it."""

    number: int
    run_id: str
    created: datetime
    fate: str  # direct, promoted or rolled_back
    stable: str | None  # production when its rollout started

    @property
    def name(self) -> str:
        return f"v{self.number}"

    @property
    def day(self) -> date:
        return self.created.date()


def plan(versions: int) -> list[Version]:
    """A version a day up to SERVED_DAYS before END: the first deployed directly, every
    seventh canary rolled back, the others promoted."""
    first = END - timedelta(days=versions - 1 + SERVED_DAYS)
    history: list[Version] = []
    production: str | None = None
    for n in range(1, versions + 1):
        created = first + timedelta(days=n - 1, hours=1)
        fate = "direct" if n == 1 else "rolled_back" if n % ROLLED_BACK_EVERY == 3 else "promoted"
        history.append(Version(n, f"run-{created:%Y%m%d}-{n:04d}", created, fate, production))
        if fate != "rolled_back":
            production = f"v{n}"
    return history


def _iso(at: datetime, timespec: str = "milliseconds") -> str:
    return at.astimezone(UTC).isoformat(timespec=timespec)


def _z(at: datetime) -> str:
    """A UTC time as pydantic writes a datetime."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def jitter(value: Any, rng: random.Random, scale: float = 0.02) -> Any:
    """A JSON value with every float moved by up to `scale` of itself (counts stay whole)."""
    if isinstance(value, float):
        return value * (1 + rng.uniform(-scale, scale))
    if isinstance(value, list):
        return [jitter(v, rng, scale) for v in value]
    if isinstance(value, dict):
        return {k: jitter(v, rng, scale) for k, v in value.items()}
    return value


def _dump(data: Any) -> bytes:
    """A dict record as the code writes one."""
    return json.dumps(data, indent=2, default=str).encode()


def _fill(text: str, **values: object) -> str:
    """`text` with each "@name@" placeholder (a JSON string) replaced by its value in JSON."""
    for name, value in values.items():
        text = text.replace(f'"@{name}@"', json.dumps(value))
    return text


@dataclass
class Writer:
    """Writes objects below a root directory as a LocalStore lays them out, naming their
    locations in the store they will be read from (`uri`)."""

    root: Path
    uri: str
    count: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(23))
    folders: set[Path] = field(default_factory=set)

    def location(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    def _path(self, key: str) -> Path:
        path = self.root / key
        if path.parent not in self.folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.folders.add(path.parent)
        self.count += 1
        return path

    def write(self, key: str, data: bytes) -> None:
        with open(self._path(key), "wb") as handle:
            handle.write(data)

    def link(self, key: str, source: Path) -> None:
        path = self._path(key)
        try:
            os.link(source, path)
        except OSError:  # another file system
            shutil.copyfile(source, path)


class History:
    """Writes the history of one model, cloned from the seed's templates."""

    def __init__(self, t: Templates, out: Writer, sizes: Sizes) -> None:
        self.t = t
        self.out = out
        self.sizes = sizes
        self.rng = out.rng
        self.prefix = f"models/{t.model}"
        self.plan = plan(sizes.versions)
        self.decisions: dict[date, str] = {}
        self.alias_revisions = {"candidate": 0, "production": 0}
        self.rollout_revision = 0
        self.rollouts: list[str] = []
        self.production: str | None = None
        # Encoding JSON with an indent is slow in Python, and most objects are alike: the big
        # ones are written once as text with placeholders, then filled in by replacing them.
        evaluation = json.loads(t.files["evaluation.json"])
        production = evaluation.get("production") or {}
        self.evaluation = _dump(
            {
                **evaluation,
                "newest_batch": "@batch@",
                "production": production and {**production, "version": "@stable@"},
            }
        ).decode()
        self.records = {
            fate: [(r["kind"], [self._record_text(r) for _ in range(VARIANTS)]) for r in records]
            for fate, records in (("promoted", t.promoted), ("rolled_back", t.rolled_back))
        }
        self.states = {
            fate: [RolloutState.model_validate_json(json.dumps(s)) for s in states]
            for fate, states in (
                ("promoted", t.promoted_states),
                ("rolled_back", t.rolled_back_states),
            )
        }
        self.window = WindowReport.model_validate_json(json.dumps(t.window))
        self.windows_text = [
            self.window.model_copy(
                update={
                    "version": "@version@",
                    "start": PLACEHOLDER_TIMES[0],
                    "end": PLACEHOLDER_TIMES[1],
                    "computed_at": PLACEHOLDER_TIMES[2],
                    "drifted_share": share,
                }
            ).model_dump_json(indent=2)
            for share in (0.0, 0.0, 0.0, 1 / 9)
        ]

    def _record_text(self, record: Json) -> str:
        kind = record["kind"]
        body = jitter(record, self.rng) if kind in ("rollout-look", "rollout-step") else record
        body = {**body, "rollout_id": "@rollout@"}
        if kind in ("rollout-start", "rollout-promoted", "rollout-rolled-back"):
            body["stable"] = "@stable@"
        return _dump(body).decode()

    def write(self) -> Made:
        for v in self.plan[len(self.plan) - self.sizes.decisions :]:
            self.decision(v)
        for v in self.plan:
            self.version(v)
            if len(self.rollouts) < self.sizes.rollouts:
                self.rollout(v)
        self.windows()
        runs = self.runs()
        return Made(
            root=self.out.root,
            model=self.t.model,
            versions=[v.name for v in self.plan],
            production=self.production or "v1",
            rollouts=self.rollouts,
            runs=runs,
            objects=self.out.count,
        )

    # --- the trigger engine's decisions ---------------------------------------------

    def decision(self, v: Version) -> None:
        """The day's decision, which started the run of its version."""
        at = _midnight(v.day)
        key = (
            f"triggers/{self.t.model}/decisions/{at.strftime(STAMP)}-"
            f"{self.rng.getrandbits(32):08x}.json"
        )
        self.decisions[v.day] = key
        body = {
            **self.t.decision,
            "at": _z(at),
            "record": self.out.location(key),
            "version": v.stable or v.name,
            "newest_batch": f"{at - timedelta(days=1):%Y-%m-%d}",
        }
        self.out.write(key, _dump(body))

    # --- versions -------------------------------------------------------------------

    def files(self, v: Version) -> dict[str, bytes]:
        """The version's rewritten files: its numbers, ids and dates."""
        t, rng = self.t, self.rng
        day = f"{v.day - timedelta(days=1):%Y-%m-%d}"
        metrics = jitter(json.loads(t.files["metrics.json"]), rng)
        decision = jitter(json.loads(t.files["decision.json"]), rng, 0.005)
        decision["production_version"] = v.stable
        lineage = json.loads(t.files["lineage.json"])
        trigger = self.decisions.get(v.day)
        lineage.update(
            created_at=_iso(v.created, "seconds"),
            pipeline_run_id=v.run_id,
            trigger={
                **lineage["trigger"],
                "decision": self.out.location(trigger) if trigger else None,
            },
        )
        batches = [
            {**batch, "day": f"{v.day - timedelta(days=i + 1):%Y-%m-%d}"}
            for i, batch in enumerate(reversed(lineage["data"]["batches"]))
        ][::-1]
        lineage["data"] = {
            **lineage["data"],
            "batches": batches,
            "content_hash": hashlib.sha256(f"data {v.name}".encode()).hexdigest(),
        }
        evaluation = _fill(self.evaluation, batch=day, stable=v.stable)
        return {
            "metrics.json": _dump(metrics),
            "decision.json": _dump(decision),
            "lineage.json": _dump(lineage),
            "evaluation.json": evaluation.encode(),
        }

    def version(self, v: Version) -> None:
        """A complete version as `Registry.register` writes it (manifest.json last), its run's
        registration record, and the candidate alias moved to it."""
        t, out = self.t, self.out
        base = f"{self.prefix}/versions/{v.name}"
        out.write(
            f"{base}/claim.json", json.dumps({"run_id": v.run_id, "at": _iso(v.created)}).encode()
        )
        files = self.files(v)
        digests = {}
        for name, digest in t.manifest["files"].items():
            if name in files:
                out.write(f"{base}/{name}", files[name])
                digests[name] = hashlib.sha256(files[name]).hexdigest()
            else:
                out.link(f"{base}/{name}", t.linked[name])
                digests[name] = digest
        metrics = json.loads(files["metrics.json"])
        metric = t.manifest["summary"].get("metric", "roc_auc")
        manifest = Manifest(
            model_name=t.model,
            version=v.name,
            created_at=_iso(v.created),
            run_id=v.run_id,
            fingerprint=hashlib.sha256(f"model {v.name}".encode()).hexdigest(),
            files=digests,
            summary={
                **t.manifest["summary"],
                "newest": metrics.get(f"candidate_newest_{metric}"),
                "holdout": metrics.get(f"candidate_holdout_{metric}"),
                "data_hash": json.loads(files["lineage.json"])["data"]["content_hash"],
            },
        )
        out.write(f"{base}/manifest.json", manifest.model_dump_json(indent=2).encode())
        registration = {
            **t.registration,
            "version": v.name,
            "location": out.location(base),
            "aliases": ["candidate"],
        }
        out.write(f"runs/{v.run_id}/registration.json", _dump(registration))
        previous = f"v{v.number - 1}" if v.number > 1 else None
        self.alias(
            "candidate",
            v.name,
            previous,
            v.created + timedelta(minutes=1),
            f"registered by run {v.run_id}",
        )

    def alias(self, alias: str, version: str, previous: str | None, at: datetime, why: str) -> None:
        self.alias_revisions[alias] += 1
        state = AliasState(
            alias=alias,
            version=version,
            revision=self.alias_revisions[alias],
            previous=previous,
            at=_iso(at),
            actor="flywheel",
            reason=why,
        )
        key = f"{self.prefix}/aliases/{alias}/{state.revision:08d}.json"
        self.out.write(key, state.model_dump_json(indent=2).encode())

    # --- rollouts -------------------------------------------------------------------

    def rollout(self, v: Version) -> None:
        """The version's rollout: its records under the version, its state revisions, and
        production moved when it was promoted."""
        started = v.created + timedelta(minutes=10)
        rollout_id = f"{v.name}-{int(started.timestamp())}"
        self.rollouts.append(rollout_id)
        records, states = self._rollout_of(v)
        ended = started
        for i, (kind, variants) in enumerate(records):
            ended = started + timedelta(seconds=RECORD_SECONDS * i)
            text = _fill(self.rng.choice(variants), rollout=rollout_id, stable=v.stable)
            key = f"{self.prefix}/versions/{v.name}/records/{ended.strftime(STAMP)}-{kind}.json"
            self.out.write(key, text.encode())
        for i, state in enumerate(states):
            self.rollout_state(v, state, rollout_id, started, ended, i / max(1, len(states) - 1))
        if v.fate != "rolled_back":
            why = f"rollout: {states[-1].reason}"
            self.alias("production", v.name, self.production, ended, why)
            self.production = v.name

    def _rollout_of(self, v: Version) -> tuple[list[tuple[str, list[str]]], list[RolloutState]]:
        """Its records (kind, texts to choose from) and its state revisions."""
        if v.fate != "direct":
            return self.records[v.fate], self.states[v.fate]
        # Deployed directly (`RolloutController._direct`): saved being promoted, then promoted.
        why = "nothing was in production: the first model goes straight in"
        record = {"kind": "rollout-promoted", "reason": why, "stable": None}
        last = self.states["promoted"][-1].model_copy(
            update={"direct": True, "reason": why, "baseline": None, "step": 0, "weight": 100}
        )
        states = [
            last.model_copy(update={"phase": "progressing", "ending": "promoted"}),
            last.model_copy(update={"phase": "promoted", "ending": "promoted"}),
        ]
        return [("rollout-promoted", [self._record_text(record)])], states

    def rollout_state(
        self,
        v: Version,
        state: RolloutState,
        rollout_id: str,
        started: datetime,
        ended: datetime,
        share: float,
    ) -> None:
        self.rollout_revision += 1
        why = state.reason
        if v.fate != "direct":
            why = why.replace(f"of {state.canary}", f"of {v.name}")
            why = why.replace(f"against {state.stable}", f"against {v.stable}")
        new = state.model_copy(
            update={
                "rollout_id": rollout_id,
                "model_name": self.t.model,
                "canary": v.name,
                "stable": v.stable,
                "step_started": started.timestamp(),
                "started_at": _iso(started, "seconds"),
                "updated_at": _iso(started + (ended - started) * share, "seconds"),
                "revision": self.rollout_revision,
                "reason": why,
            }
        )
        key = f"rollouts/{self.t.model}/{self.rollout_revision:08d}.json"
        self.out.write(key, new.model_dump_json(indent=2).encode())

    # --- monitoring -----------------------------------------------------------------

    def serving(self, at: datetime) -> str:
        """The version in production at `at`: the newest one deployed or promoted before."""
        serving = self.plan[0].name
        for v in self.plan:
            if v.created >= at:
                break
            if v.fate != "rolled_back":
                serving = v.name
        return serving

    def windows(self) -> None:
        """Each day's window of the version in production, looked at `looks` times up to
        LABELS_HOURS after it opened: `windows` records in all."""
        first = self.plan[0].day
        days = [first + timedelta(days=n) for n in range(1, (END.date() - first).days + 1)]
        for index, day in enumerate(days):
            looks = self.sizes.windows // len(days) + (
                1 if index < self.sizes.windows % len(days) else 0
            )
            start = _midnight(day)
            serving = self.serving(start)
            for look in range(looks):
                computed = start + timedelta(hours=LABELS_HOURS) * (look + 1) / looks
                computed = computed.replace(microsecond=0)
                times = (start, start + timedelta(days=1), computed)
                text = _fill(self.rng.choice(self.windows_text), version=serving)
                for placeholder, at in zip(PLACEHOLDER_TIMES, times, strict=True):
                    text = text.replace(f'"{_z(placeholder)}"', f'"{_z(at)}"')
                key = record_key(
                    self.window.model_copy(
                        update={"version": serving, "start": start, "computed_at": computed}
                    )
                )
                self.out.write(key, text.encode())

    # --- the run ledger ---------------------------------------------------------------

    def runs(self) -> list[str]:
        """The newest `runs` run records, started and finished; the ids of those that
        registered a version."""
        every: list[tuple[datetime, str, bool]] = []
        for v in self.plan:
            every.append((v.created - timedelta(minutes=50), v.run_id, True))
            if v.number % REFUSED_EVERY == 0:
                at = v.created + timedelta(hours=12)
                every.append((at, f"run-{at:%Y%m%d}-refused", False))
        kept = every[len(every) - self.sizes.runs :] if self.sizes.runs else []
        prefix = f"triggers/{self.t.model}/runs"
        for at, run_id, registered in kept:
            decision = self.decisions.get(at.date()) if registered else None
            started = RunStarted.model_validate(
                {
                    **self.t.started,
                    "run_id": run_id,
                    "started_at": at,
                    "decision": self.out.location(decision) if decision else "",
                    "newest_batch": f"{at - timedelta(days=1):%Y-%m-%d}",
                }
            )
            finished = RunFinished.of(
                run_id, at + timedelta(minutes=50), succeeded=True, blessed=registered
            )
            for name, entry in (("started", started), ("finished", finished)):
                self.out.write(
                    f"{prefix}/{run_id}/{name}.json", entry.model_dump_json(indent=2).encode()
                )
        return [run_id for _, run_id, registered in kept if registered]


def generate(seed_store: Path, target: Path, uri: str, sizes: Sizes) -> Made:
    """Write the history into the new directory `target`, to be read from `uri`."""
    target.mkdir(parents=True)
    return History(templates(seed_store), Writer(target, uri), sizes).write()


def cached(
    sizes: Sizes, uri: str | None = None, *, cache: Path = CACHE, fresh: bool = False
) -> Made:
    """The store of `sizes` to be read from `uri` (None: where it is kept, a local directory
    store), made once and kept under `cache`."""
    name = hashlib.sha256(f"{GENERATOR} {sizes.key()} {uri}".encode()).hexdigest()[:12]
    folder = cache / f"store-{GENERATOR}-{name}"
    uri = uri or str(folder / "store")
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    if (folder / "made.json").exists():
        return Made.load(folder / "store")
    seed_store = seed(cache)
    print(f">> generating a store of {sizes} into {folder}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="store-", dir=cache))
    try:
        made = generate(seed_store, work / "store", uri, sizes)
        made.save()
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Made.load(folder / "store")


def upload(
    root: Path,
    store: ObjectStore,
    *,
    workers: int = 32,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy every file below `root` into `store` under the same key, `workers` at a time;
    returns how many."""
    keys = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def put(key: str) -> None:
        store.write(key, (root / key).read_bytes())

    with ThreadPoolExecutor(workers) as pool:
        for done, _ in enumerate(pool.map(put, keys), 1):
            if progress is not None and done % 5000 == 0:
                progress(done)
    return len(keys)
