"""`flywheel simulate`'s bad input: refused before anything is written. A whole simulation
is in tests/integration/test_simulation.py (through the library, the same function)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import Flywheel


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--scenario", "drifty"], 2, "unknown scenario 'drifty': one of stable,"),
        (["--days", "0"], 2, "must be 1 or more, not 0"),
        (["--policy", "weekly"], 2, "unknown policy 'weekly': one of triggers,"),
        (["--servers", "--resume"], 1, "error: nothing to resume:"),
        (["--resume"], 1, "error: nothing to resume:"),
        (["--traffic", "0"], 1, "error: traffic must be 1 row a day or more, not 0"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(
    flywheel: Flywheel,
    config_file: Path,
    tmp_path: Path,
    options: list[str],
    code: int,
    message: str,
) -> None:
    # given a configuration and a place for the simulation
    out = tmp_path / "simulation"
    # when a simulation is asked with one bad option
    result = flywheel("-c", str(config_file), "simulate", "--out", str(out), *options)
    # then it exits with the usage code or 1, says why, without a traceback, and wrote nothing
    assert result.code == code, result.text
    assert message in " ".join(result.err.split()), result.err
    assert "Traceback" not in result.text
    assert not out.exists()
