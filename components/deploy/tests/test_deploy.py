"""The deploy step: under kfp.local against a real kube-apiserver, and with the local driver."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl

from flywheel import tasks
from flywheel.components.deploy.component import deploy
from flywheel.config import Settings
from flywheel.registry import Registry
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.kubernetes import KubernetesDriver
from harness.deployments import seldon_predictors
from harness.steps import artifact, assert_used, step_outputs


@pytest.mark.integration
def test_the_deploy_step_serves_the_first_model_then_starts_canaries(
    kube: Any,
    namespace: str,
    two_versions: Settings,
    run_component: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))  # read inside the step's subprocess
    config = two_versions.to_json()
    first = run_component(deploy, config=config, version="v1")
    assert json.loads(step_outputs(first).parameters["Output"])["action"] == "serving"
    assert_used(first)
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 100)}
    second = json.loads(
        step_outputs(run_component(deploy, config=config, version="v2")).parameters["Output"]
    )
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 90), "b": ("v2", 10)}
    reg = Registry.from_settings(two_versions)
    state = RolloutController(reg, KubernetesDriver(two_versions), two_versions.rollout).state()
    assert state is not None and (state.phase, state.canary, state.stable) == (
        "progressing",
        "v2",
        "v1",
    )
    assert (second["action"], second["rollout_id"], second["weight"]) == (
        "canary",
        state.rollout_id,
        10,
    )
    # A retried step resumes the canary instead of failing or starting another.
    again = tasks.deploy(config, "v2")
    assert (again["action"], again["rollout_id"]) == ("canary", state.rollout_id)
    assert reg.resolve("production") == "v1"


def test_the_deploy_step_does_nothing_with_the_local_driver(
    small_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    usage = artifact(dsl.Metrics, tmp_path / "usage")
    result = json.loads(
        deploy.python_func(config=small_settings().to_json(), version="v1", usage=usage)
    )
    assert result["action"] == "none" and "flywheel run --deploy" in result["reason"]
