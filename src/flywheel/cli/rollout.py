"""`flywheel rollout`, `promote` and `rollback`: the rollout in progress, watched or decided."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from flywheel.cli import options
from flywheel.cli.render import out
from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.registry import Registry
from flywheel.rollout.controller import Driver, RolloutConflict, RolloutController, RolloutError
from flywheel.rollout.lock import ControllerBusy, Lock, StoreLock

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
    registry = registry or Registry.from_settings(settings)
    driver: Driver
    lock: Lock
    if driver_name == "kubernetes":
        from flywheel.rollout.kubernetes import KubernetesDriver
        from flywheel.rollout.lease import KubernetesLease

        driver = KubernetesDriver(settings)
        lock = KubernetesLease.for_settings(settings)
    else:
        from flywheel.rollout.controller import StateOnlyDriver

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
) -> None:
    """The rollout controller: drive any rollout in progress (Kubernetes driver) until
    stopped; between rollouts, keep the SeldonDeployment serving production, and canary
    a change of the chart's pod (a new image digest, resources) like a new version."""
    from flywheel.rollout.kubernetes import KubernetesDriver, serve_production

    settings = options.settings(ctx)
    rollouts = controller(settings, "kubernetes", options.stores(ctx, settings).registry)
    driver = rollouts.driver
    assert isinstance(driver, KubernetesDriver)
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
            if once:
                return
            time.sleep(settings.rollout.interval_seconds)
    finally:
        rollouts.let_go()


@app.command("wait")
def wait(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.", min=0)] = 3600,
) -> None:
    """Wait for the current rollout's decision: exit 0 if promoted, 1 if rolled back."""
    settings = options.settings(ctx)
    rollouts = controller(settings, "local", options.stores(ctx, settings).registry)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = rollouts.state()
        if state is None:
            raise RolloutError(f"no rollout of {settings.model_name} to wait for")
        if state.done:
            out.print(f"{state.canary} {state.phase.replace('_', ' ')}: {state.reason}")
            raise typer.Exit(0 if state.phase == "promoted" else 1)
        time.sleep(min(5.0, settings.rollout.interval_seconds))
    raise RolloutError(f"no decision after {timeout:.0f}s")


def promote(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Recorded with the decision.")] = "promoted by hand",
) -> None:
    """Promote the rollout in progress now, skipping its remaining steps."""
    settings = options.settings(ctx)
    rollouts = controller(settings, settings.rollout.driver, options.stores(ctx, settings).registry)
    state = rollouts.promote(reason)
    if not state.done:
        out.print(
            f"{state.canary} will be promoted by {_holder(rollouts)}, which holds the rollout"
        )
        return
    out.print(f"{state.canary} promoted: production is {state.canary}")


def rollback(
    ctx: typer.Context,
    reason: Annotated[
        str, typer.Option(help="Recorded with the decision.")
    ] = "rolled back by hand",
) -> None:
    """Roll back the rollout in progress now; production stays where it is."""
    settings = options.settings(ctx)
    rollouts = controller(settings, settings.rollout.driver, options.stores(ctx, settings).registry)
    state = rollouts.rollback(reason)
    if not state.done:
        out.print(
            f"{state.canary} will be rolled back by {_holder(rollouts)}, which holds the rollout"
        )
        return
    out.print(f"{state.canary} rolled back: production stays {state.stable}")


def _holder(rollouts: RolloutController) -> str:
    return rollouts.lock.owner() if rollouts.lock is not None else "the running controller"
