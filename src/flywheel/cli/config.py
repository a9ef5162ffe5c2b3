"""`flywheel config`: inspect and check the configuration."""

from __future__ import annotations

import json

import typer

from flywheel.cli import options
from flywheel.cli.render import out
from flywheel.config import json_schema

app = typer.Typer(help="Inspect and check the configuration.", no_args_is_help=True)


@app.command("schema")
def schema() -> None:
    """Print the JSON schema of flywheel.yaml."""
    out.print_json(json.dumps(json_schema()))


@app.command("show")
def show(ctx: typer.Context) -> None:
    """Print the resolved configuration (file, then environment, then --set)."""
    out.print_json(options.settings(ctx).to_json())


@app.command("validate")
def validate(ctx: typer.Context) -> None:
    """Check the configuration and say where it came from."""
    options.settings(ctx)
    out.print(f"[green]valid[/green]: {options.config_path(ctx) or 'built-in defaults'}")
