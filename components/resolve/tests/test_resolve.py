from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.batches import BatchError
from flywheel.components.resolve.component import resolve
from flywheel.config import Settings
from flywheel.registry import Registry
from flywheel.storage import LocalStore


def test_logic_resolves_production_the_window_end_and_a_fingerprint(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]]
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    first = resolve.python_func(config=settings.to_json(), as_of="")
    assert (first.production, first.as_of) == ("", "2026-01-03")
    registry = Registry(LocalStore(settings.storage.uri), settings.model_name)
    registry.register({"model.joblib": b"m"}, run_id="r")
    registry.move_alias("production", "v1", expected=None, reason="test")
    again = resolve.python_func(config=settings.to_json(), as_of="2026-01-02")
    assert (again.production, again.as_of) == ("v1", "2026-01-02")
    # A re-delivered batch changes the fingerprint, so cached steps are not reused.
    path = Path(settings.data.source) / "2026-01-03.parquet"
    path.write_bytes(path.read_bytes() + b"")
    path.unlink()
    make_batches(settings, 1, start=first_day(settings, 3), seed=99)
    assert resolve.python_func(config=settings.to_json(), as_of="").fingerprint != first.fingerprint


def first_day(settings: Settings, n: int) -> object:
    from datetime import timedelta

    return settings.data.generator.start_date + timedelta(days=n - 1)


def test_logic_fails_clearly_without_data(small_settings: Callable[..., Settings]) -> None:
    settings = small_settings()
    Path(settings.data.source).mkdir(parents=True)
    with pytest.raises(BatchError, match="no batches in"):
        resolve.python_func(config=settings.to_json(), as_of="")


def test_under_kfp_local(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    run_component: Callable[..., Path],
) -> None:
    settings = small_settings()
    make_batches(settings, 2)
    task_dir = run_component(resolve, config=settings.to_json(), as_of="")
    values = json.loads((task_dir / "executor_output.json").read_text())["parameterValues"]
    assert (
        values["production"] == ""
        and values["as_of"] == "2026-01-02"
        and len(values["fingerprint"]) == 64
    )
