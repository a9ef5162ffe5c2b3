"""The command line's one boundary: usage mistakes get click's usage and exit 2; expected
failures one line naming the problem and exit 1 (2 for configuration); never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from flywheel.cli import app
from harness.cli import Flywheel


def _commands() -> list[tuple[list[str], typer.main.TyperCommand]]:
    """Every leaf command with the words that reach it, e.g. (["models", "show"], cmd)."""
    found = []

    def walk(words: list[str], command: object) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk([*words, name], child)
        else:
            found.append((words, command))

    walk([], typer.main.get_command(app))
    return found


COMMANDS = _commands()
# Each required argument with the number of arguments before it (given, so that it is the
# one missing: `models diff v1` misses `second`).
REQUIRED = [
    (words, param.name, before)
    for words, command in COMMANDS
    for before, param in enumerate(
        p
        for p in command.params  # type: ignore[attr-defined]
        if p.required and p.param_type_name == "argument"
    )
]


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(words) for words, _ in COMMANDS}
    assert {"run", "serve", "deploy", "models show", "data generate", "rollout wait"} <= names
    assert ("deploy",) and (["models", "show"], "version", 0) in REQUIRED


@pytest.mark.parametrize("words", [w for w, _ in COMMANDS], ids=" ".join)
def test_every_command_refuses_an_unknown_option_with_its_usage(
    flywheel: Flywheel, words: list[str]
) -> None:
    result = flywheel(*words, "--nosuch")
    assert result.code == 2, result.text
    assert f"Usage: flywheel {' '.join(words)}" in result.text
    assert "No such option: --nosuch" in result.text
    assert "Traceback" not in result.text


@pytest.mark.parametrize(("words", "argument", "before"), REQUIRED, ids=lambda v: str(v))
def test_every_required_argument_is_named_when_missing(
    flywheel: Flywheel, words: list[str], argument: str, before: int
) -> None:
    result = flywheel(*words, *["v1"] * before)
    assert result.code == 2, result.text
    assert f"Missing argument '{argument}'" in result.text
    assert "Traceback" not in result.text


@pytest.mark.parametrize("command", ["nosuch", "simulat"])
def test_an_unknown_command_is_a_usage_error(flywheel: Flywheel, command: str) -> None:
    result = flywheel(command)
    assert result.code == 2
    assert f"No such command '{command}'" in result.text
    assert "Usage: flywheel" in result.text


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["serve", "--port", "abc"], "Invalid value for '--port'"),
        (["data", "generate", "--next", "-3"], "Invalid value for '--next'"),
        (["data", "generate", "--start", "2026-13-01"], "Invalid value for '--start'"),
        (["run", "--as-of", "yesterday"], "Invalid value for '--as-of'"),
        (["demo", "bad-candidate", "--kind", "nope"], "Invalid value for '--kind'"),
        (["deploy", "v2", "--driver", "ssh"], "Invalid value for '--driver'"),
    ],
)
def test_an_invalid_value_names_the_option(
    flywheel: Flywheel, config_file: Path, args: list[str], named: str
) -> None:
    result = flywheel("-c", str(config_file), *args)
    assert result.code == 2, result.text
    assert named in result.text
    assert "Traceback" not in result.text


def test_a_configuration_mistake_names_the_key_and_exits_2(
    flywheel: Flywheel, config_file: Path
) -> None:
    result = flywheel("-c", str(config_file), "--set", "data.source=gs://x", "data", "list")
    assert result.code == 2
    assert result.err.startswith("configuration error:")
    assert "data.source (from --set data.source)" in result.err
    assert "must be a directory or an s3://bucket/prefix URI (got 'gs://x')" in result.err


def test_an_unknown_flywheel_variable_is_refused_like_an_unknown_key(
    flywheel: Flywheel, config_file: Path
) -> None:
    result = flywheel(
        "-c", str(config_file), "config", "validate", env={"FLYWHEEL_MODLE__SEED": "3"}
    )
    assert result.code == 2
    assert "FLYWHEEL_MODLE__SEED: 'modle' is not a configuration section" in result.err
    # The variables Flywheel itself reads are not configuration keys and pass.
    assert (
        flywheel(
            "-c", str(config_file), "config", "validate", env={"FLYWHEEL_SERVING_PYTHON": "x"}
        ).code
        == 0
    )


@pytest.mark.parametrize("command", ["promote", "rollback"])
def test_promote_or_rollback_with_nothing_in_progress(
    flywheel: Flywheel, registered_config: Path, command: str
) -> None:
    result = flywheel("-c", str(registered_config), command)
    assert result.code == 1
    assert result.err.strip() == "error: no rollout of loan-default is in progress"


@pytest.mark.parametrize("how", ["--canary", "--direct"])
def test_deploying_the_version_already_in_production_is_refused(
    flywheel: Flywheel, registered_config: Path, how: str
) -> None:
    result = flywheel("-c", str(registered_config), "deploy", "production", how, "--no-traffic")
    assert result.code == 1, result.text
    assert "error: v1 is already in production" in result.err
    assert "Traceback" not in result.text


def test_serve_without_the_serving_environment(
    flywheel: Flywheel, registered_config: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-venv" / "bin" / "python"
    result = flywheel(
        "-c", str(registered_config), "serve", env={"FLYWHEEL_SERVING_PYTHON": str(missing)}
    )
    assert result.code == 1
    assert f"error: FLYWHEEL_SERVING_PYTHON is {missing}, which does not exist" in result.err


def test_a_bad_candidate_needs_something_in_production(
    flywheel: Flywheel, config_file: Path
) -> None:
    result = flywheel("-c", str(config_file), "demo", "bad-candidate")
    assert result.code == 1
    assert "has nothing in production: run the pipeline first" in result.err


@pytest.mark.parametrize("command", [["data", "list"], ["run"]])
def test_a_mistyped_data_directory_is_an_error_and_is_not_created(
    flywheel: Flywheel, config_file: Path, tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "batchs"
    result = flywheel("-c", str(config_file), "--set", f"data.source={typo}", *command)
    assert result.code == 1
    assert f"error: data.source: {typo}: no such directory" in result.err
    assert not typo.exists()
    assert not (tmp_path / "store").exists()  # nothing else was created either


def test_starting_the_command_line_loads_no_heavy_library() -> None:
    # Each command imports what it uses; `flywheel --help` or `flywheel models list` must
    # not pay for numpy, pandas, the rollout controller, the UI's asyncio or scikit-learn.
    import subprocess
    import sys

    heavy = ("numpy", "pandas", "pyarrow", "asyncio", "flywheel.rollout.controller", "sklearn")
    program = f"import sys, flywheel.cli; print([m for m in {heavy!r} if m in sys.modules])"
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
