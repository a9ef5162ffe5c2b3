"""`flywheel simulate`: the whole level-2 loop, day by day, on a simulated clock.

Each simulated day, into one store under `root`, as production does it:

1. the day's batch arrives (the generator's scenario; `broken_upstream` writes one corrupt
   batch on the change day) and is checked against production's contract;
2. its traffic is served through the real serving class in-process (`serve_day`), and the
   labels of the day `label_delay` before come back as Seldon feedback; with `servers=True`,
   over HTTP through the gateway to a seldon-core microservice serving production
   (`simulation.production`: started once after the warm-up, replaced by the next day after
   a promotion, stamping its logs with the simulated time of each request);
3. monitoring runs at the end of the day, and the policy decides (`simulation.world`): the
   trigger engine (`triggers`), the engine without its schedule (`signals`), every seventh
   day on the schedule's days (`schedule`), every day (`daily`) or `never`; `schedule` and
   `daily` go through the engine as forced checks so that every decision is recorded alike;
4. a firing runs the pipeline's step functions in this process (`runs.run_in_process`: the
   same functions kfp.local runs, without a subprocess per step, so 60 days fit in minutes)
   with the decision's reason; the gate decides, and a registered candidate goes through the
   real RolloutController on a driver replaying that day's requests through the real serving
   class for both sides (`simulation.canary`), then is promoted or rolled back; the canary's
   day is replayed in-process on the simulated clock, with `servers=True` too;
5. `bad_candidate` registers a deliberately faulty version on the change day
   (`rollout.faults.register_faulty`), which the same canary analysis must roll back.

Each day also records the oracle's figure on the rows production was judged on
(`simulation.oracle`: the generator's own probabilities, an upper bound by construction).

Versions and alias moves are stamped with the simulated time (`registry.stamped_by`), so the
model's age is the simulated one. After each complete day the timeline is rewritten
atomically to `root/timeline.json`; `resume=True` carries on from the last complete day, and a
day that was half done is redone (its prediction log, feedback and monitoring records are
removed first, and so are the engine's decision and run of that day, which would hold the
redone day back; versions stay, and a version trained again is found by its fingerprint).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time as clock
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from threadpoolctl import threadpool_limits

from flywheel import batches, contract, runs, synthetic, validation
from flywheel.config import Scenario as GeneratorScenario
from flywheel.config import Settings, Task
from flywheel.errors import FlywheelError
from flywheel.monitoring.logs import Skipped, read_predictions
from flywheel.monitoring.monitor import monitor
from flywheel.monitoring.records import latest_records
from flywheel.registry import PRODUCTION, Registry, stamped_by
from flywheel.rollout.faults import Kind
from flywheel.simulation import oracle
from flywheel.simulation.canary import _canary
from flywheel.simulation.production import _Production
from flywheel.simulation.traffic import SimulationError, _requests, serve_day
from flywheel.simulation.world import (
    POLICIES,
    SCENARIOS,
    SCHEDULE_DAYS,
    Policy,
    _end_of,
    _World,
    policy_settings,
    world_settings,
)
from flywheel.stores import Stores
from flywheel.triggers import engine

if TYPE_CHECKING:
    import pandas as pd

STATE_FILE = "timeline.json"
DAY_MARK = "day-in-progress.json"
# What a corrupt upstream day looks like (broken_upstream), and the faulty version of
# bad_candidate: nulls a producer lets through, a model trained on shuffled labels.
BROKEN_BATCH: GeneratorScenario = "broken_nulls"
FAULTY_KIND: Kind = "shuffled"


class DayRecord(BaseModel):
    """What one simulated day did."""

    model_config = ConfigDict(frozen=True)

    index: int
    day: date
    production: str | None  # version serving at the end of the day
    # Production's performance on the day's served rows against their true labels: accuracy
    # for a classifier, mean absolute error for a regression (Timeline.metric). Timelines
    # written before the tasks call it accuracy.
    performance: float | None = Field(validation_alias=AliasChoices("performance", "accuracy"))
    rows: int
    refused: int
    batch_blocked: bool  # the day's batch failed production's contract
    drift: dict[str, float]  # per-feature PSI of the day's monitoring window
    drifted_share: float | None
    decision: dict[str, Any] | None  # {"fired", "reason", "blocked_by", "record"}
    # {"run_id", "reason", "registered", "blessed"}, and "refused_by" (the gate's failed checks)
    # or "error" (why the run failed, in one line)
    run: dict[str, Any] | None
    rollout: dict[str, Any] | None  # {"version", "phase", "reason"}
    model_age_days: float | None
    # The oracle's figure on the rows `performance` was judged on (simulation.oracle); None on
    # a day without one, and in timelines written before it was kept.
    oracle: float | None = None
    # How many rows both were judged on: the answered rows with a usable label (None in
    # timelines written before it was kept, where `rows` stands for it).
    judged: int | None = None


class Timeline(BaseModel):
    """Every simulated day of one simulation, in order."""

    task: Task = "binary"
    scenario: str
    seed: int
    days: int
    policy: Policy
    change_day: int
    label_delay: int
    traffic: int
    records: list[DayRecord]
    wall_seconds: float

    @property
    def metric(self) -> str:
        """What the days' performance is: accuracy, or a regression's mean absolute error."""
        return "mae" if self.task == "regression" else "accuracy"

    @property
    def oracle(self) -> list[float | None]:
        """The oracle's figure of each day (None on a day without one, and in timelines
        written before it was kept)."""
        return [record.oracle for record in self.records]

    @property
    def lower_is_better(self) -> bool:
        """Whether a smaller daily performance is a better model (an error)."""
        return self.task == "regression"


def _check_arguments(days: int, scenario: str, policy: str, label_delay: int, traffic: int) -> None:
    if scenario not in SCENARIOS:
        raise SimulationError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    if days <= 0:
        raise SimulationError(f"days must be 1 or more, not {days}")
    if policy not in POLICIES:
        raise SimulationError(f"unknown policy {policy!r}: one of {', '.join(POLICIES)}")
    if label_delay < 0:
        raise SimulationError(f"label delay must be 0 days or more, not {label_delay}")
    if traffic < 1:
        raise SimulationError(f"traffic must be 1 row a day or more, not {traffic}")


def simulate(
    settings: Settings,
    *,
    root: Path,
    days: int,
    scenario: str,
    seed: int = 0,
    label_delay: int = 2,
    traffic: int = 2000,
    policy: Policy = "triggers",
    servers: bool = False,
    resume: bool = False,
    on_day: Callable[[DayRecord], None] | None = None,
) -> Timeline:
    """Play `days` days of `scenario` under `policy` into `root`; the timeline of every day.

    The change day is `settings.data.generator.change_day`, counted from the first simulated
    day (the warm-up window of `data.window_days` days comes before it). `servers` serves each
    day's traffic through the gateway and a seldon-core microservice (under `root/serve`,
    all stopped when this returns or is interrupted) instead of the class in-process.
    """
    _check_arguments(days, scenario, policy, label_delay, traffic)
    if servers:
        from flywheel.rollout.local import serving_python

        serving_python()  # no serving virtualenv: refused before anything is written
    started = clock.monotonic()
    root = root.resolve()
    state = root / STATE_FILE
    if resume:
        if not state.is_file():
            raise SimulationError(f"nothing to resume: {state} does not exist")
        timeline = Timeline.model_validate_json(state.read_text())
        asked = (scenario, seed, policy, label_delay, traffic)
        found = (timeline.scenario, timeline.seed, timeline.policy, timeline.label_delay)
        if asked != (*found, timeline.traffic):
            raise SimulationError(
                f"{root} holds a simulation of {timeline.scenario} (seed {timeline.seed}, policy "
                f"{timeline.policy}, label delay {timeline.label_delay}, traffic "
                f"{timeline.traffic}): resume it with the same options"
            )
        world_config = Settings.from_json((root / "settings.json").read_text())
        timeline = timeline.model_copy(update={"days": days})
    else:
        if root.exists() and any(root.iterdir()):
            raise SimulationError(
                f"{root} is not empty: resume the simulation there (--resume) or choose another"
            )
        world_config = world_settings(
            policy_settings(settings, policy), root, scenario, seed, label_delay
        )
        timeline = Timeline(
            task=settings.data.generator.task,
            scenario=scenario,
            seed=seed,
            days=days,
            policy=policy,
            change_day=settings.data.generator.change_day,
            label_delay=label_delay,
            traffic=traffic,
            records=[],
            wall_seconds=0.0,
        )
    warmup = world_config.data.window_days
    world = _World(
        settings=world_config,
        stores=Stores(world_config),
        root=root,
        scenario=scenario,
        seed=seed,
        policy=policy,
        change_day=timeline.change_day,
        label_delay=label_delay,
        traffic=traffic,
        first_day=world_config.data.generator.start_date + timedelta(days=warmup),
    )
    spent = timeline.wall_seconds
    if not resume:
        root.mkdir(parents=True, exist_ok=True)
        _write_atomically(root / "settings.json", world_config.to_json())
        with threadpool_limits(limits=1, user_api="openmp"):
            _warm_up(world)
        _save(state, timeline)
    else:
        _redo_half_done(world, len(timeline.records))
    with contextlib.ExitStack() as stack:
        started_servers = stack.enter_context(_Production(world)) if servers else None
        for index in range(len(timeline.records), days):
            _write_atomically(root / DAY_MARK, json.dumps({"index": index}))
            # One OpenMP thread for the whole day, training included: beside other busy
            # processes, scikit-learn's thread per core spun so that one fit took 240 s, not 7.
            with threadpool_limits(limits=1, user_api="openmp"):
                record = _play_day(world, index, started_servers)
            timeline.records.append(record)
            timeline.wall_seconds = round(spent + clock.monotonic() - started, 3)
            _save(state, timeline)
            (root / DAY_MARK).unlink(missing_ok=True)
            if on_day is not None:
                on_day(record)
    timeline.wall_seconds = round(spent + clock.monotonic() - started, 3)
    _save(state, timeline)
    return timeline


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _save(path: Path, timeline: Timeline) -> None:
    _write_atomically(path, timeline.model_dump_json(indent=1))


# --- the warm-up: a production model trained on the window before day 0 ---------------


def _warm_up(world: _World) -> None:
    """Write the batches of the window before the first day and register v1 in production,
    as a first run at the end of the last warm-up day."""
    settings, stores = world.settings, world.stores
    generator = settings.data.generator
    for index in range(settings.data.window_days):
        day = generator.start_date + timedelta(days=index)
        stores.source.write(day, synthetic.generate_day(day, generator), _format(settings))
    end = _end_of(world.first_day - timedelta(days=1))
    decision = engine.check(
        settings,
        stores.registry,
        stores.source,
        now=end,
        force="simulation warm-up: the first model",
    )
    run = _run(world, decision, "sim-warm-up", end)
    if not run.get("registered"):
        raise SimulationError(
            f"the warm-up run registered no model: {run.get('error') or 'the gate refused it'}"
        )


def _format(settings: Settings) -> str:
    return "csv" if settings.data.format == "csv" else "parquet"


# --- one day ---------------------------------------------------------------------------


def _play_day(world: _World, index: int, servers: _Production | None = None) -> DayRecord:
    settings = world.settings
    registry, source = world.stores.registry, world.stores.source
    day = world.day(index)
    end = _end_of(day)
    generator = settings.data.generator
    if world.scenario == "broken_upstream" and index == world.change_day:
        generator = broken = generator.model_copy(update={"scenario": BROKEN_BATCH})
        if not any(b.day == day for b in source.available()):
            source.write(day, synthetic.generate_day(day, broken), _format(settings))
    serving = registry.lookup(PRODUCTION)
    served = serve_day(
        settings,
        registry,
        source,
        day,
        version=serving,
        rows=world.traffic,
        label_delay_days=world.label_delay,
        seed=world.seed,
        gateway=servers.gateway(serving) if servers is not None else None,
    )
    batch = next(b for b in source.available() if b.day == day)
    frame = batches.parse(batch.name, source.store.read(batch.key))
    parts = _requests(frame, day, world.traffic, world.seed)
    refused = sum(len(part) for rid, part in parts if rid in served.rejected)
    with threadpool_limits(limits=1, user_api="openmp"):
        blocked = _blocked(settings, registry, served.version, frame, batch.name)
        performance, judged = _performance(settings, registry, served.version, day, frame, parts)
    best = oracle.on_rows(generator, day, judged)

    rollout: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    if world.scenario == "bad_candidate" and index == world.change_day:
        run, rollout = _bad_candidate(world, registry, parts, end)

    # One OpenMP thread when scoring, as serving runs (serve_day): re-scoring a few hundred rows
    # with a thread per core took a second a window on a busy machine.
    with threadpool_limits(limits=1, user_api="openmp"):
        decision = _decide(world, index, end)
        if decision is None:
            monitor(
                settings,
                registry,
                source,
                until=end,
                versions=[served.version],
                record=True,
                now=end,
                cache=world.windows,
            )
        # else the engine ran monitoring first: its records at `end` are stored (a second
        # monitoring at the same time would find them there)
    midnight = end - timedelta(days=1)
    window = next(
        (
            r
            for r in latest_records(
                registry.store, settings.model_name, served.version, settings.monitoring.window
            )
            if r.start == midnight and r.computed_at == end
        ),
        None,
    )
    drift = {f.feature: round(f.result.psi, 4) for f in window.features} if window else {}

    if decision is not None and decision.fired:
        policy_run = _run(world, decision, _run_id(day), end)
        version = policy_run.get("registered")
        production = registry.resolve(PRODUCTION)
        if version and version != production:
            earlier = rollout
            rollout = _canary(world, registry, version, parts, end)
            if earlier is not None:
                rollout["earlier"] = earlier
        if run is not None:
            policy_run["earlier"] = run
        run = policy_run

    production = registry.resolve(PRODUCTION)
    age = None
    if production is not None:
        created = datetime.fromisoformat(registry.manifest(production).created_at)
        age = round((end - created).total_seconds() / 86_400, 3)
    return DayRecord(
        index=index,
        day=day,
        production=production,
        performance=performance,
        rows=served.rows,
        refused=refused,
        judged=len(judged),
        batch_blocked=blocked,
        drift=drift,
        drifted_share=window.drifted_share if window else None,
        decision=None
        if decision is None
        else {
            "fired": decision.fired,
            "reason": decision.reason,
            "blocked_by": decision.blocked_by,
            "record": decision.record,
        },
        run=run,
        rollout=rollout,
        model_age_days=age,
        oracle=best,
    )


def _blocked(
    settings: Settings, registry: Registry, version: str, frame: pd.DataFrame, name: str
) -> bool:
    """Whether the day's batch fails production's contract (the pipeline's validate step)."""
    reference = contract.Contract.from_json(registry.read(version, "contract.json"))
    check = validation.check_batch(frame, reference, settings.contract, name)
    return any(f.severity == "error" for f in check.findings)


def _performance(
    settings: Settings,
    registry: Registry,
    version: str,
    day: date,
    frame: pd.DataFrame,
    parts: list[tuple[str, pd.DataFrame]],
) -> tuple[float | None, list[int]]:
    """The served version's performance on the day's answered rows, against their true labels:
    a classifier's accuracy (its most probable class), a regression's mean absolute error; and
    the positions in `frame` (the day's batch, which `parts` were cut from) of the rows judged."""
    import numpy as np
    import pandas as pd

    from flywheel import contract
    from flywheel.serving.judgement import predicted_code

    problem = contract.Contract.from_json(registry.read(version, "contract.json")).problem
    midnight = datetime.combine(day, time(), tzinfo=UTC)
    logged = read_predictions(
        registry.store,
        settings.model_name,
        [version],
        midnight,
        midnight + timedelta(days=1),
        Skipped(),
    )
    outputs = {p.request_id: p.outputs for p in logged}
    total, sum_ = 0, 0.0
    judged: list[int] = []
    for rid, part in parts:
        answered = outputs.get(rid)
        if answered is None or settings.features.label not in part:
            continue
        labels = part[settings.features.label]
        # Each row's truth, read once per request: a class code, or the label as a number.
        if problem.is_classifier:
            known = problem.known(labels)
            truth = np.full(len(labels), -1.0)
            truth[known] = problem.codes(labels[known])
        else:
            truth = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=float)
            known = np.isfinite(truth)
        positions = frame.index.get_indexer(part.index)
        for row, true, usable, at in zip(answered, truth, known, positions, strict=False):
            if not usable or not all(math.isfinite(v) for v in row):
                continue
            judged.append(int(at))
            if problem.is_classifier:  # judged as serving judges a feedback
                sum_ += float(predicted_code(row, problem) == true)
            else:
                sum_ += abs(float(row[0]) - true)
            total += 1
    return (round(sum_ / total, 4) if total else None), judged


def _run_id(day: date) -> str:
    return f"sim-{day.isoformat()}"


def _decide(world: _World, index: int, end: datetime) -> engine.Decision | None:
    """The policy's decision at the end of day `index`, recorded by the trigger engine."""
    settings, stores = world.settings, world.stores
    if world.policy in ("triggers", "signals"):  # signals: its settings have no schedule
        return engine.check(settings, stores.registry, stores.source, now=end, cache=world.windows)
    if world.policy == "daily":
        return engine.check(
            settings,
            stores.registry,
            stores.source,
            now=end,
            force="policy daily: retrain every day",
            cache=world.windows,
        )
    if world.policy == "schedule" and world.scheduled(index):
        return engine.check(
            settings,
            stores.registry,
            stores.source,
            now=end,
            force=f"policy schedule: retrain every {SCHEDULE_DAYS} days",
            cache=world.windows,
        )
    return None


def _run(world: _World, decision: engine.Decision, run_id: str, end: datetime) -> dict[str, Any]:
    """The pipeline's steps in this process on the decision's reason, marked in the engine's
    books; what it registered."""
    settings = world.settings
    work = world.root / "runs" / run_id
    shutil.rmtree(work, ignore_errors=True)
    engine.run_started(world.stores.ledger, decision, run_id, now=end)
    out: dict[str, Any] = {
        "run_id": run_id,
        "reason": decision.reason,
        "registered": None,
        "blessed": False,
    }
    succeeded = False
    blessed: bool | None = None
    try:
        with stamped_by(lambda: end):
            result = runs.run_in_process(
                settings,
                work,
                stores=world.stores,
                run_id=run_id,
                reason=decision.reason,
                decision=decision.record,
            )
        out["blessed"] = bool(result.blessed)
        out["registered"] = result.version or None
        if result.blessed is False:
            gate = json.loads((work / "decision.json").read_text())
            out["refused_by"] = [c["detail"] for c in gate["checks"] if not c["passed"]]
        out["seconds"] = round(sum(result.seconds.values()), 3)
        succeeded, blessed = True, result.blessed
    except FlywheelError as error:
        out["error"] = " ".join(str(error).split())[:300]
    finally:
        # Also when interrupted: a run marked finished no longer blocks the next one.
        # The gate's verdict too: a refused run leaves production's evidence standing.
        engine.run_finished(
            world.stores.ledger, run_id, succeeded=succeeded, blessed=blessed, now=end
        )
    return out


def _bad_candidate(
    world: _World, registry: Registry, parts: list[tuple[str, pd.DataFrame]], end: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Register a deliberately faulty version, and put it through the canary."""
    from flywheel.rollout.faults import register_faulty

    with stamped_by(lambda: end):
        version = register_faulty(world.settings, registry, world.stores.source, FAULTY_KIND)
    run = {
        "run_id": f"faulty-{FAULTY_KIND}",
        "reason": f"bad_candidate: a faulty version ({FAULTY_KIND} labels) registered by hand",
        "registered": version,
        "blessed": False,
    }
    return run, _canary(world, registry, version, parts, end)


# --- resuming ----------------------------------------------------------------------------


def _redo_half_done(world: _World, index: int) -> None:
    """Remove what a day interrupted half way wrote to the logs, so that it can be redone."""
    mark = world.root / DAY_MARK
    if not mark.is_file() or json.loads(mark.read_text()).get("index") != index:
        return
    settings, store = world.settings, world.stores.models
    day = world.day(index)
    stamp = _end_of(day).strftime("%Y%m%dT%H%M%S%fZ")
    for prefix in ("predictions", "feedback"):
        for key in store.list(f"{prefix}/{settings.model_name}"):
            if f"/{day.isoformat()}/" in key:
                store.delete(key)
    for key in store.list(f"monitoring/{settings.model_name}"):
        if key.endswith(f"/{stamp}.json"):
            store.delete(key)
    # The engine's books of that day: its decision and its run, marked failed when interrupted,
    # would otherwise hold the redone day back (the run's cooldown, evidence counted once).
    triggers = f"triggers/{settings.model_name}"
    for key in store.list(f"{triggers}/decisions"):
        if key.rsplit("/", 1)[-1].startswith(stamp):
            store.delete(key)
    for key in store.list(f"{triggers}/runs/{_run_id(day)}"):
        store.delete(key)
