"""Each trigger of the policy, judged on what the engine read: pure functions, one per kind.

Every function returns a `Check` whether or not it fired, with the numbers it
looked at, so that the decision record shows why nothing fired as well as why
something did.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from flywheel import cron
from flywheel.config import (
    CodeChangeTrigger,
    DriftTrigger,
    EstimatedPerformanceTrigger,
    NewDataTrigger,
    PerformanceTrigger,
    ScheduleTrigger,
)
from flywheel.monitoring.intervals import Interval
from flywheel.monitoring.window import WindowReport
from flywheel.records import Record

Kind = Literal[
    "schedule", "new_data", "drift", "performance", "estimated_performance", "code_change", "manual"
]
Severity = Literal["low", "high"]


class Check(Record):
    """One trigger's verdict: whether it fired, why in one line, and the numbers it used."""

    kind: Kind
    fired: bool
    reason: str
    severity: Severity
    inputs: dict[str, Any]


@dataclass(frozen=True)
class Production:
    """What the engine knows of the version in production."""

    version: str
    created_at: datetime
    newest_batch: date | None  # the newest batch its contract was inferred from
    commit: str | None
    image_digest: str | None
    image: str | None


def _day(at: datetime) -> str:
    return f"{at:%Y-%m-%d}"


def _window(report: WindowReport) -> str:
    return (
        f"{report.start:%Y-%m-%d}" if report.window == "day" else f"{report.start:%Y-%m-%d %H:00}"
    )


def schedule(policy: ScheduleTrigger, now: datetime, last_start: datetime | None) -> Check:
    """Fired when a cron tick passed since the last run started (or no run is known)."""
    tick = cron.parse(policy.cron).previous(now)
    fired = tick is not None and (last_start is None or tick > last_start)
    inputs = {
        "cron": policy.cron,
        "last_tick": tick.isoformat() if tick else None,
        "last_run_start": last_start.isoformat() if last_start else None,
    }
    if fired and tick is not None:
        reason = f"schedule {policy.cron!r}: tick at {tick:%Y-%m-%d %H:%M} UTC" + (
            f" since the last run ({last_start:%Y-%m-%d %H:%M})" if last_start else ", no run yet"
        )
    else:
        reason = f"schedule {policy.cron!r}: no tick since the last run"
    return Check(
        kind="schedule", fired=fired, reason=reason, severity=policy.severity, inputs=inputs
    )


def new_data(policy: NewDataTrigger, days: Sequence[date], since: date | None) -> Check:
    """Fired when at least `batches` batches are newer than the newest the last run read."""
    new = [d for d in days if since is None or d > since]
    fired = len(new) >= policy.batches
    inputs = {
        "since": since.isoformat() if since else None,
        "new_batches": len(new),
        "newest": new[-1].isoformat() if new else None,
        "required": policy.batches,
    }
    after = f"after {since}" if since else "in all"
    reason = f"new data: {len(new)} new batch(es) {after} (trigger at {policy.batches})"
    return Check(
        kind="new_data", fired=fired, reason=reason, severity=policy.severity, inputs=inputs
    )


def _drifted(policy: DriftTrigger, report: WindowReport) -> tuple[bool, list[str], dict[str, Any]]:
    """Whether one window drifted by the policy, which features made it, and its numbers."""
    psi = {f.feature: round(f.result.psi, 4) for f in report.features}
    why: list[str] = []
    share = report.drifted_share
    if policy.share is not None and share is not None and share > policy.share:
        drifted = [f.feature for f in report.features if f.result.drifted]
        top = sorted(drifted, key=lambda name: -psi[name])[:3]
        why.append(
            f"{len(drifted)}/{len(report.features)} features drifted ("
            + ", ".join(f"{name} PSI {psi[name]:.2f}" for name in top)
            + (", ..." if len(drifted) > 3 else "")
            + ")"
        )
    # A named feature's PSI fires only on a window large enough to trust it (statistics).
    results = {f.feature: f.result for f in report.features}
    for name, threshold in policy.features.items():
        if name in results and results[name].psi_alarms(threshold):
            why.append(f"{name} (PSI {psi[name]:.2f} > {threshold:g})")
    numbers = {
        "window": _window(report),
        "rows": report.health.rows,
        "drifted_share": report.drifted_share,
        "psi": psi,
    }
    return bool(why), why, numbers


def drift(
    policy: DriftTrigger, reports: Sequence[WindowReport], spans: Sequence[datetime]
) -> Check:
    """Fired when each of the newest `windows` windows (starting at `spans`) drifted."""
    by_start = {r.start: r for r in reports}
    looked: list[dict[str, Any]] = []
    reasons: list[list[str]] = []
    for start in spans:
        report = by_start.get(start)
        if report is None:
            looked.append({"window": f"{start:%Y-%m-%d %H:%M}", "rows": 0})
            reasons.append([])
            continue
        _, why, numbers = _drifted(policy, report)
        looked.append({**numbers, "drifted": bool(why)})
        reasons.append(why)
    fired = bool(spans) and all(reasons)
    inputs = {"share": policy.share, "features": policy.features, "windows": looked}
    if fired:
        newest = by_start[spans[-1]]
        span = f"{len(spans)} windows to " if len(spans) > 1 else ""
        reason = f"drift: {'; '.join(reasons[-1])} in {span}{_window(newest)}"
    else:
        count = sum(bool(r) for r in reasons)
        shares = ", ".join(
            "–" if w.get("drifted_share") is None else f"{w['drifted_share']:.2f}" for w in looked
        )
        reason = f"drift: {count} of the newest {len(spans)} window(s) drifted (shares {shares}"
        reason += f" vs {policy.share})" if policy.share is not None else ")"
    return Check(kind="drift", fired=fired, reason=reason, severity=policy.severity, inputs=inputs)


def performance_threshold(
    policy: PerformanceTrigger, report: WindowReport
) -> tuple[float | None, float | None]:
    """The bound the interval must surely be beyond to fire (a floor: below it; for an error, a
    ceiling: above it), and the offline figure."""
    metric = policy.metric_for(report.task)
    offline = report.offline.newest.get(metric) if report.offline else None
    if policy.lower_is_better(report.task):
        candidates = [policy.ceiling] if policy.ceiling is not None else []
        if policy.max_rise is not None and offline is not None:
            candidates.append(offline * (1 + policy.max_rise))
        return (min(candidates) if candidates else None), offline
    candidates = [policy.floor] if policy.floor is not None else []
    if policy.max_drop is not None and offline is not None:
        candidates.append(offline - policy.max_drop)
    return (max(candidates) if candidates else None), offline


def _surely_worse(interval: Interval | None, threshold: float | None, lower: bool) -> bool:
    """The whole interval is beyond the threshold: above a ceiling, or below a floor."""
    if interval is None or threshold is None:
        return False
    return interval.low > threshold if lower else interval.high < threshold


def _against_offline(
    interval: Interval | None,
    report: WindowReport,
    policy: PerformanceTrigger,
    threshold: float | None,
    offline: float | None,
) -> Interval | None:
    """The window's interval widened for the offline figure's own error (`widened`), when the
    threshold is drawn from it (max_drop, max_rise) rather than set (floor, ceiling)."""
    rows = report.offline.newest_rows if report.offline else None
    set_limit = policy.ceiling if policy.lower_is_better(report.task) else policy.floor
    if interval is None or offline is None or not rows or threshold == set_limit:
        return interval
    labelled = report.performance.labelled_for(policy.metric_for(report.task))
    return widened(interval, labelled, rows)


def widened(interval: Interval, labelled: int, offline_rows: int) -> Interval:
    """An interval of a window's metric on `labelled` labels, widened to one of its difference
    from the offline figure measured on `offline_rows` rows: that figure's standard error is
    about the window's times √(labelled / offline_rows), so the difference's interval is
    √(1 + labelled / offline_rows) times as wide. Without it a drop of exactly max_drop fired
    in a fifth of large windows (`make bench-stats`)."""
    widen = math.sqrt(1 + labelled / offline_rows)
    return Interval(
        value=interval.value,
        low=interval.value - (interval.value - interval.low) * widen,
        high=interval.value + (interval.high - interval.value) * widen,
    )


def _figures(interval: Interval | None) -> dict[str, float] | None:
    if interval is None:
        return None
    return {k: round(v, 4) for k, v in interval.model_dump().items()}


def _unjudged(
    kind: Kind, policy: PerformanceTrigger, reports: Sequence[WindowReport], key: str
) -> Check | None:
    """A quiet check when the newest window's task has no such metric (a policy from before its
    task was known): the configuration is refused once the task is, so this is a stale one."""
    if not reports:
        return None
    task = reports[-1].task
    try:
        policy.check_task(task, f"triggers.{key}")
    except ValueError as error:
        return Check(
            kind=kind,
            fired=False,
            reason=f"{key.replace('_', ' ')}: not judged: {error}",
            severity=policy.severity,
            inputs={"metric": policy.metric, "task": task},
        )
    return None


def judgeable(policy: PerformanceTrigger, report: WindowReport) -> bool:
    """Whether a window has the labels the performance trigger needs: `min_labelled` of them
    and its metric."""
    return (
        report.performance.labelled_for(policy.metric_for(report.task)) >= policy.min_labelled
        and report.performance.get(policy.metric_for(report.task)) is not None
    )


def performance(
    policy: PerformanceTrigger,
    reports: Sequence[WindowReport],
    seen: Collection[datetime] = (),
) -> Check:
    """Fired when the newest window with enough delayed labels is significantly worse than the
    threshold: the upper bound of its interval is under the floor (the lower bound is over
    the ceiling, for an error). Windows starting at `seen` had their labels when the last run
    started: that evidence was counted."""
    unjudged = _unjudged("performance", policy, reports, "performance")
    if unjudged is not None:
        return unjudged
    judged = [r for r in reports if judgeable(policy, r)]
    labelled = [r for r in judged if r.start not in seen]
    if judged and not labelled:
        newest = judged[-1]
        return Check(
            kind="performance",
            fired=False,
            reason=f"performance: no labels came back since the last run started "
            f"(it saw those of {_window(newest)})",
            severity=policy.severity,
            inputs={
                "metric": policy.metric_for(newest.task),
                "seen": [_window(r) for r in judged],
                "min_labelled": policy.min_labelled,
            },
        )
    if not labelled:
        most = max(
            (r.performance.labelled_for(policy.metric_for(r.task)) for r in reports), default=0
        )
        metric = policy.metric_for(reports[-1].task) if reports else policy.metric
        return Check(
            kind="performance",
            fired=False,
            reason=f"performance: no window has {policy.min_labelled} labels yet (most: {most})",
            severity=policy.severity,
            inputs={"metric": metric, "labelled": most, "min_labelled": policy.min_labelled},
        )
    report = labelled[-1]
    metric = policy.metric_for(report.task)
    lower = policy.lower_is_better(report.task)
    interval = report.performance.get(metric)
    threshold, offline = performance_threshold(policy, report)
    compared = _against_offline(interval, report, policy, threshold, offline)
    fired = _surely_worse(compared, threshold, lower)
    inputs = {
        "metric": metric,
        "window": _window(report),
        "labelled": report.performance.labelled_for(metric),
        "interval": _figures(interval),
        "judged_interval": _figures(compared),
        "offline": offline,
        "floor": policy.floor,
        "max_drop": policy.max_drop,
        "threshold": threshold,
    }
    if lower:
        inputs.update({"ceiling": policy.ceiling, "max_rise": policy.max_rise})
        del inputs["floor"], inputs["max_drop"]
    assert interval is not None  # chosen for having one
    figure = (
        f"{metric} {interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}] "
        f"on {report.performance.labelled} labels of {_window(report)}"
    )
    beyond = f"{'above' if lower else 'below'} {threshold:.3f}" + (
        f" (offline {offline:.3f})" if offline is not None else ""
    )
    reason = f"performance drop: {figure}, surely {beyond}" if fired else f"performance: {figure}"
    return Check(
        kind="performance", fired=fired, reason=reason, severity=policy.severity, inputs=inputs
    )


def estimated_performance(
    policy: EstimatedPerformanceTrigger, reports: Sequence[WindowReport], spans: Sequence[datetime]
) -> Check:
    """Fired when the estimate before labels (CBPE, or DLE for a regression) of each of the
    newest `windows` windows is significantly worse than the threshold."""
    unjudged = _unjudged("estimated_performance", policy, reports, "estimated_performance")
    if unjudged is not None:
        return unjudged
    by_start = {r.start: r for r in reports}
    looked: list[dict[str, Any]] = []
    verdicts: list[bool] = []
    method = "CBPE"
    metric = policy.metric_for(reports[-1].task) if reports else policy.metric_for("binary")
    lower = False
    for start in spans:
        report = by_start.get(start)
        estimate = report.estimate if report else None
        if report is None or estimate is None or estimate.rows < policy.min_labelled:
            looked.append({"window": f"{start:%Y-%m-%d %H:%M}", "estimate": None})
            verdicts.append(False)
            continue
        metric, method = policy.metric_for(report.task), estimate.method
        lower = policy.lower_is_better(report.task)
        interval = estimate.get(metric)
        threshold, offline = performance_threshold(policy, report)
        verdicts.append(_surely_worse(interval, threshold, lower))
        looked.append(
            {
                "window": _window(report),
                "rows": estimate.rows,
                "interval": _figures(interval),
                "offline": offline,
                "threshold": threshold,
            }
        )
    fired = bool(spans) and all(verdicts)
    inputs = {"metric": metric, "method": method, "windows": looked}
    way, bound = ("above", "low") if lower else ("below", "high")
    if fired:
        newest = looked[-1]
        reason = (
            f"estimated performance drop ({method}, an estimate): {metric} "
            f"{newest['interval']['value']:.3f}, surely {way} {newest['threshold']:.3f} "
            f"in {len(spans)} window(s) to {newest['window']}"
        )
    else:
        reason = f"estimated performance: {sum(verdicts)} of {len(spans)} window(s) surely worse"
        if looked and looked[-1].get("interval") and looked[-1].get("threshold") is not None:
            newest = looked[-1]
            reason += (
                f" (newest {metric} {newest['interval']['value']:.3f}, "
                f"{'lower' if lower else 'upper'} {newest['interval'][bound]:.3f} "
                f"vs {newest['threshold']:.3f})"
            )
    return Check(
        kind="estimated_performance",
        fired=fired,
        reason=reason,
        severity=policy.severity,
        inputs=inputs,
    )


def _digest(image: str | None) -> str | None:
    if not image:
        return None
    return image.split("@", 1)[1] if "@" in image else image


def code_change(
    policy: CodeChangeTrigger,
    production: Production | None,
    commit: str | None,
    image: str | None,
    started: Sequence[tuple[str | None, str | None]],
) -> Check:
    """Fired when CI reports a commit or image other than production's lineage, and no run
    was started for it yet (`started`: the commit and image of every started run)."""
    ours = _digest(image)
    theirs = production.image_digest or _digest(production.image) if production else None
    new_commit = all(c != commit for c, _ in started)
    new_image = all(_digest(i) != ours for _, i in started)
    changes: list[str] = []
    if production and commit and production.commit and commit != production.commit and new_commit:
        changes.append(
            f"commit {commit[:12]} (production {production.version}: {production.commit[:12]})"
        )
    if production and ours and theirs and ours != theirs and new_image:
        changes.append(f"image {ours[:19]} (production {production.version}: {theirs[:19]})")
    inputs = {
        "commit": commit,
        "image": image,
        "production_commit": production.commit if production else None,
        "production_image": theirs,
    }
    if changes:
        reason = "code change: " + ", ".join(changes)
    elif not (commit or image):
        reason = "code change: CI reported no commit or image"
    else:
        reason = "code change: production runs this code, or a run was already started for it"
    return Check(
        kind="code_change",
        fired=bool(changes),
        reason=reason,
        severity=policy.severity,
        inputs=inputs,
    )
