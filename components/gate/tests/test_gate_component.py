from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kfp import dsl

from flywheel.components.gate.component import gate
from flywheel.config import Settings
from harness.steps import Evaluated, artifact, assert_used, step_outputs


def test_logic_blesses_or_not_with_reasons(
    evaluated: Evaluated, small_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    def run(settings: Settings) -> tuple[bool, dsl.Artifact]:
        decision = artifact(dsl.Artifact, tmp_path / "decision")
        return gate.python_func(
            config=settings.to_json(),
            evaluation=artifact(dsl.Artifact, evaluated.evaluation),
            decision=decision,
            report=artifact(dsl.Markdown, tmp_path / "gate.md"),
            usage=artifact(dsl.Metrics, tmp_path / "usage"),
        ), decision

    blessed, decision = run(evaluated.settings)
    assert blessed is True and decision.metadata == {"blessed": True, "reasons": []}
    assert (tmp_path / "gate.md").read_text().startswith("# Gate: BLESSED")
    strict, decision = run(small_settings("promotion.min_metric=0.99"))
    assert strict is False and decision.metadata["blessed"] is False
    assert "below the minimum 0.9900" in decision.metadata["reasons"][0]
    assert "# Gate: NOT BLESSED" in (tmp_path / "gate.md").read_text()
    assert json.loads((tmp_path / "decision").read_text())["blessed"] is False


def test_under_kfp_local(evaluated: Evaluated, run_component: Callable[..., Path]) -> None:
    task_dir = run_component(
        gate,
        artifacts={"evaluation": artifact(dsl.Artifact, evaluated.evaluation)},
        config=evaluated.config,
    )
    outputs = step_outputs(task_dir)
    assert outputs.parameters["Output"] is True
    assert outputs.metadata["decision"] == {"blessed": True, "reasons": []}
    assert json.loads((task_dir / "decision").read_text())["blessed"] is True
    assert (task_dir / "report").read_text().startswith("# Gate: BLESSED")
    assert_used(task_dir)
