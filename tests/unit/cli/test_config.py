"""`flywheel config`: the schema, the resolved values and where they came from."""

from __future__ import annotations

import json
from pathlib import Path

from harness.cli import Flywheel


def test_schema_is_the_settings_json_schema(flywheel: Flywheel) -> None:
    result = flywheel("config", "schema")
    assert result.code == 0
    schema = json.loads(result.out)
    assert schema["title"] == "Settings"
    assert "rollout" in schema["properties"]


def test_show_applies_the_file_then_the_environment_then_set(
    flywheel: Flywheel, config_file: Path
) -> None:
    # given a file, a variable and a flag that each set a key
    result = flywheel(
        "-c",
        str(config_file),
        "--set",
        "model.seed=7",
        "config",
        "show",
        env={"FLYWHEEL_MODEL__SEED": "5", "FLYWHEEL_ROLLOUT__MIN_REQUESTS": "33"},
    )
    # then --set wins over the variable, and the variable over the file
    shown = json.loads(result.out)
    assert shown["model"]["seed"] == 7
    assert shown["rollout"]["min_requests"] == 33
    assert shown["data"]["window_days"] == 5  # from the file


def test_validate_names_the_file_it_read(flywheel: Flywheel, config_file: Path) -> None:
    result = flywheel("-c", str(config_file), "config", "validate")
    assert result.code == 0
    assert result.out.strip() == f"valid: {config_file}"


def test_validate_of_a_broken_file_names_the_line(flywheel: Flywheel, tmp_path: Path) -> None:
    bad = tmp_path / "flywheel.yaml"
    bad.write_text("model:\n  search:\n    n_iter: 0\n")
    result = flywheel("-c", str(bad), "config", "validate")
    assert result.code == 2
    assert (
        f"model.search.n_iter ({bad}:3): Input should be greater than or equal to 1" in result.err
    )
