"""`flywheel watch`: the loop on a laptop. Monitor, decide, run, roll out; then wait and again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from flywheel.cli import options
from flywheel.cli.render import err, out
from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    from flywheel.config import Settings
    from flywheel.monitoring.cache import WindowCache
    from flywheel.stores import Stores


def _now(value: str | None, once: bool) -> datetime | None:
    if value is None:
        return None
    if not once:
        raise options.UsageFailure("--now needs --once: a loop looks at the real time")
    return options.parse_time("--now", value)


def watch(
    ctx: typer.Context,
    interval: Annotated[
        float,
        typer.Option(help="Seconds from the start of one look to the start of the next.", min=1),
    ] = 3600.0,
    once: Annotated[bool, typer.Option("--once", help="Look once, then exit.")] = False,
    now: Annotated[
        str | None,
        typer.Option(help="With --once: look as at this time, UTC (default: now)."),
    ] = None,
    rollout: Annotated[
        bool,
        typer.Option(help="Roll a newly registered version out as a local canary."),
    ] = True,
    rps: Annotated[
        float, typer.Option(help="Synthetic requests per second during a canary.", min=0.1)
    ] = options.CANARY_RPS,
    commit: Annotated[
        str | None,
        typer.Option(
            envvar="FLYWHEEL_GIT_COMMIT", help="The commit CI built, for the code-change trigger."
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            envvar="FLYWHEEL_IMAGE", help="The image CI built, for the code-change trigger."
        ),
    ] = None,
) -> None:
    """Monitor, let the trigger engine decide, run with its reason, roll out.

    Every --interval seconds until Ctrl-C; with --once, one look (exit 1 if a
    run or the store failed). In the loop a failed look is reported and the
    next comes at its time. Ctrl-C or SIGTERM stops a wait at once; during a
    step it unwinds: a run it started is marked finished (failed), and a
    canary keeps its state for `flywheel deploy --canary` to resume.
    """
    from flywheel.monitoring.cache import WindowCache

    settings = options.settings(ctx)
    stores = options.stores(ctx, settings)
    at = _now(now, once)
    # Each look takes the reports of the windows whose inputs did not change since the last.
    windows = WindowCache()
    while True:
        started = time.monotonic()
        try:
            ok = look(
                settings,
                stores,
                at,
                rollout=rollout,
                rps=rps,
                commit=commit,
                image=image,
                cache=windows,
            )
        except FlywheelError as error:
            if once:
                raise
            err.print(f"[red]error:[/] {error}", highlight=False)
            ok = False
        if once:
            if not ok:
                raise typer.Exit(1)
            return
        pause = max(0.0, interval - (time.monotonic() - started))
        following = datetime.now(UTC) + timedelta(seconds=pause)
        out.print(f"next look at {following:%Y-%m-%d %H:%M:%S} UTC (Ctrl-C stops)", highlight=False)
        time.sleep(pause)


def look(
    settings: Settings,
    stores: Stores,
    at: datetime | None,
    *,
    rollout: bool,
    rps: float,
    commit: str | None,
    image: str | None,
    cache: WindowCache | None = None,
) -> bool:
    """One pass: monitor, decide, and if a trigger fired, run and roll out. False if a run failed."""
    from flywheel.cli.pipeline import roll_out
    from flywheel.cli.triggers import run_decision
    from flywheel.monitoring import prometheus
    from flywheel.monitoring.monitor import monitor
    from flywheel.triggers import engine

    now = at or datetime.now(UTC)
    out.rule(f"watch {settings.model_name} at {now:%Y-%m-%d %H:%M} UTC")
    result = monitor(
        settings, stores.registry, stores.source, until=now, record=True, now=now, cache=cache
    )
    drifted = sorted(
        {f"{r.version} {r.start:%Y-%m-%d %H:%M}" for r in result.reports if r.dataset_drift}
    )
    out.print(
        f"monitor: {len(result.reports)} window report(s), {len(result.records)} recorded"
        + (f"; dataset drift in {', '.join(drifted)}" if drifted else "; no dataset drift"),
        highlight=False,
    )
    if settings.monitoring.pushgateway and result.reports:
        text = prometheus.exposition(result.reports)
        try:
            prometheus.push(settings.monitoring.pushgateway, settings.model_name, text)
        except prometheus.PushError as error:
            # Metrics are for people; the decision reads the records, which are stored.
            err.print(f"[yellow]warning:[/] {error}", highlight=False)
    decision = engine.check(
        settings,
        stores.registry,
        stores.source,
        now=now,
        commit=commit or None,
        image=image or None,
        cache=cache,
    )
    verdict = "fired" if decision.fired else "did not fire"
    out.print(f"decide: {verdict}: {decision.reason}", highlight=False)
    out.print(f"  record {decision.record}", highlight=False)
    if not decision.fired:
        return True
    run = run_decision(settings, stores, decision)
    if not run.succeeded:
        return False
    if not rollout:
        out.print("rollout: off (--no-rollout)", highlight=False)
    elif settings.rollout.driver == "kubernetes":
        out.print(
            "rollout: the pipeline's deploy step started it on the cluster; "
            "the rollout controller (flywheel rollout watch) finishes it",
            highlight=False,
        )
    else:
        out.print(f"rollout: {roll_out(settings, stores, run, rps)}", highlight=False)
    return True
