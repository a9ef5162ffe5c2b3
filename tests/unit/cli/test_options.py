"""The global options: which configuration file, overrides, and logging."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flywheel.cli import options
from harness.cli import Flywheel


def test_the_flywheel_yaml_in_the_working_directory_is_the_default(
    flywheel: Flywheel, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(config_file.parent)
    assert flywheel("config", "validate").out.strip() == "valid: flywheel.yaml"


def test_without_a_file_the_built_in_defaults_are_used(
    flywheel: Flywheel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert flywheel("config", "validate").out.strip() == "valid: built-in defaults"


def test_a_missing_file_is_named(flywheel: Flywheel, tmp_path: Path) -> None:
    result = flywheel("-c", str(tmp_path / "nope.yaml"), "config", "validate")
    assert result.code == 2
    assert f"{tmp_path / 'nope.yaml'}: no such configuration file" in result.err


def test_a_set_without_a_value_is_named(flywheel: Flywheel, config_file: Path) -> None:
    result = flywheel("-c", str(config_file), "--set", "model.seed", "config", "validate")
    assert result.code == 2
    assert "--set 'model.seed': expected key.path=value" in result.err


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (None, None),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T12:00", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01T12:00+02:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
    ],
)
def test_a_time_option_is_utc_unless_it_says_otherwise(
    value: str | None, parsed: datetime | None
) -> None:
    assert options.parse_time("--now", value) == parsed


def test_a_time_option_that_is_not_a_time_is_named() -> None:
    with pytest.raises(options.UsageFailure, match="--until 'soon' is not a date or time"):
        options.parse_time("--until", "soon")
