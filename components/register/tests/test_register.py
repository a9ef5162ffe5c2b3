from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import dsl

from flywheel import tasks
from flywheel.components.register.component import register
from flywheel.registry import MODEL_FILE, Registry
from harness.steps import Evaluated, artifact, assert_used, step_outputs


def inputs(evaluated: Evaluated) -> dict[str, Any]:
    """Everything the register step takes, as the steps before it leave them."""
    trained, folder = evaluated.trained, evaluated.evaluation.parent
    c = evaluated.config
    tasks.validate(c, trained.window.path, "", folder / "contract", folder / "validation")
    tasks.decide(c, evaluated.evaluation, folder / "decision")
    return {
        "model": artifact(dsl.Model, trained.model),
        "contract": artifact(dsl.Artifact, folder / "contract"),
        "evaluation": artifact(dsl.Artifact, evaluated.evaluation),
        "evaluation_report": artifact(dsl.HTML, evaluated.report),
        "decision": artifact(dsl.Artifact, folder / "decision"),
        "validation_report": artifact(dsl.Markdown, folder / "validation"),
        "window": artifact(dsl.Dataset, trained.window.path),
    }


PARAMS = {
    "run_id": "run-x",
    "git_commit": "deadbeef",
    "image": "img@sha256:abc",
    "image_digest": "sha256:abc",
}


def test_logic_registers_once_and_bootstraps_production(
    evaluated: Evaluated, tmp_path: Path
) -> None:
    artifacts = {**inputs(evaluated), "usage": artifact(dsl.Metrics, tmp_path / "usage")}
    assert register.python_func(config=evaluated.config, **artifacts, **PARAMS) == "v1"
    assert register.python_func(config=evaluated.config, **artifacts, **PARAMS) == "v1"
    reg = Registry.from_settings(evaluated.settings)
    assert reg.resolve("production") == "v1" and len(reg.history("candidate")) == 1
    assert reg.read("v1", MODEL_FILE) == evaluated.trained.model.read_bytes()
    lineage = json.loads(reg.read("v1", "lineage.json"))
    assert (lineage["image"], lineage["image_digest"], lineage["git_commit"]) == (
        "img@sha256:abc",
        "sha256:abc",
        "deadbeef",
    )
    manifest = json.loads((evaluated.trained.window.path / "manifest.json").read_text())
    assert lineage["data"]["content_hash"] == manifest["content_hash"]
    # without a reason, the run was started by hand
    assert lineage["trigger"] == {"reason": "manual run", "decision": None}


def test_under_kfp_local(evaluated: Evaluated, run_component: Callable[..., Path]) -> None:
    why = {"trigger_reason": "drift on income (PSI 0.31)", "trigger_decision": "triggers/d.json"}
    task_dir = run_component(
        register, artifacts=inputs(evaluated), config=evaluated.config, **PARAMS, **why
    )
    assert step_outputs(task_dir).parameters["Output"] == "v1"
    reg = Registry.from_settings(evaluated.settings)
    record = json.loads(reg.store.read("runs/run-x/registration.json"))
    assert record["version"] == "v1" and record["aliases"] == ["candidate", "production"]
    assert reg.read("v1", MODEL_FILE) == evaluated.trained.model.read_bytes()
    trigger = json.loads(reg.read("v1", "lineage.json"))["trigger"]
    assert trigger == {"reason": "drift on income (PSI 0.31)", "decision": "triggers/d.json"}
    assert_used(task_dir)
