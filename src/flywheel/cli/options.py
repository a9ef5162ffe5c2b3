"""The global options, and the configuration each command reads through them."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from flywheel.config import DEFAULT_CONFIG, Settings, load_settings
from flywheel.errors import FlywheelError
from flywheel.stores import Stores

# Synthetic requests per second a local canary replays: 200 canary requests a step take
# 20 s at its first 10% step (50 s at the 40 req/s of before); the gateway and a model
# with two workers keep up with 200 req/s on two cores (`make soak`).
CANARY_RPS = 100.0


class UsageFailure(FlywheelError):
    """A value the command line accepted but Flywheel cannot use; exit code 1."""


def global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="FLYWHEEL_CONFIG",
            help=f"Configuration file (default: ./{DEFAULT_CONFIG} if present).",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one key, e.g. --set model.params.max_iter=50 (repeatable). "
            "FLYWHEEL_<SECTION>__<KEY> variables override the file too.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Global options; the configuration is read lazily by the commands that need it."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if config is None and Path(DEFAULT_CONFIG).exists():
        config = Path(DEFAULT_CONFIG)
    ctx.obj = {"path": config, "overrides": list(overrides or [])}


Actor = Annotated[
    str | None,
    typer.Option(help="Who starts the run, kept in its run record (default: $USER)."),
]


def actor(given: str | None) -> str | None:
    """The person starting a run or deciding by hand: --actor, else $USER; None when neither
    says."""
    return given or os.environ.get("USER") or None


DecidedBy = Annotated[
    str | None,
    typer.Option(
        "--actor",
        help="Who decides, recorded as the actor of the alias revision it makes (default: $USER).",
    ),
]


def actor_by_hand(given: str | None, command: str) -> str:
    """Who moves an alias by hand, as its revision records it: the person (--actor, else
    $USER) and their command, `ada (flywheel promote)`; the command alone when neither says."""
    person = actor(given)
    return f"{person} ({command})" if person else command


def settings(ctx: typer.Context, *extra: str) -> Settings:
    """The configuration: the file, then FLYWHEEL_* variables, then --set, then `extra`."""
    obj = ctx.find_root().obj
    return load_settings(obj["path"], overrides=[*obj["overrides"], *extra])


def stores(ctx: typer.Context, settings: Settings) -> Stores:
    """The stores `settings` name, built once per invocation (each store opened at its first
    use); the command hands them, or their registry, source and ledger, down."""
    obj = ctx.find_root().obj
    if "stores" not in obj:
        obj["stores"] = Stores(settings)
    opened: Stores = obj["stores"]
    return opened


def config_path(ctx: typer.Context) -> Path | None:
    """The configuration file in use, if any."""
    path: Path | None = ctx.find_root().obj["path"]
    return path


def parse_time(option: str, value: str | None) -> datetime | None:
    """An option's ISO date or time (UTC unless it says otherwise), or None if not given."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageFailure(
            f"{option} {value!r} is not a date or time like 2026-03-01 or 2026-03-01T12:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
