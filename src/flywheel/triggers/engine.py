"""One evaluation of the trigger policy: read, judge every trigger, apply the safeguards, record.

Everything is read before anything is written, so a store that is down gives one
error and no decision record. Monitoring records are used when the newest window
has a fresh one; otherwise monitoring runs first (and records its windows).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from flywheel import batches
from flywheel.config import Settings, TriggerSettings
from flywheel.errors import FlywheelError
from flywheel.evaluation import Evaluation
from flywheel.monitoring import performance as offline_figures
from flywheel.monitoring.cache import WindowCache
from flywheel.monitoring.monitor import monitor
from flywheel.monitoring.performance import Offline
from flywheel.monitoring.reading import MonitoringError, windows
from flywheel.monitoring.records import latest_records
from flywheel.monitoring.window import WindowReport
from flywheel.records import Record
from flywheel.registry import PRODUCTION, Registry, RegistryError
from flywheel.storage import StoreError
from flywheel.triggers import signals
from flywheel.triggers.ledger import Hold, Ledger, Run, RunFinished, RunStarted
from flywheel.triggers.signals import Check, Kind, Production, Severity


class TriggerError(FlywheelError, RuntimeError):
    """The engine could not decide; the message says why, and that nothing was recorded."""


class Firing(Record):
    """One trigger that fired."""

    kind: Kind
    reason: str  # one line, e.g. "drift: income (PSI 0.31 > 0.2) in 2026-01-15"
    severity: Severity
    inputs: dict[str, Any]


class Decision(Record):
    """The outcome of one evaluation, as recorded at `record`."""

    at: datetime
    fired: bool  # a trigger fired and no safeguard blocked it
    reason: str  # the firing(s) joined, or why nothing fired, or what blocked it
    firings: list[Firing]
    blocked_by: str | None
    record: str  # where the create-only decision record is
    checks: list[Check]  # every trigger's verdict, fired or not, with its numbers
    version: str | None  # the production version it judged
    newest_batch: str | None  # the newest batch in the source: new data counts from here


def _production(registry: Registry) -> Production | None:
    version = registry.resolve(PRODUCTION)
    if version is None:
        return None
    manifest = registry.manifest(version)
    newest: date | None = None
    commit = image = digest = None
    try:
        lineage = json.loads(registry.read(version, "lineage.json"))
        commit = lineage.get("git_commit") or None
        image = lineage.get("image") or None
        digest = lineage.get("image_digest") or None
        # Every batch the run read, its test batch too (the contract names the training ones).
        days = [date.fromisoformat(b["day"]) for b in lineage.get("data", {}).get("batches", [])]
        newest = max(days) if days else None
    except (RegistryError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return Production(
        version=version,
        created_at=datetime.fromisoformat(manifest.created_at),
        newest_batch=newest,
        commit=commit,
        image_digest=digest,
        image=image,
    )


def _reports(
    settings: Settings,
    registry: Registry,
    source: batches.BatchSource,
    version: str,
    now: datetime,
    cache: WindowCache | None = None,
) -> list[Any]:
    """The production version's window reports: the stored ones when the newest complete window
    has a record computed after it closed, not after `now`, and within records_max_age_hours;
    else monitoring runs now and records them."""
    policy = settings.monitoring
    spans = windows(now, policy.window, policy.windows)
    stored = {
        r.start: r
        for r in latest_records(registry.store, settings.model_name, version, policy.window)
        # a record computed after `now` (a check replayed in the past) saw later labels
        if spans[0][0] <= r.start and r.end <= spans[-1][1] and r.computed_at <= now
    }
    newest = stored.get(spans[-1][0])
    max_age = timedelta(hours=settings.triggers.records_max_age_hours)
    fresh = (
        newest is not None
        and newest.computed_at >= newest.end
        and now - newest.computed_at <= max_age
    )
    if not fresh:
        try:
            result = monitor(
                settings,
                registry,
                source,
                until=now,
                versions=[version],
                record=True,
                now=now,
                cache=cache,
            )
        except MonitoringError as error:
            raise TriggerError(f"{error}; no decision was recorded") from None
        # The newest look at a window wins; a window monitoring found empty keeps its record.
        stored.update({r.start: r for r in result.reports if r.version == version})
    return [stored[start] for start in sorted(stored)]


# How the performance trigger's firing reads (signals.performance): a version trained on it.
PERFORMANCE_DROP = "performance drop:"


class HeldTo(Record):
    """The offline figure production's performance is held to when its own is not the one."""

    version: str  # whose figure it is: the version production replaced
    offline: Offline
    why: str


def _held_to(registry: Registry, production: Production, task: str) -> HeldTo | None:
    """The figure of the version production replaced, when production was trained on a
    performance drop: its own offline figure was then measured on the changed data it was
    trained across (mostly on the data from before), so a model that learned the change only
    in part would meet it. One version back, no further: the one replaced was held to its own
    figure, and once a version trained on the drop matches it, the level is the world's."""
    try:
        lineage = json.loads(registry.read(production.version, "lineage.json"))
        reason = str((lineage.get("trigger") or {}).get("reason") or "")
        if not any(part.strip().startswith(PERFORMANCE_DROP) for part in reason.split("; ")):
            return None
        own = Evaluation.model_validate_json(registry.read(production.version, "evaluation.json"))
        if own.production is None or own.production.version is None:
            return None
        replaced = own.production.version
        theirs = Evaluation.model_validate_json(registry.read(replaced, "evaluation.json"))
    except (RegistryError, ValidationError, ValueError, TypeError, AttributeError):
        return None
    figure = offline_figures.offline(theirs.candidate, theirs.task)
    if figure is None or theirs.task != task:
        return None
    return HeldTo(
        version=replaced,
        offline=figure,
        why=f"{production.version} was trained on a performance drop: held to the offline "
        f"figure of {replaced}, which it replaced, where higher",
    )


def _performance_reports(
    settings: Settings, reports: list[WindowReport], held: HeldTo | None
) -> list[WindowReport]:
    """The reports the performance trigger judges: with `held`, each window's offline figure
    is the better of its own and the one production is held to (signals.performance_threshold
    draws the bound from it)."""
    policy = settings.triggers.performance
    if held is None or policy is None:
        return reports
    out = []
    for report in reports:
        metric = policy.metric_for(report.task)
        own = report.offline.newest.get(metric) if report.offline else None
        theirs = held.offline.newest.get(metric)
        lower = policy.lower_is_better(report.task)
        if theirs is not None and (own is None or (theirs < own if lower else theirs > own)):
            report = report.model_copy(update={"offline": held.offline})
        out.append(report)
    return out


def _answered(run: Run, now: datetime, timeout: timedelta) -> bool:
    """Whether a run may have answered the evidence it started on: it is in flight, its model
    registered, or nothing said how it ended. One that failed or that the gate refused left
    production as it was."""
    return run.outcome(now, timeout) not in ("failed", "refused")


def _seen(
    settings: Settings, registry: Registry, version: str, since: datetime | None
) -> set[datetime]:
    """The windows whose labels the performance trigger could judge when the run that answered
    the evidence started: what monitoring had recorded by then."""
    policy = settings.triggers.performance
    if policy is None or since is None:
        return set()
    then = latest_records(
        registry.store, settings.model_name, version, settings.monitoring.window, since
    )
    return {r.start for r in then if signals.judgeable(policy, r)}


def _last_start(runs: list[Run], production: Production | None) -> datetime | None:
    if runs:
        return runs[-1].started.started_at
    return production.created_at if production else None


def _since(runs: list[Run], production: Production | None) -> date | None:
    for run in reversed(runs):
        if run.started.newest_batch:
            return date.fromisoformat(run.started.newest_batch)
    return production.newest_batch if production else None


def _judge(
    settings: Settings,
    now: datetime,
    runs: list[Run],
    answered: Run | None,
    production: Production | None,
    days: list[date],
    reports: list[WindowReport],
    seen: set[datetime],
    commit: str | None,
    image: str | None,
    held: HeldTo | None = None,
) -> list[Check]:
    policy = settings.triggers
    spans = [
        start for start, _ in windows(now, settings.monitoring.window, settings.monitoring.windows)
    ]
    checks: list[Check] = []
    if policy.schedule:
        checks.append(signals.schedule(policy.schedule, now, _last_start(runs, production)))
    if policy.new_data:
        checks.append(signals.new_data(policy.new_data, days, _since(runs, production)))
    if production is not None:
        # Evidence counts once, item by item: a window's inputs from when it ended, its labels
        # from when they came back. The newest run that may have answered it saw what was there
        # when it started; a run that failed or was refused answered nothing.
        since = answered.started.started_at if answered else None
        ended = [r for r in reports if since is None or r.end > since]
        if policy.drift:
            checks.append(signals.drift(policy.drift, ended, spans[-policy.drift.windows :]))
        if policy.performance:
            judged = _performance_reports(settings, reports, held)
            check = signals.performance(policy.performance, judged, seen)
            if held is not None and judged != reports:
                check = check.model_copy(
                    update={
                        "reason": check.reason.replace(
                            "(offline ", f"({held.version}'s offline ", 1
                        ),
                        "inputs": {**check.inputs, "held_to": held.version, "why": held.why},
                    }
                )
            checks.append(check)
        if policy.estimated_performance:
            k = policy.estimated_performance.windows
            checks.append(
                signals.estimated_performance(policy.estimated_performance, ended, spans[-k:])
            )
    if policy.code_change:
        started = [(r.started.commit, r.started.image) for r in runs]
        checks.append(signals.code_change(policy.code_change, production, commit, image, started))
    return checks


def _cooling(policy: TriggerSettings, now: datetime, runs: list[Run], kind: Kind) -> Run | None:
    """The newest run within the cooldown that started on this kind of trigger; a run a person
    started (by hand, or forced) or whose kinds were not kept holds back every kind."""
    cooldown = timedelta(hours=policy.cooldown_hours)
    for run in reversed(runs):
        if now - run.started.started_at >= cooldown:
            return None
        kinds = run.started.kinds
        if kinds is None or "manual" in kinds or kind in kinds:
            return run
    return None


def _cooldown(
    policy: TriggerSettings, now: datetime, runs: list[Run], firings: list[Firing]
) -> str | None:
    """Why every firing is held back by the cooldown, or None. A low-severity trigger waits only
    after a run started on the same kind: a run started on something else (the schedule, a
    commit) never saw the evidence that appeared after it."""
    if any(f.severity == "high" for f in firings):
        return None
    cooled = [(f, run) for f in firings if (run := _cooling(policy, now, runs, f.kind))]
    if len(cooled) < len(firings):
        return None
    firing, run = min(cooled, key=lambda c: c[1].started.started_at)
    until = run.started.started_at + timedelta(hours=policy.cooldown_hours)
    return (
        f"cooldown until {until:%Y-%m-%d %H:%M} UTC (after run {run.started.run_id}"
        + (
            f" on {firing.kind.replace('_', ' ')})"
            if firing.kind in (run.started.kinds or ())
            else ")"
        )
        + _by_hand(run)
    )


def _refused(runs: list[Run], days: list[date], firings: list[Firing]) -> str | None:
    """Why a retry waits: the gate refused the last run's model, and no batch is newer than the
    ones it read, so a retry would learn the same. New code (a commit, an image) may not."""
    if not runs or any(f.kind == "code_change" for f in firings):
        return None
    last = runs[-1]
    read = last.started.newest_batch
    if last.finished is None or last.finished.outcome != "refused" or read is None:
        return None
    if days and days[-1] > date.fromisoformat(read):
        return None
    return (
        f"the gate refused run {last.started.run_id} on the batches to {read}: "
        "waiting for a newer one"
    )


def _blocked(
    settings: Settings,
    now: datetime,
    runs: list[Run],
    days: list[date],
    held: Hold | None,
    firings: list[Firing],
    forced: bool,
) -> str | None:
    """The first safeguard that holds these firings back, or None."""
    policy = settings.triggers
    if held is not None:
        return f"held since {held.at:%Y-%m-%d %H:%M} UTC: {held.reason}"
    timeout = timedelta(hours=policy.run_timeout_hours)
    for run in reversed(runs):
        if run.in_flight(now, timeout):
            return (
                f"run {run.started.run_id} in flight since {run.started.started_at:%Y-%m-%d %H:%M}"
                + _by_hand(run)
            )
    if forced:
        return None
    today = [r for r in runs if r.started.started_at.astimezone(UTC).date() == now.date()]
    if len(today) >= policy.daily_budget:
        return f"daily budget of {policy.daily_budget} run(s) spent on {now:%Y-%m-%d}"
    return _cooldown(policy, now, runs, firings) or _refused(runs, days, firings)


def _by_hand(run: Run) -> str:
    """' (started by flywheel run by ada)' for a run no trigger decision started, else ''."""
    return "" if run.started.origin == "trigger" else f" (started by {run.started.started_by})"


def check(
    settings: Settings,
    registry: Registry,
    source: batches.BatchSource,
    *,
    now: datetime | None = None,
    force: str | None = None,
    commit: str | None = None,
    image: str | None = None,
    cache: WindowCache | None = None,
) -> Decision:
    """Evaluate every trigger of `settings.triggers` at `now` on `registry` (its store holds the
    logs, the monitoring records and the engine's books) and the batches of `source`, apply the
    safeguards and store the decision record. `force` (a reason) fires a manual trigger that bypasses the cooldown
    and the budget, never a hold or a run in flight. `commit` and `image` are what CI built.
    `cache` (kept by a process that checks again) spares the monitoring it runs the windows
    whose inputs did not change since an earlier check (monitoring.cache)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    ledger = Ledger(registry.store, settings.model_name)
    try:
        runs = ledger.runs()
        held = ledger.held()
        production = _production(registry)
        days = [b.day for b in source.available()]
        timeout = timedelta(hours=settings.triggers.run_timeout_hours)
        answered = next((r for r in reversed(runs) if _answered(r, now, timeout)), None)
        reports: list[WindowReport] = []
        seen: set[datetime] = set()
        held_to: HeldTo | None = None
        wants_reports = any(
            (
                settings.triggers.drift,
                settings.triggers.performance,
                settings.triggers.estimated_performance,
            )
        )
        if production is not None and wants_reports:
            reports = _reports(settings, registry, source, production.version, now, cache)
            since = answered.started.started_at if answered else None
            seen = _seen(settings, registry, production.version, since)
            if settings.triggers.performance and reports:
                held_to = _held_to(registry, production, reports[-1].task)
    except (StoreError, ValidationError) as error:
        raise TriggerError(
            f"cannot read the trigger state of {settings.model_name} from "
            f"{settings.storage.uri}: {error}; no decision was recorded"
        ) from None
    checks = _judge(
        settings, now, runs, answered, production, days, reports, seen, commit, image, held_to
    )
    if force:
        checks.append(
            Check(
                kind="manual",
                fired=True,
                reason=f"forced: {force}",
                severity="high",
                inputs={"force": force},
            )
        )
    firings = [
        Firing(kind=c.kind, reason=c.reason, severity=c.severity, inputs=c.inputs)
        for c in checks
        if c.fired
    ]
    blocked_by = (
        _blocked(settings, now, runs, days, held, firings, bool(force)) if firings else None
    )
    if not firings:
        reason = "nothing fired"
    elif blocked_by:
        reason = f"{'; '.join(f.reason for f in firings)} (blocked: {blocked_by})"
    else:
        reason = "; ".join(f.reason for f in firings)
    key = ledger.decision_key(now)
    decision = Decision(
        at=now,
        fired=bool(firings) and blocked_by is None,
        reason=reason,
        firings=firings,
        blocked_by=blocked_by,
        record=registry.store.location(key),
        checks=checks,
        version=production.version if production else None,
        newest_batch=days[-1].isoformat() if days else None,
    )
    record = {
        **decision.model_dump(mode="json"),
        "model": settings.model_name,
        "commit": commit,
        "image": image,
        "runs": [r.model_dump(mode="json") for r in runs[-3:]],
        "policy": settings.triggers.model_dump(mode="json"),
    }
    try:
        ledger.write_decision(key, record)
    except StoreError as error:
        raise TriggerError(f"cannot store the decision record {decision.record}: {error}") from None
    return decision


def run_started(
    ledger: Ledger,
    decision: Decision,
    run_id: str,
    *,
    now: datetime | None = None,
    kfp_run_id: str | None = None,
    actor: str | None = None,
) -> None:
    """Mark a run started on `decision` (for the cooldown, the budget and the in-flight check);
    `kfp_run_id` when it was submitted to KFP, which `reconcile` then asks how it ended;
    `actor` the person who forced the decision (None: the engine decided alone)."""
    code = next((c.inputs for c in decision.checks if c.kind == "code_change"), {})
    entry = RunStarted(
        run_id=run_id,
        started_at=(now or decision.at).astimezone(UTC),
        origin="trigger",
        actor=actor,
        decision=decision.record,
        reason=decision.reason,
        severity="high" if any(f.severity == "high" for f in decision.firings) else "low",
        kinds=sorted({f.kind for f in decision.firings}),
        commit=code.get("commit"),
        image=code.get("image"),
        newest_batch=decision.newest_batch,
        kfp_run_id=kfp_run_id,
    )
    try:
        ledger.start(entry)
    except StoreError as error:
        raise TriggerError(f"cannot mark run {run_id} started: {error}") from None


def run_finished(
    ledger: Ledger,
    run_id: str,
    *,
    succeeded: bool,
    blessed: bool | None = None,
    now: datetime | None = None,
) -> None:
    """Mark a started run finished: failed, or succeeded with its model registered or (`blessed`
    False) refused by the gate."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    entry = RunFinished.of(run_id, at, succeeded=succeeded, blessed=blessed)
    try:
        ledger.finish(entry)
    except StoreError as error:
        raise TriggerError(f"cannot mark run {run_id} finished: {error}") from None


def reconcile(
    ledger: Ledger,
    ended: Callable[[list[str]], Mapping[str, bool]],
    *,
    blessed: Callable[[str], bool | None] | None = None,
    now: datetime | None = None,
    timeout: timedelta | None = None,
) -> list[str]:
    """Mark finished the submitted runs that ended on the cluster, so that a run in flight
    blocks only while it runs. `ended` maps KFP run ids to whether each ended run succeeded
    (runs still going are left out); `blessed` says of a run id whether its gate blessed the
    model. With `timeout` (triggers.run_timeout_hours), a run past it is not asked about: it
    blocks nothing, and a cluster that never knew it (another KFP) must not fail every check.
    Returns the ids of the runs marked."""
    at = now or datetime.now(UTC)
    try:
        waiting = {
            r.started.kfp_run_id: r.started.run_id
            for r in ledger.runs()
            if r.finished is None
            and r.started.kfp_run_id
            and (timeout is None or r.in_flight(at, timeout))
        }
    except StoreError as error:
        raise TriggerError(f"cannot read the runs the engine started: {error}") from None
    if not waiting:
        return []
    marked = []
    for kfp_run_id, succeeded in ended(sorted(waiting)).items():
        run_id = waiting[kfp_run_id]
        gate = blessed(run_id) if blessed and succeeded else None
        run_finished(ledger, run_id, succeeded=succeeded, blessed=gate, now=now)
        marked.append(run_id)
    return marked


def hold(ledger: Ledger, reason: str, *, now: datetime | None = None) -> str:
    """Hold the engine: nothing fires until `release`."""
    return _write_hold(ledger, Hold(action="hold", reason=reason, at=now or datetime.now(UTC)))


def release(ledger: Ledger, reason: str = "", *, now: datetime | None = None) -> str:
    """Release a hold."""
    entry = Hold(action="release", reason=reason or "released", at=now or datetime.now(UTC))
    return _write_hold(ledger, entry)


def _write_hold(ledger: Ledger, entry: Hold) -> str:
    try:
        return ledger.hold(entry)
    except StoreError as error:
        raise TriggerError(f"cannot record the {entry.action}: {error}") from None


def history(ledger: Ledger, limit: int = 20) -> list[dict[str, Any]]:
    """The newest `limit` decision records, oldest first."""
    try:
        return ledger.decisions(limit)
    except StoreError as error:
        raise TriggerError(f"cannot read the decision records: {error}") from None
