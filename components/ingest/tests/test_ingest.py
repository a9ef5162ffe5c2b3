from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kfp import dsl

from flywheel.components.ingest.component import ingest
from flywheel.config import Settings
from harness.steps import artifact, assert_used, step_outputs


def test_logic_collects_the_window_and_its_hash(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings("data.window_days=3")
    make_batches(settings, 4)
    window = artifact(dsl.Dataset, tmp_path / "window")
    digest = ingest.python_func(
        config=settings.to_json(),
        as_of="",
        fingerprint="",
        window=window,
        usage=artifact(dsl.Metrics, tmp_path / "usage"),
    )
    assert window.metadata["batches"] == ["2026-01-02", "2026-01-03", "2026-01-04"]
    assert window.metadata["content_hash"] == digest
    assert sorted(p.name for p in (tmp_path / "window").iterdir()) == [
        "2026-01-02.parquet",
        "2026-01-03.parquet",
        "2026-01-04.parquet",
        "manifest.json",
    ]


def test_under_kfp_local(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    run_component: Callable[..., Path],
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    task_dir = run_component(ingest, config=settings.to_json(), as_of="2026-01-02", fingerprint="")
    manifest = json.loads((task_dir / "window" / "manifest.json").read_text())
    assert [b["day"] for b in manifest["batches"]] == ["2026-01-01", "2026-01-02"]
    outputs = step_outputs(task_dir)
    assert outputs.parameters["Output"] == manifest["content_hash"]
    assert outputs.metadata["window"]["content_hash"] == manifest["content_hash"]
    assert outputs.metadata["window"]["batches"] == ["2026-01-01", "2026-01-02"]
    assert_used(task_dir)
