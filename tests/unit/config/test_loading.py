"""Loading: the shipped file, overrides in order, errors naming the key, where it was set and why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[3]


def test_shipped_config_is_valid() -> None:
    # given the flywheel.yaml at the top of the repository
    # when it is loaded with no environment
    settings = load_settings(REPO / "flywheel.yaml", env={})
    # then it validates and names the model
    assert settings.model_name == "loan-default"
    assert settings.model.search.enabled


def test_environment_and_set_override_the_file_in_order(tmp_path: Path) -> None:
    # given a file, an environment variable and a --set for the same key
    path = tmp_path / "f.yaml"
    path.write_text("model:\n  params:\n    max_iter: 10\n")
    env = {"FLYWHEEL_MODEL__PARAMS__MAX_ITER": "20", "FLYWHEEL_CONFIG": "ignored.yaml"}
    # when all three are applied
    from_env = load_settings(path, env=env)
    from_set = load_settings(path, env=env, overrides=["model.params.max_iter=30"])
    # then the environment beats the file and --set beats both, with YAML typing
    assert from_env.model.params["max_iter"] == 20
    assert from_set.model.params["max_iter"] == 30


def test_an_exponent_without_a_dot_is_a_number(tmp_path: Path) -> None:
    # given exponents as YAML 1.2 writes them, and Helm's toYaml (the chart's ConfigMap)
    path = tmp_path / "f.yaml"
    path.write_text("monitoring:\n  skew_tolerance: 1e-06\n")
    # when the file and a --set are loaded
    settings = load_settings(path, env={}, overrides=["monitoring.distance=2E-1"])
    # then both are numbers, as 1.0e-06 always was
    assert settings.monitoring.skew_tolerance == 1e-6
    assert settings.monitoring.distance == 0.2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model:\n  search:\n    n_iter: 0\n",
            "model.search.n_iter (f.yaml:3): Input should be greater than or equal to 1",
        ),
        ("model:\n  estimatr: x\n", "model.estimatr (f.yaml:2): unknown key"),
        (
            "data:\n  window_days: '14'\n",
            "data.window_days (f.yaml:2): Input should be a valid integer",
        ),
        (
            "model:\n  estimator: os.system\n",
            "model.estimator (f.yaml:2): Value error, must be a dotted path inside sklearn",
        ),
        (
            "promotion:\n  slices:\n    - column: income\n      min_metric: 0.5\n",
            "is not a categorical feature",
        ),
        ("features:\n  numeric: [a, a]\n", "column 'a' is listed twice"),
        (
            "promotion:\n  importance:\n    unimportant_features: drop\n",
            "promotion.importance.unimportant_features (f.yaml:3): Input should be 'allow' or 'refuse'",
        ),
        (
            "promotion:\n  importance:\n    repeats: 1\n",
            "promotion.importance.repeats (f.yaml:3): Input should be greater than or equal to 2",
        ),
        ("storage: [1, 2]\n", "storage (f.yaml:1): Input should be an object"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("model: {params: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_files_name_the_key_path_and_reason(
    refusal: Callable[[str], str], text: str, expected: str
) -> None:
    # given a configuration file with one mistake
    # when it is loaded, then the error names the key, the line and the reason
    assert expected in refusal(text)


def test_bad_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match=r"storage.secure \(from env FLYWHEEL_STORAGE__SECURE\)"):
        load_settings(None, env={"FLYWHEEL_STORAGE__SECURE": "perhaps"})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "absent.yaml", env={})


def test_cli_rejects_a_malformed_config_with_exit_code_2(tmp_path: Path) -> None:
    # given a file with a typo, when any command reads it through the real entry point
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text("pipeline:\n  cachng: true\n")
    result = subprocess.run(
        [sys.executable, "-m", "flywheel.cli", "-c", str(path), "run"],
        capture_output=True,
        text=True,
        check=False,
    )
    # then it exits 2 and names the key, before any pipeline step runs
    assert result.returncode == 2
    assert "pipeline.cachng" in result.stderr
    assert "unknown key" in result.stderr
