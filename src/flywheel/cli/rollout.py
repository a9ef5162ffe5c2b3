"""`flywheel rollout`, `promote` and `rollback`: the rollout in progress, watched or decided."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn

import typer

from flywheel.cli import options
from flywheel.cli.render import out
from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.registry import PRODUCTION, Registry, version_number
from flywheel.rollout.lock import ControllerBusy, Lock, StoreLock
from flywheel.rollout.state import RolloutConflict, RolloutError, RolloutState

if TYPE_CHECKING:
    from flywheel import runs
    from flywheel.rollout.controller import RolloutController
    from flywheel.rollout.driver import Driver

app = typer.Typer(
    help="Canary rollouts: status, the controller loop, waiting for a decision.",
    no_args_is_help=True,
)


def controller(
    settings: Settings, driver_name: str, registry: Registry | None = None
) -> RolloutController:
    """The model's rollout controller with the named driver.

    With the local driver, a command that is not the one running the servers
    only records decisions; the `flywheel deploy` process applies them. Only the
    holder of the rollout's lock acts (a Lease on a cluster, else a lock in the
    store); a promotion or rollback by hand while another controller holds it is
    saved for that controller to carry out.
    """
    # Imported here: every other command would load the controller and what it analyses.
    from flywheel.rollout.controller import RolloutController

    registry = registry or Registry.from_settings(settings)
    driver: Driver
    lock: Lock
    if driver_name == "kubernetes":
        from flywheel.rollout.kubernetes import KubernetesDriver
        from flywheel.rollout.lease import KubernetesLease

        driver = KubernetesDriver(settings)
        lock = KubernetesLease.for_settings(settings)
    else:
        from flywheel.rollout.driver import StateOnlyDriver

        driver = StateOnlyDriver()
        lock = StoreLock.for_rollout(registry.store, settings.model_name)
    return RolloutController(registry, driver, settings.rollout, lock=lock)


@app.command("status")
def status(ctx: typer.Context) -> None:
    """The current (or last) rollout, and each step's decision."""
    settings = options.settings(ctx)
    rollouts = controller(settings, "local", options.stores(ctx, settings).registry)
    state = rollouts.state()
    if state is None:
        out.print(f"no rollout of {settings.model_name} yet")
        return
    phase = state.phase if state.ending is None or state.done else f"ending ({state.ending})"
    out.print(
        f"{state.rollout_id}: {phase} — {state.canary} against {state.stable}, "
        f"step {state.step + 1}/{len(settings.rollout.steps)} at {state.weight}%: {state.reason}"
    )
    for record in rollouts.registry.records(state.canary):
        if "decision" in record:
            out.print(
                f"  step {record['step']} at {record['weight']}%: {record['decision']} — {record['reason']}"
            )


@app.command("watch")
def watch(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option(help="One look, then exit.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics at /metrics on this port: the controller's looks "
            "and decisions, the newest monitoring windows and the trigger engine's decisions.",
            min=0,
            max=65535,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="The address the metrics server listens on.")
    ] = "0.0.0.0",  # in a pod, where Prometheus scrapes it through a Service
) -> None:
    """The rollout controller: drive any rollout in progress (Kubernetes driver) until
    stopped; between rollouts, keep the SeldonDeployment serving production, and canary
    a change of the chart's pod (a new image digest, resources) like a new version."""
    from flywheel import exporter
    from flywheel.rollout.kubernetes import KubernetesDriver, serve_production
    from flywheel.rollout.metrics import RolloutMetrics

    settings = options.settings(ctx)
    rollouts = controller(settings, "kubernetes", options.stores(ctx, settings).registry)
    driver = rollouts.driver
    assert isinstance(driver, KubernetesDriver)
    metrics = RolloutMetrics(settings.model_name)
    rollouts.on_record = metrics.record
    server = None
    if metrics_port is not None:
        server = exporter.serve(
            exporter.Exporter(settings, rollouts, metrics), metrics_host, metrics_port
        )
        out.print(f"metrics at http://{metrics_host}:{server.server_address[1]}/metrics")
    try:
        while True:
            try:
                # The lease first, then the state: a state read before it may be stale.
                rollouts.hold()
                state = rollouts.state()
                if state is not None and not state.done:
                    # Held from look to look until the rollout ends: a second replica waits.
                    state = rollouts.tick()
                    out.print(
                        f"{state.rollout_id}: {state.phase} at {state.weight}% ({state.reason})"
                    )
                else:
                    # Production from its slot, or a canary of a new serving pod.
                    out.print(serve_production(rollouts, driver))
                    state = rollouts.state()
                if state is None or state.done:
                    # Between rollouts the lease is free, for a pipeline's deploy step.
                    rollouts.let_go()
            except ControllerBusy as busy:
                out.print(f"standing by: {busy}")
            except RolloutConflict as conflict:
                out.print(f"{conflict}; reading it again")
            except FlywheelError as error:
                # The store or the API server failed while acting: the state says where it
                # was (an ending is saved before it is acted on), so the next look goes on.
                out.print(f"could not act: {error}; trying again")
            metrics.observe_leader(rollouts.lock is not None and rollouts.lock.held())
            if once:
                return
            time.sleep(settings.rollout.interval_seconds)
    finally:
        rollouts.let_go()
        if server is not None:
            server.shutdown()


@app.command("wait")
def wait(
    ctx: typer.Context,
    version: Annotated[
        str | None,
        typer.Argument(help="The version whose rollout to wait for (default: the latest rollout)."),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="Wait for the rollout of the version this pipeline run registers (its run id, "
            "as `flywheel submit --run-id` names it).",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            envvar="KFP_HOST",
            help="KFP API endpoint, asked how --run is going (default: pipeline.host; without "
            "one, only the store is read, and a run that failed is waited for until --timeout).",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.", min=0)] = 3600,
) -> None:
    """Wait for a rollout's decision: exit 0 if promoted (or the version is in production
    with no rollout of it pending), 1 if rolled back, not blessed, or the run failed.

    It only reads: the store, and KFP for --run. The rollout controller decides.
    """
    from flywheel import runs

    settings = options.settings(ctx)
    if version is not None and run is not None:
        raise options.UsageFailure("give a VERSION or --run, not both")
    rollouts = controller(settings, "local", options.stores(ctx, settings).registry)
    deadline = time.monotonic() + timeout
    pause = min(5.0, settings.rollout.interval_seconds)
    if version is None and run is None:
        while time.monotonic() < deadline:
            state = rollouts.state()
            if state is None:
                raise RolloutError(f"no rollout of {settings.model_name} to wait for")
            if state.done:
                _decided(state)
            time.sleep(pause)
        raise RolloutError(f"no decision after {timeout:.0f}s")
    kfp = host or settings.pipeline.host if run is not None else None
    target = f"v{version_number(version)}" if version is not None else None
    said = ""
    while True:
        # KFP first, the store after: a run that has ended has written all it will.
        status = None
        if run is not None and kfp:
            status = runs.run_status(settings, host=kfp, run_id=run)
            if status is None:
                raise RolloutError(f"KFP at {kfp} has no run named {run}")
        if target is None:
            assert run is not None
            target = _registered_by(rollouts.registry, run, status)
            if target is not None:
                out.print(f"run {run} registered {target}")
        if target is None:
            assert run is not None
            waiting = f"run {run} has registered no version yet" + (
                f" (KFP: {status.state})" if status is not None else ""
            )
        else:
            waiting = _rollout_of(rollouts, target, run, status)
        if waiting != said:
            out.print(waiting)
            said = waiting
        if time.monotonic() >= deadline:
            raise RolloutError(f"no decision after {timeout:.0f}s: {waiting}")
        time.sleep(pause)


def _decided(state: RolloutState) -> NoReturn:
    out.print(f"{state.canary} {state.phase.replace('_', ' ')}: {state.reason}")
    raise typer.Exit(0 if state.phase == "promoted" else 1)


def _registered_by(registry: Registry, run: str, status: runs.RunStatus | None) -> str | None:
    """The version `run` registered, None while it may still; exits once it never will."""
    from flywheel import runs

    registered = runs.registration(registry.store, run)
    if registered is not None:
        return str(registered["version"])
    if status is not None and status.state == "SUCCEEDED":
        out.print(f"run {run} registered no version: its gate did not bless the candidate")
        raise typer.Exit(1)
    if status is not None and status.ended:
        raise RolloutError(f"run {run} ended {status.state} on KFP without registering a version")
    return None


def _rollout_of(
    rollouts: RolloutController, version: str, run: str | None, status: runs.RunStatus | None
) -> str:
    """What the rollout of `version` is doing; exits once it is decided, or never will be.

    For a run KFP knows, only a rollout started after KFP created the run counts: the
    version may be one rolled out before (the same model trained again)."""
    since = status.created_at - CLOCK_SKEW if status is not None else None
    rollout = _latest_rollout_of(rollouts, version, since)
    if rollout is not None and rollout.done:
        _decided(rollout)
    if rollout is not None:
        return (
            f"{version}: {rollout.phase} at {rollout.weight}% "
            f"(step {rollout.step + 1}/{len(rollouts.policy.steps)}): {rollout.reason}"
        )
    if rollouts.registry.resolve(PRODUCTION) == version:
        out.print(f"{version} is in production, with no rollout of it pending")
        raise typer.Exit(0)
    current = rollouts.state()
    busy = ""
    if current is not None and not current.done:
        what = " (a canary of the serving pod)" if current.pod is not None else ""
        busy = f"; the rollout in progress is of {current.canary}{what}"
    if status is not None and status.ended:
        raise RolloutError(
            f"run {run} registered {version} but ended {status.state} on KFP without "
            f"starting its rollout{busy}"
        )
    return f"no rollout of {version} has started yet{busy}"


# How far the clocks of KFP and of the steps that write a rollout may disagree.
CLOCK_SKEW = timedelta(minutes=1)


def _latest_rollout_of(
    rollouts: RolloutController, version: str, since: datetime | None
) -> RolloutState | None:
    """The latest revision of the newest rollout of `version` (not a canary of the serving pod
    under it) started after `since`, read back from the newest revision; None if none was."""
    if since is None:
        # A rollout cannot start before its version exists (an hour allows for skewed clocks).
        created = datetime.fromisoformat(rollouts.registry.manifest(version).created_at)
        since = created - timedelta(hours=1)
    for key in reversed(rollouts.store.list(rollouts.prefix)):
        state = RolloutState.model_validate_json(rollouts.store.read(key))
        if datetime.fromisoformat(state.started_at) < since:
            return None
        if state.canary == version and state.pod is None:
            return state
    return None


def promote(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Recorded with the decision.")] = "promoted by hand",
    actor: options.DecidedBy = None,
) -> None:
    """Promote the rollout in progress now, skipping its remaining steps."""
    state = _by_hand(ctx, "promote", reason, actor)
    if state.done:
        out.print(f"{state.canary} promoted: production is {state.canary}")


def rollback(
    ctx: typer.Context,
    reason: Annotated[
        str, typer.Option(help="Recorded with the decision.")
    ] = "rolled back by hand",
    actor: options.DecidedBy = None,
) -> None:
    """Roll back the rollout in progress now; production stays where it is."""
    state = _by_hand(ctx, "rollback", reason, actor)
    if state.done:
        out.print(f"{state.canary} rolled back: production stays {state.stable}")


def _by_hand(
    ctx: typer.Context, decision: Literal["promote", "rollback"], reason: str, actor: str | None
) -> RolloutState:
    """Decide the rollout in progress; when another controller holds it, say who acts."""
    settings = options.settings(ctx)
    rollouts = controller(settings, settings.rollout.driver, options.stores(ctx, settings).registry)
    who = options.actor_by_hand(actor, f"flywheel {decision}")
    if decision == "promote":
        state = rollouts.promote(reason, actor=who)
    else:
        state = rollouts.rollback(reason, actor=who)
    if not state.done:
        done = "promoted" if decision == "promote" else "rolled back"
        out.print(f"{state.canary} will be {done} by {_holder(rollouts)}, which holds the rollout")
    return state


def _holder(rollouts: RolloutController) -> str:
    return rollouts.lock.owner() if rollouts.lock is not None else "the running controller"
