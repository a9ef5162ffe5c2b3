from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from flywheel.components.baseline.component import baseline
from flywheel.config import Settings
from flywheel.registry import Registry
from flywheel.storage import LocalStore


def test_logic_returns_empty_then_the_production_version(
    small_settings: Callable[..., Settings],
) -> None:
    settings = small_settings()
    assert baseline.python_func(config=settings.to_json()) == ""
    registry = Registry(LocalStore(settings.storage.uri), settings.model_name)
    registry.register({"model.joblib": b"m"}, run_id="r")
    registry.move_alias("production", "v1", expected=None, reason="test")
    assert baseline.python_func(config=settings.to_json()) == "v1"


def test_under_kfp_local(
    small_settings: Callable[..., Settings], run_component: Callable[..., Path]
) -> None:
    settings = small_settings()
    task_dir = run_component(baseline, config=settings.to_json())
    assert (
        json.loads((task_dir / "executor_output.json").read_text())["parameterValues"]["Output"]
        == ""
    )
