"""`flywheel run`, `compile` and `submit`: the training pipeline, locally or on a cluster."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flywheel.cli import options, render
from flywheel.cli.render import out
from flywheel.config import Settings
from flywheel.registry import PRODUCTION
from flywheel.storage import StoreError
from flywheel.stores import Stores

if TYPE_CHECKING:
    from flywheel import runs
    from flywheel.triggers.ledger import Origin, RunStarted

Reason = Annotated[
    str,
    typer.Option(
        help="Why this run starts, kept in the lineage of the version it registers "
        "(default: manual run)."
    ),
]
DecisionKey = Annotated[
    str,
    typer.Option(
        "--decision",
        help="Store key of the trigger decision record that started this run, for the lineage.",
    ),
]
AsOf = Annotated[
    datetime | None,
    typer.Option(
        "--as-of", formats=["%Y-%m-%d"], help="Last day of the window (default: newest batch)."
    ),
]


def run(
    ctx: typer.Context,
    as_of: AsOf = None,
    cache: Annotated[
        bool, typer.Option(help="Reuse the outputs of unchanged steps (pipeline.caching).")
    ] = True,
    run_id: Annotated[str | None, typer.Option(help="Run id (default: generated).")] = None,
    deploy: Annotated[
        bool,
        typer.Option(
            help="Then roll a newly registered candidate out as a local canary under synthetic "
            "traffic, and end with a one-screen summary."
        ),
    ] = False,
    rps: Annotated[
        float, typer.Option(help="Synthetic requests per second during the canary.", min=0.1)
    ] = options.CANARY_RPS,
    reason: Reason = "",
    decision: DecisionKey = "",
    actor: options.Actor = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also print what kfp.local and the steps print (always in the run's log file).",
        ),
    ] = False,
) -> None:
    """Run the training pipeline locally under kfp.local and summarise what it did.

    The run is recorded with the trigger engine's (who started it, why, how it ended), so the
    engine counts it in flight, in the daily budget and for the cooldown."""
    from flywheel import runs
    from flywheel.cli.data import existing_source
    from flywheel.triggers.ledger import RunFinished

    settings = options.settings(ctx)
    stores = options.stores(ctx, settings)
    existing_source(stores)
    stores.models.check(create=True)
    run_id = run_id or runs.new_run_id()
    day = as_of.date() if as_of else None
    started = run_started(stores, run_id, "run", reason, actor, decision, day)
    stores.ledger.start(started)
    succeeded, blessed = False, None
    try:
        with render.step_progress(verbose) as show:
            result = runs.run_local(
                settings,
                stores.models,
                as_of=day.isoformat() if day else "",
                run_id=run_id,
                caching=settings.pipeline.caching and cache,
                verbose=verbose,
                on_step=show,
                reason=reason,
                decision=decision,
            )
        succeeded, blessed = result.succeeded, result.blessed
    finally:
        # Also when interrupted: a run marked finished no longer counts in flight.
        ended = RunFinished.of(run_id, datetime.now(UTC), succeeded=succeeded, blessed=blessed)
        stores.ledger.finish(ended)
    render.run_result(settings, result, production(stores, result))
    if not result.succeeded:
        raise typer.Exit(1)
    if not deploy:
        return
    rollout = roll_out(settings, stores, result, rps)
    render.closing_summary(settings, result, rollout, stores.registry.resolve(PRODUCTION))


def run_started(
    stores: Stores,
    run_id: str,
    origin: Origin,
    reason: str,
    actor: str | None,
    decision: str,
    as_of: date | None,
    *,
    image: str | None = None,
    kfp_run_id: str | None = None,
) -> RunStarted:
    """The run record of a run a person starts (`flywheel run`, `flywheel submit`), started
    now on the batches up to `as_of` (default: the newest)."""
    from flywheel import lineage
    from flywheel.triggers.ledger import RunStarted

    days = [b.day for b in stores.source.available() if as_of is None or b.day <= as_of]
    return RunStarted(
        run_id=run_id,
        started_at=datetime.now(UTC),
        reason=reason or "manual run",
        origin=origin,
        actor=options.actor(actor),
        decision=decision,
        commit=lineage.git_commit(),
        image=image,
        newest_batch=days[-1].isoformat() if days else None,
        kfp_run_id=kfp_run_id,
    )


def production(stores: Stores, result: runs.LocalRun) -> str | None:
    """The production version after a run that registered one, for its summary; else None."""
    return stores.registry.resolve(PRODUCTION) if result.registration else None


def roll_out(settings: Settings, stores: Stores, result: runs.LocalRun, rps: float) -> str:
    """Roll the version a local run registered out as a local canary; say what happened."""
    registration = result.registration or {}
    version = registration.get("version")
    if version is None:
        return "nothing new was registered, so nothing to roll out"
    if PRODUCTION in registration.get("aliases", []):
        return f"{version} went straight to production (nothing was serving before it)"
    if version == stores.registry.resolve(PRODUCTION):
        return f"{version} is already in production (the run trained the same model again)"
    from flywheel.cli.serving import local_canary

    state = local_canary(settings, stores, version, rps)
    return f"{version} {state.phase.replace('_', ' ')}: {state.reason}"


def compile_pipeline(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for training.yaml.")] = Path(
        "pipelines/compiled"
    ),
) -> None:
    """Compile the training pipeline to the YAML package a KFP cluster runs.

    Each step's CPU and memory requests and limits come from pipeline.resources.
    """
    from flywheel import runs

    path = runs.write_package(options.settings(ctx), out_dir)
    out.print(f"wrote {path}")


def submit(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(envvar="KFP_HOST", help="KFP API endpoint (default: pipeline.host)."),
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Component image, ideally by digest (repo@sha256:...).")
    ] = None,
    as_of: AsOf = None,
    namespace: Annotated[str | None, typer.Option(help="Kubeflow profile namespace.")] = None,
    service_account: Annotated[
        str | None,
        typer.Option(help="Service account the steps run as (the deploy step patches Seldon)."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Run id (default: generated); also the KFP run's name, so `flywheel rollout "
            "wait --run` can follow it."
        ),
    ] = None,
    reason: Reason = "",
    decision: DecisionKey = "",
    actor: options.Actor = None,
) -> None:
    """Compile and start the training pipeline on a Kubeflow Pipelines cluster.

    The API's bearer token, if it needs one, is read from the variable
    pipeline.token_env names (KFP_TOKEN), never from the command line. The run is recorded
    with the trigger engine's, in flight until `flywheel triggers check --submit` hears from
    KFP that it ended, or for triggers.run_timeout_hours at most.
    """
    from flywheel import runs

    settings: Settings = options.settings(ctx)
    endpoint = host or settings.pipeline.host
    if not endpoint:
        raise options.UsageFailure("no KFP endpoint: pass --host, set KFP_HOST or pipeline.host")
    for key, uri in (("storage.uri", settings.storage.uri), ("data.source", settings.data.source)):
        if not uri.startswith("s3://"):
            raise options.UsageFailure(
                f"{key} is {uri!r}, a local directory: a cluster run needs an s3:// store"
            )
    stores = options.stores(ctx, settings)
    run_id = run_id or runs.new_run_id()
    day = as_of.date() if as_of else None
    image = image or settings.pipeline.image
    # Only a run KFP accepted is recorded: first make sure that it can be. A store this
    # machine cannot reach (a CI runner outside the cluster's network) does not stop the run,
    # which reads its own store in the cluster: it goes unrecorded, and says so.
    unrecorded = None
    try:
        started = run_started(stores, run_id, "submit", reason, actor, decision, day, image=image)
        stores.ledger.check_unused(run_id)
    except StoreError as error:
        unrecorded = str(error)
    result = runs.submit(
        settings,
        host=endpoint,
        run_id=run_id,
        image=image,
        as_of=day.isoformat() if day else "",
        namespace=namespace,
        service_account=service_account,
        reason=reason,
        decision=decision,
    )
    out.print(f"started {result['run_id']} (KFP run {result['kfp_run_id']}) on {endpoint}")
    if unrecorded is not None:
        out.print(
            f"warning: the run is not recorded in the store ({unrecorded}): the trigger "
            "engine will not count it in flight",
            highlight=False,
        )
        return
    stores.ledger.start(started.model_copy(update={"kfp_run_id": result["kfp_run_id"]}))
