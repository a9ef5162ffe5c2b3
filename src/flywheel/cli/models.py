"""`flywheel models`: the registry's versions, aliases and lineage."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flywheel import lineage
from flywheel.cli import options, render
from flywheel.cli.render import out
from flywheel.registry import CANDIDATE, PRODUCTION, Registry

app = typer.Typer(help="The model registry: versions, aliases and lineage.", no_args_is_help=True)


def _registry(ctx: typer.Context) -> Registry:
    return options.stores(ctx, options.settings(ctx)).registry


@app.command("list")
def list_versions(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list incomplete versions of crashed runs.")
    ] = False,
) -> None:
    """List the versions of the configured model and the aliases on them."""
    registry = _registry(ctx)
    aliases: dict[str, list[str]] = {}
    for alias in (PRODUCTION, CANDIDATE):
        version = registry.resolve(alias)
        if version:
            aliases.setdefault(version, []).append(alias)
    title = f"{registry.model_name} in {registry.store.uri}"
    out.print(render.models_table(title, registry.versions(), aliases))
    if show_all:
        for version in registry.incomplete():
            out.print(f"{version}: incomplete (its run stopped before finishing; ignored)")


@app.command("show")
def show(
    ctx: typer.Context,
    version: Annotated[
        str, typer.Argument(help="A version (v3) or an alias (production, candidate).")
    ],
) -> None:
    """Show one version: files, metrics, lineage and alias history."""
    registry = _registry(ctx)
    resolved = registry.lookup(version)
    lineage = json.loads(registry.read(resolved, "lineage.json"))
    metrics = json.loads(registry.read(resolved, "metrics.json"))
    render.version_details(
        registry.manifest(resolved),
        registry.location(resolved),
        lineage,
        metrics,
        {alias: registry.history(alias) for alias in (PRODUCTION, CANDIDATE)},
    )


@app.command("diff")
def diff(
    ctx: typer.Context,
    first: Annotated[str, typer.Argument(help="The older version (v3) or an alias.")],
    second: Annotated[str, typer.Argument(help="The newer version (v4) or an alias.")],
) -> None:
    """What changed between two versions: configuration, data window, features, metrics and
    permutation importances (when evaluated)."""
    registry = _registry(ctx)
    versions = (registry.lookup(first), registry.lookup(second))
    sides = tuple(
        {
            "lineage": json.loads(registry.read(version, "lineage.json")),
            "metrics": json.loads(registry.read(version, "metrics.json")),
            "evaluation": json.loads(registry.read(version, "evaluation.json")),
        }
        for version in versions
    )
    render.version_diff(registry.model_name, versions, lineage.diff(sides[0], sides[1]))
