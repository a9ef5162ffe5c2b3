"""`flywheel serve` and `flywheel deploy`: a version behind the gateway, and rollouts."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

import typer

from flywheel.cli import options, render
from flywheel.cli.render import out
from flywheel.config import Settings
from flywheel.stores import Stores


def local_canary(
    settings: Settings, stores: Stores, version: str, rps: float, traffic: bool = True
) -> Any:
    """Roll `version` out as a local canary, printing each step; return the final state."""
    from flywheel.rollout import local

    out.rule(f"canary {settings.model_name} {version}")
    out.print(
        "Steps "
        + ", ".join(
            f"{s.weight}%" + (" (accuracy required)" if s.accuracy == "required" else "")
            for s in settings.rollout.steps
        )
        + f"; {settings.rollout.min_requests} canary requests per step, "
        + (f"synthetic traffic at {rps:g} req/s on loopback" if traffic else "no synthetic traffic")
    )
    started = time.monotonic()
    state, stats = local.local_canary(
        settings,
        stores.registry,
        stores.source,
        version,
        rps=rps,
        traffic=traffic,
        on_tick=render.tick_printer(started, len(settings.rollout.steps)),
    )
    colour = "green" if state.phase == "promoted" else "red"
    out.print(
        f"[{colour} bold]{state.phase.replace('_', ' ').upper()}[/] {version} after {time.monotonic() - started:.0f}s: {state.reason}"
    )
    if stats:
        out.print("Traffic: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
    return state


def serve(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="A version (v3) or alias.")] = "production",
    port: Annotated[int, typer.Option(help="Gateway port on 127.0.0.1.", min=1, max=65535)] = 8080,
) -> None:
    """Serve a version locally: a seldon-core microservice behind the gateway, until Ctrl-C or SIGTERM."""
    from flywheel.contract import Contract
    from flywheel.rollout.local import LocalDriver

    settings = options.settings(ctx)
    registry = options.stores(ctx, settings).registry
    resolved = registry.lookup(version)
    example = Contract.from_json(registry.read(resolved, "contract.json")).typical_row()
    with LocalDriver(settings, gateway_port=port) as driver:
        driver.serve(resolved)
        url = f"{driver.gateway_url}/api/v1.0/predictions"
        out.print(f"Serving {settings.model_name} {resolved} at {url} (Ctrl-C stops)")
        body = json.dumps({"jsonData": [example]})
        out.print(
            f"Try: curl -s {url} -H 'Content-Type: application/json' -d '{body}'", highlight=False
        )
        while True:
            time.sleep(3600)


def deploy(
    ctx: typer.Context,
    version: Annotated[
        str, typer.Argument(help="The version to roll out (v3), or an alias such as candidate.")
    ],
    canary: Annotated[
        bool,
        typer.Option(
            "--canary/--direct", help="Canary steps with analysis, or straight to production."
        ),
    ] = True,
    driver: Annotated[
        Literal["local", "kubernetes"] | None,
        typer.Option(help="local or kubernetes (default: rollout.driver)."),
    ] = None,
    rps: Annotated[
        float, typer.Option(help="Local driver: synthetic requests per second.", min=0.1)
    ] = options.CANARY_RPS,
    traffic: Annotated[bool, typer.Option(help="Local driver: send synthetic traffic.")] = True,
    actor: Annotated[
        str | None,
        typer.Option(
            help="With --direct, who deploys: the actor of production's new alias revision "
            "(default: $USER). A canary is promoted by its rollout."
        ),
    ] = None,
) -> None:
    """Roll a registered version out: canary steps, analysis, then promotion or rollback."""
    from flywheel.cli.rollout import controller

    settings = options.settings(ctx)
    if driver is not None:
        settings = settings.model_copy(
            update={"rollout": settings.rollout.model_copy(update={"driver": driver})}
        )
    stores = options.stores(ctx, settings)
    resolved = stores.registry.lookup(version)
    if not canary:
        state = controller(settings, settings.rollout.driver, stores.registry).deploy_direct(
            resolved, actor=options.actor_by_hand(actor, "flywheel deploy --direct")
        )
        out.print(f"production: {state.stable or 'nothing'} -> {state.canary}")
        return
    if settings.rollout.driver == "kubernetes":
        from flywheel.rollout.kubernetes import start_on_cluster
        from flywheel.rollout.lease import KubernetesLease

        # The pipeline's deploy step does the same: a canary already under way is resumed.
        lease = KubernetesLease.for_settings(settings)
        started = start_on_cluster(settings, stores.registry, resolved, lock=lease)
        out.print(
            f"{started['version']}: {started['action']} ({started['reason']}); "
            "the controller (`flywheel rollout watch`) takes it from here"
        )
        return
    state = local_canary(settings, stores, resolved, rps, traffic)
    if state.phase != "promoted":
        raise typer.Exit(1)
