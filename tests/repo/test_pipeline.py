"""The compiled pipeline: what `make compile` writes is current, loads back and is wired right."""

from __future__ import annotations

import itertools
from pathlib import Path

from kfp import components

from flywheel import images, runs, tasks
from flywheel.storage import S3_SECRET_KEYS

COMPILED = Path(__file__).resolve().parents[2] / "pipelines" / "compiled" / runs.PACKAGE_FILE


def test_the_committed_package_is_current() -> None:
    # CI fails on a stale file too; this says which command fixes it.
    assert COMPILED.read_text() == runs.compile_text(), "run `make compile` and commit the result"


def test_the_package_loads_back_as_a_pipeline() -> None:
    pipeline = components.load_component_from_file(str(COMPILED))
    assert pipeline.name == "flywheel-training"
    assert set(pipeline.component_spec.inputs) == {
        "config",
        "run_id",
        "as_of",
        "git_commit",
        "image",
        "image_digest",
        "s3_secret",
    }
    assert set(pipeline.component_spec.outputs) == {"window", "evaluation", "report", "decision"}


def test_wiring_gate_condition_caching_and_credentials() -> None:
    spec, platform = runs.compile_package()
    root = spec["root"]["dag"]["tasks"]
    # The steps up to the gate at the top; the rest only when it blesses.
    assert set(root) == {*tasks.STEPS[: tasks.STEPS.index("gate") + 1], "condition-1"}
    condition = root["condition-1"]
    assert (
        condition["triggerPolicy"]["condition"]
        == "inputs.parameter_values['pipelinechannel--gate-Output'] == true"
    )
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert set(inner) == {"infra-validate", "register", "deploy"}
    assert inner["register"]["dependentTasks"] == ["infra-validate"]
    assert inner["deploy"]["dependentTasks"] == ["register"]
    assert inner["deploy"]["cachingOptions"] == {}
    # Steps that read mutable state or write it are never served from the cache.
    assert root["resolve"]["cachingOptions"] == {}
    assert inner["register"]["cachingOptions"] == {}
    assert root["train"]["cachingOptions"] == {"enableCache": True}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {
        "exec-resolve",
        "exec-ingest",
        "exec-validate",
        "exec-evaluate",
        "exec-register",
        "exec-deploy",
    }
    secret = executors["exec-ingest"]["secretAsEnv"][0]
    assert secret["secretNameParameter"] == {"componentInputParameter": "s3_secret"}
    assert {m["envVar"] for m in secret["keyToEnv"]} == set(S3_SECRET_KEYS.values())


def test_every_step_uses_the_platform_image_without_installing_kfp() -> None:
    spec, _ = runs.compile_package()
    containers = runs.executors(spec)
    assert len(containers) == 9
    for container in containers:
        assert container["image"] == images.COMPONENT_IMAGE
        assert "pip install" not in " ".join(container["command"])


def test_the_pipeline_runs_its_steps_in_the_order_tasks_writes_down() -> None:
    # tasks.STEPS is the one written order (run_in_process follows it too): every step
    # must come after the one before it in the compiled DAG, directly or through others.
    spec, _ = runs.compile_package()
    condition = spec["root"]["dag"]["tasks"]["condition-1"]
    upstream: dict[str, set[str]] = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        upstream[name] = set(task.get("dependentTasks", []))
    for name, task in spec["components"]["comp-condition-1"]["dag"]["tasks"].items():
        # Steps inside the gate's condition wait for whatever the condition waits for.
        upstream[name] = set(task.get("dependentTasks", [])) | {"condition-1"}
    assert set(condition.get("dependentTasks", [])) <= set(upstream)

    def before(step: str) -> set[str]:
        found: set[str] = set()
        frontier = [step]
        while frontier:
            for parent in upstream[frontier.pop()]:
                if parent not in found:
                    found.add(parent)
                    frontier.append(parent)
        return found

    assert {n for n in upstream if not n.startswith("condition")} == set(tasks.STEPS)
    for earlier, later in itertools.pairwise(tasks.STEPS):
        assert earlier in before(later), f"{later} does not wait for {earlier}"
