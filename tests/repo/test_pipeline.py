"""The compiled pipeline: what `make compile` writes is current, loads back and is wired right."""

from __future__ import annotations

import itertools
from pathlib import Path

import yaml
from kfp import components

from flywheel import images, runs, tasks
from flywheel.config import load_settings
from flywheel.storage import S3_SECRET_KEYS

REPO = Path(__file__).resolve().parents[2]
COMPILED = REPO / "pipelines" / "compiled" / runs.PACKAGE_FILE
# `make compile` compiles with the shipped flywheel.yaml, which sets the steps' resources.
SHIPPED = load_settings(REPO / "flywheel.yaml", env={})


def test_the_committed_package_is_current() -> None:
    # CI fails on a stale file too; this says which command fixes it.
    assert COMPILED.read_text() == runs.compile_text(SHIPPED), (
        "run `make compile` and commit the result"
    )


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
        "pii_secret",
        "trigger_reason",
        "trigger_decision",
    }
    assert set(pipeline.component_spec.outputs) == {"window", "evaluation", "report", "decision"}


def test_wiring_gate_condition_caching_and_credentials() -> None:
    spec, platform = runs.compile_package(SHIPPED)
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
    # and ingest alone gets the salt of hashed pii columns, if its Secret exists
    salt = executors["exec-ingest"]["secretAsEnv"][1]
    assert salt["secretNameParameter"] == {"componentInputParameter": "pii_secret"}
    assert salt["keyToEnv"] == [{"envVar": "FLYWHEEL_PII_SALT", "secretKey": "FLYWHEEL_PII_SALT"}]
    assert salt["optional"] is True
    assert all(len(e["secretAsEnv"]) == 1 for n, e in executors.items() if n != "exec-ingest")


def test_every_step_uses_the_platform_image_without_installing_kfp() -> None:
    spec, _ = runs.compile_package(SHIPPED)
    containers = runs.executors(spec)
    assert len(containers) == 9
    for container in containers:
        assert container["image"] == images.COMPONENT_IMAGE
        assert "pip install" not in " ".join(container["command"])


def test_the_pipeline_runs_its_steps_in_the_order_tasks_writes_down() -> None:
    # tasks.STEPS is the one written order (run_in_process follows it too): every step
    # must come after the one before it in the compiled DAG, directly or through others.
    spec, _ = runs.compile_package(SHIPPED)
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


def test_each_step_requests_the_resources_the_configuration_gives_it() -> None:
    # given a default and overrides for two steps, one of them inside the gate's condition
    settings = load_settings(
        None,
        env={},
        overrides=[
            "pipeline.resources.default.cpu_request=100m",
            "pipeline.resources.default.cpu_limit=1.5",
            "pipeline.resources.default.memory_request=256Mi",
            "pipeline.resources.default.memory_limit=1G",
            "pipeline.resources.steps.train.cpu_limit=4",
            "pipeline.resources.steps.train.memory_limit=8Gi",
            "pipeline.resources.steps.register.memory_request=128Mi",
        ],
    )
    # when the pipeline is compiled
    spec, _ = runs.compile_package(settings)
    executors = spec["deploymentSpec"]["executors"]
    # then every step's container carries its requests and limits as set, in the quantity
    # strings Kubernetes gets and in the numbers (cores, GB) older KFP backends read
    expected = {step: ("100m", "1.5", "256Mi", "1G") for step in tasks.STEPS}
    expected["train"] = ("100m", "4", "256Mi", "8Gi")
    expected["register"] = ("100m", "1.5", "128Mi", "1G")
    found = {}
    for step in tasks.STEPS:
        resources = executors[f"exec-{step}"]["container"]["resources"]
        found[step] = tuple(
            resources[f"resource{key}"]
            for key in ("CpuRequest", "CpuLimit", "MemoryRequest", "MemoryLimit")
        )
        assert resources["cpuRequest"] == 0.1
        assert resources["memoryRequest"] == (0.134217728 if step == "register" else 0.268435456)
    assert found == expected
    assert executors["exec-train"]["container"]["resources"]["memoryLimit"] == 8.589934592


def test_the_committed_package_asks_for_the_shipped_resources() -> None:
    # given the committed package, read back as a cluster would get it
    spec = next(yaml.safe_load_all(COMPILED.read_text()))
    executors = spec["deploymentSpec"]["executors"]
    # then each step asks for what the shipped flywheel.yaml gives it, training for more
    for step in tasks.STEPS:
        resources = executors[f"exec-{step}"]["container"]["resources"]
        wanted = SHIPPED.pipeline.resources.for_step(step)
        assert resources["resourceCpuRequest"] == wanted.cpu_request
        assert resources["resourceCpuLimit"] == wanted.cpu_limit
        assert resources["resourceMemoryRequest"] == wanted.memory_request
        assert resources["resourceMemoryLimit"] == wanted.memory_limit
    assert SHIPPED.pipeline.resources.for_step("train") != SHIPPED.pipeline.resources.default
