"""What a pipeline step takes and leaves in a test: KFP artifacts at local paths, the outputs
kfp.local recorded, and a small project's window ingested, trained and evaluated."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flywheel.config import Settings
from flywheel.usage import Usage

A = TypeVar("A")


def artifact(cls: type[A], path: Path) -> A:
    """A KFP artifact of class `cls` (dsl.Dataset, dsl.Model, ...) at a local path.

    For a component's `python_func` (inputs and outputs) and for `run_component`'s inputs.
    """
    return cls(name=path.name, uri=str(path), metadata={})  # type: ignore[call-arg]


@dataclass(frozen=True)
class StepOutputs:
    """What a step run by `run_component` returned: its parameters and its artifacts' metadata."""

    parameters: dict[str, Any]
    metadata: dict[str, dict[str, Any]]


def step_outputs(task_dir: Path) -> StepOutputs:
    """Read the executor_output.json that kfp.local's executor wrote into a task folder."""
    raw = json.loads((task_dir / "executor_output.json").read_text())
    return StepOutputs(
        parameters=raw.get("parameterValues", {}),
        metadata={
            name: output["artifacts"][0].get("metadata", {})
            for name, output in raw.get("artifacts", {}).items()
        },
    )


def assert_used(task_dir: Path) -> Usage:
    """The step run by `run_component` recorded its time, CPU seconds and peak memory in its
    `usage` Metrics (as the KFP UI shows them), and in the artifact's file."""
    recorded = step_outputs(task_dir).metadata["usage"]
    assert set(recorded) == {"seconds", "cpu_seconds", "peak_rss_mib"}
    used = Usage.from_metrics(recorded)
    assert used is not None and used == Usage.read(task_dir / "usage")
    assert used.seconds >= 0 and used.cpu_seconds >= 0
    # A Python process holds tens of MiB at least; KiB or bytes would be far off.
    assert 15 < used.peak_rss_mib < 4096
    return used


@dataclass(frozen=True)
class Ingested:
    """A small project's settings and a window folder as the ingest step writes it."""

    settings: Settings
    path: Path

    @property
    def config(self) -> str:
        """The settings as components take them."""
        return self.settings.to_json()


@dataclass(frozen=True)
class Trained:
    """An ingested window, the model trained on its older batches, the held-out rows, and the
    folder of baseline models (empty unless the settings set promotion.baseline)."""

    window: Ingested
    model: Path
    holdout: Path
    baselines: Path

    @property
    def settings(self) -> Settings:
        return self.window.settings

    @property
    def config(self) -> str:
        return self.window.config


@dataclass(frozen=True)
class Evaluated:
    """A trained model and its evaluation (JSON and HTML report), with nothing in production."""

    trained: Trained
    evaluation: Path
    report: Path

    @property
    def settings(self) -> Settings:
        return self.trained.settings

    @property
    def config(self) -> str:
        return self.trained.config
