"""`flywheel triggers`: one evaluation of the trigger policy, its history, and the manual hold."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from flywheel.cli import options
from flywheel.cli.render import out

if TYPE_CHECKING:
    from flywheel.config import Settings
    from flywheel.runs import LocalRun
    from flywheel.stores import Stores
    from flywheel.triggers.engine import Decision
    from flywheel.triggers.ledger import Ledger

app = typer.Typer(
    help="The trigger engine: decide whether to retrain (triggers: in flywheel.yaml).",
    no_args_is_help=True,
)

NOTHING_FIRED = 3


def _summary(decision: Decision) -> None:
    for c in decision.checks:
        mark = "[green]fired[/]" if c.fired else "[dim]-[/]"
        out.print(f"  {mark} {c.kind} ({c.severity}): {c.reason}", highlight=False)
    if decision.blocked_by:
        out.print(f"[yellow]blocked by[/] {decision.blocked_by}", highlight=False)
    verdict = "[bold green]FIRED[/]" if decision.fired else "[bold]not fired[/]"
    out.print(f"{verdict}: {decision.reason}", highlight=False)
    out.print(f"Decision record: {decision.record}", highlight=False)


@app.command("check")
def check(
    ctx: typer.Context,
    now: Annotated[
        str | None, typer.Option(help="Evaluate as of this UTC time (default: now).")
    ] = None,
    force: Annotated[
        str | None,
        typer.Option(
            metavar="REASON",
            help="Fire a manual trigger: bypasses the cooldown and the daily budget, "
            "never a hold or a run in flight.",
        ),
    ] = None,
    commit: Annotated[
        str | None,
        typer.Option(
            envvar="FLYWHEEL_GIT_COMMIT",
            help="The commit CI built, for the code-change trigger.",
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            envvar="FLYWHEEL_IMAGE",
            help="The image CI built (repo@sha256:...), for the code-change trigger.",
        ),
    ] = None,
    run: Annotated[
        bool, typer.Option("--run", help="If it fires, run the pipeline locally (kfp.local).")
    ] = False,
    submit: Annotated[
        bool, typer.Option("--submit", help="If it fires, start a run on a KFP cluster.")
    ] = False,
    host: Annotated[
        str | None,
        typer.Option(
            envvar="KFP_HOST", help="KFP API endpoint for --submit (default: pipeline.host)."
        ),
    ] = None,
    actor: options.Actor = None,
) -> None:
    """Evaluate every trigger once and record the decision.

    Exit code 0: it fired (and, with --run or --submit, the run started); 3: nothing
    fired or a safeguard blocked it.
    """
    from flywheel.triggers import engine

    if run and submit:
        raise options.UsageFailure("--run and --submit cannot be combined: choose where to run")
    settings = options.settings(ctx)
    stores = options.stores(ctx, settings)
    endpoint = host or settings.pipeline.host
    if submit and not endpoint:
        raise options.UsageFailure("--submit needs --host, KFP_HOST or pipeline.host")
    for key, uri in (("storage.uri", settings.storage.uri), ("data.source", settings.data.source)):
        if submit and not uri.startswith("s3://"):
            raise options.UsageFailure(
                f"{key} is {uri!r}, a local directory: a cluster run needs an s3:// store"
            )
    at = options.parse_time("--now", now)
    if submit and endpoint:
        # A run submitted earlier blocks only while KFP still runs it.
        ended = functools.partial(_ended, settings, endpoint)
        timeout = timedelta(hours=settings.triggers.run_timeout_hours)
        for run_id in engine.reconcile(
            stores.ledger, ended, blessed=_blessed(stores), now=at, timeout=timeout
        ):
            out.print(f"run {run_id} has ended on {endpoint}", highlight=False)
    decision = engine.check(
        settings,
        stores.registry,
        stores.source,
        now=at,
        force=force,
        commit=commit,
        image=image,
    )
    out.rule(f"triggers {settings.model_name} at {decision.at:%Y-%m-%d %H:%M} UTC")
    _summary(decision)
    if not decision.fired:
        raise typer.Exit(NOTHING_FIRED)
    # A forced decision is a person's; the engine's own decisions have no actor.
    who = options.actor(actor) if force else None
    if run:
        _run_local(settings, stores, decision, who)
    elif submit and endpoint:
        _submit(settings, stores, decision, endpoint, who)


def _run_local(settings: Settings, stores: Stores, decision: Decision, actor: str | None) -> None:
    if not run_decision(settings, stores, decision, actor).succeeded:
        raise typer.Exit(1)


def run_decision(
    settings: Settings, stores: Stores, decision: Decision, actor: str | None = None
) -> LocalRun:
    """Run the pipeline locally on a decision that fired, with its reason, marked started and
    (also when interrupted, so it no longer blocks the next one) finished; print the result."""
    from flywheel import runs
    from flywheel.cli import render
    from flywheel.cli.pipeline import production
    from flywheel.triggers import engine

    run_id = runs.new_run_id()
    engine.run_started(stores.ledger, decision, run_id, actor=actor)
    succeeded, blessed = False, None
    try:
        with render.step_progress() as show:
            result = runs.run_local(
                settings,
                stores.models,
                run_id=run_id,
                on_step=show,
                reason=decision.reason,
                decision=decision.record,
            )
        succeeded, blessed = result.succeeded, result.blessed
    finally:
        engine.run_finished(stores.ledger, run_id, succeeded=succeeded, blessed=blessed)
    render.run_result(settings, result, production(stores, result))
    return result


def _submit(
    settings: Settings, stores: Stores, decision: Decision, host: str, actor: str | None
) -> None:
    from flywheel import runs
    from flywheel.triggers import engine

    run_id = runs.new_run_id()
    started = runs.submit(
        settings, host=host, run_id=run_id, reason=decision.reason, decision=decision.record
    )
    # Marked once KFP accepted it; the next check asks KFP whether it has ended (and counts
    # it in flight at most triggers.run_timeout_hours, should KFP lose it).
    engine.run_started(
        stores.ledger, decision, run_id, kfp_run_id=started["kfp_run_id"], actor=actor
    )
    out.print(f"started {started['run_id']} (KFP run {started['kfp_run_id']}) on {host}")


def _ended(settings: Settings, host: str, kfp_run_ids: list[str]) -> dict[str, bool]:
    from flywheel import runs

    return runs.ended_runs(settings, host=host, kfp_run_ids=kfp_run_ids)


def _blessed(stores: Stores) -> Callable[[str], bool]:
    """Whether a cluster run that succeeded registered its model: a run whose gate refused
    the model registers nothing."""
    from flywheel import runs

    return lambda run_id: runs.registration(stores.models, run_id) is not None


def _ledger(ctx: typer.Context) -> Ledger:
    return options.stores(ctx, options.settings(ctx)).ledger


@app.command("hold")
def hold(
    ctx: typer.Context,
    reason: Annotated[str, typer.Argument(help="Why nothing may fire until released.")],
) -> None:
    """Hold the engine: no trigger fires (not even --force) until `flywheel triggers release`."""
    from flywheel.triggers import engine

    where = engine.hold(_ledger(ctx), reason)
    out.print(f"held: {reason} ({where})", highlight=False)


@app.command("release")
def release(
    ctx: typer.Context,
    reason: Annotated[str, typer.Argument(help="Why the hold ends.")] = "",
) -> None:
    """Release the hold."""
    from flywheel.triggers import engine

    where = engine.release(_ledger(ctx), reason)
    out.print(f"released ({where})", highlight=False)


@app.command("history")
def history(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many recent decisions.", min=1)] = 20,
) -> None:
    """List recent decisions, oldest first, one line each."""
    from flywheel.triggers import engine

    records = engine.history(_ledger(ctx), limit)
    for r in records:
        verdict = "FIRED  " if r.get("fired") else "blocked" if r.get("blocked_by") else "-      "
        out.print(f"{r.get('at', '?')[:19]}  {verdict}  {r.get('reason', '')}", highlight=False)
    if not records:
        out.print("No decisions recorded yet.")
