"""`flywheel demo`: drills with deliberately faulty candidates."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from flywheel.cli import options
from flywheel.cli.render import out

app = typer.Typer(help="Drills: faulty candidates that a canary must catch.", no_args_is_help=True)


@app.command("bad-candidate")
def bad_candidate(
    ctx: typer.Context,
    kind: Annotated[
        Literal["errors", "slow", "shuffled"],
        typer.Option(help="errors (every request fails), slow, or shuffled (wrong answers)."),
    ] = "errors",
) -> None:
    """Register a deliberately faulty version, to watch a canary roll it back."""
    from flywheel.rollout.faults import register_faulty

    settings = options.settings(ctx)
    stores = options.stores(ctx, settings)
    version = register_faulty(settings, stores.registry, stores.source, kind)
    out.print(
        f"registered {version}, a deliberately faulty ({kind}) model. Try: flywheel deploy {version} --canary"
    )
