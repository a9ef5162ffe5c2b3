"""The `flywheel` command line: one module per sub-app, the rendering in `render`.

Every expected failure is a FlywheelError, caught once in `main` and printed as
one line; usage mistakes get click's usage message and exit code 2.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import typer

from flywheel.cli import config, data, demo, models, monitor, options, pipeline, rollout, serving
from flywheel.cli import simulate as simulate_command
from flywheel.cli import triggers as triggers_command
from flywheel.cli import ui as ui_command
from flywheel.cli import watch as watch_command
from flywheel.cli.render import err
from flywheel.config import ConfigError
from flywheel.errors import FlywheelError

app = typer.Typer(
    help=(
        "Flywheel: dated batches in, validated models out, on a laptop (kfp.local) "
        "or a Kubeflow Pipelines cluster."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(options.global_options)
app.add_typer(config.app, name="config")
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(rollout.app, name="rollout")
app.add_typer(demo.app, name="demo")
app.add_typer(triggers_command.app, name="triggers")
app.command("run")(pipeline.run)
app.command("compile")(pipeline.compile_pipeline)
app.command("submit")(pipeline.submit)
app.command("serve")(serving.serve)
app.command("deploy")(serving.deploy)
app.command("promote")(rollout.promote)
app.command("rollback")(rollout.rollback)
app.command("monitor")(monitor.monitor)
app.command("watch")(watch_command.watch)
app.command("simulate")(simulate_command.simulate)
app.command("ui")(ui_command.ui)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C does, so every `finally` stops the processes it started.
    # A second SIGTERM during that clean-up is ignored rather than cutting it short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def main() -> None:
    """Console entry point: expected failures become one clear line and a non-zero exit."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()  # standalone: click prints usage errors itself and exits 2
    except ConfigError as error:
        err.print(f"[red]configuration error:[/] {error}", highlight=False)
        sys.exit(2)
    except FlywheelError as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
