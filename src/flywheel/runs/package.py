"""The compiled training pipeline: the package a local run and a cluster run both execute."""

from __future__ import annotations

import copy
import secrets
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from flywheel.config import Settings

PACKAGE_FILE = "training.yaml"


def compile_text(settings: Settings) -> str:
    """The compiled training pipeline as the KFP compiler writes it.

    The settings give each step's resources; everything else reaches the steps as
    run parameters.
    """
    from kfp import compiler

    from flywheel.pipelines.training import build_training_pipeline

    pipeline = build_training_pipeline(settings.pipeline.resources, settings.contract.pii_salt_env)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PACKAGE_FILE
        compiler.Compiler().compile(pipeline, str(path))
        return path.read_text()


def compile_package(settings: Settings) -> list[dict[str, Any]]:
    """The compiled training pipeline: its PipelineSpec and, second, its Kubernetes PlatformSpec."""
    return [doc for doc in yaml.safe_load_all(compile_text(settings)) if doc]


def dump_package(docs: list[dict[str, Any]]) -> str:
    """YAML text of a compiled package."""
    return yaml.safe_dump_all(docs, sort_keys=True)


def write_package(settings: Settings, out_dir: Path) -> Path:
    """Write the compiled pipeline (for `make compile` and CI)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PACKAGE_FILE
    path.write_text(compile_text(settings))
    return path


def executors(package: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The container specs of a compiled pipeline's executors."""
    deployment = package.get("deploymentSpec", {}).get("executors", {})
    return [spec["container"] for spec in deployment.values() if "container" in spec]


def groups(package: Mapping[str, Any]) -> dict[str, list[str]]:
    """The tasks inside each group task of a compiled pipeline (a dsl.If's condition-N)."""
    components = package.get("components", {})
    found = {}
    for name, task in package.get("root", {}).get("dag", {}).get("tasks", {}).items():
        inner = components.get(task["componentRef"]["name"], {}).get("dag", {}).get("tasks")
        if inner:
            found[name] = sorted(inner)
    return found


def customise(
    package: Mapping[str, Any],
    *,
    image: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A copy of a compiled pipeline with another image and extra environment variables."""
    out = copy.deepcopy(dict(package))
    for container in executors(out):
        if image:
            container["image"] = image
        if env:
            kept = [e for e in container.get("env", []) if e["name"] not in env]
            container["env"] = kept + [{"name": k, "value": v} for k, v in sorted(env.items())]
    return out


def new_run_id() -> str:
    """A sortable, unique run id."""
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
