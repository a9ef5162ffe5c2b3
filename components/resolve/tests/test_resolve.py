from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from kfp import dsl

from flywheel import tasks
from flywheel.batches import BatchError
from flywheel.components.resolve.component import resolve
from flywheel.config import Settings
from flywheel.registry import Registry
from flywheel.storage import LocalStore
from harness.steps import artifact, assert_used, step_outputs


def test_logic_resolves_production_the_window_end_and_a_fingerprint(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    usage = artifact(dsl.Metrics, tmp_path / "usage")
    first = resolve.python_func(config=settings.to_json(), as_of="", usage=usage)
    assert (first.production, first.as_of) == ("", "2026-01-03")
    registry = Registry(LocalStore(settings.storage.uri), settings.model_name)
    registry.register({"model.joblib": b"m"}, run_id="r")
    registry.move_alias("production", "v1", expected=None, reason="test", actor="test")
    again = resolve.python_func(config=settings.to_json(), as_of="2026-01-02", usage=usage)
    assert (again.production, again.as_of) == ("v1", "2026-01-02")
    # A re-delivered batch changes the fingerprint, so cached steps are not reused.
    (Path(settings.data.source) / "2026-01-03.parquet").unlink()
    make_batches(settings, 1, start=settings.data.generator.start_date + timedelta(days=2), seed=99)
    redelivered = resolve.python_func(config=settings.to_json(), as_of="", usage=usage)
    assert redelivered.fingerprint != first.fingerprint


def test_logic_fails_clearly_without_data(
    small_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = small_settings()
    Path(settings.data.source).mkdir(parents=True)
    with pytest.raises(BatchError, match="no batches in"):
        resolve.python_func(
            config=settings.to_json(), as_of="", usage=artifact(dsl.Metrics, tmp_path / "usage")
        )


def test_under_kfp_local(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    run_component: Callable[..., Path],
) -> None:
    settings = small_settings()
    make_batches(settings, 2)
    task_dir = run_component(resolve, config=settings.to_json(), as_of="")
    values = step_outputs(task_dir).parameters
    assert values == {
        "production": "",
        "as_of": "2026-01-02",
        "fingerprint": tasks.resolve(settings.to_json(), "")["fingerprint"],
    }
    assert_used(task_dir)
