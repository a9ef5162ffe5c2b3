from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kfp import dsl

from flywheel import tasks
from flywheel.components.gate.component import gate
from flywheel.config import Settings


def _evaluation(settings: Settings, make_batches: Callable[..., list[str]], tmp_path: Path) -> Path:
    make_batches(settings, 4)
    c = settings.to_json()
    tasks.ingest(c, "", tmp_path / "w")
    tasks.train(c, tmp_path / "w", tmp_path / "m", tmp_path / "h")
    tasks.evaluate(
        c, tmp_path / "m", tmp_path / "h", tmp_path / "w", "", tmp_path / "e", tmp_path / "r"
    )
    return tmp_path / "e"


def test_logic_blesses_or_not_with_reasons(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    evaluation = dsl.Artifact(
        name="e", uri=str(_evaluation(small_settings(), make_batches, tmp_path)), metadata={}
    )

    def run(settings: Settings) -> tuple[bool, dsl.Artifact]:
        decision = dsl.Artifact(name="d", uri=str(tmp_path / "d"), metadata={})
        report = dsl.Markdown(name="r", uri=str(tmp_path / "gate.md"), metadata={})
        return gate.python_func(
            config=settings.to_json(), evaluation=evaluation, decision=decision, report=report
        ), decision

    blessed, decision = run(small_settings())
    assert blessed and decision.metadata["reasons"] == []
    strict, decision = run(small_settings("promotion.min_metric=0.99"))
    assert not strict and "below the minimum 0.9900" in decision.metadata["reasons"][0]
    assert "# Gate: NOT BLESSED" in (tmp_path / "gate.md").read_text()


def test_under_kfp_local(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    run_component: Callable[..., Path],
    tmp_path: Path,
) -> None:
    settings = small_settings()
    path = _evaluation(settings, make_batches, tmp_path)
    task_dir = run_component(
        gate, artifacts={"evaluation": (dsl.Artifact, path)}, config=settings.to_json()
    )
    output = json.loads((task_dir / "executor_output.json").read_text())
    assert output["parameterValues"]["Output"] is True
