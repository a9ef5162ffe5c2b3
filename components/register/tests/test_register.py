from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kfp import dsl

from flywheel import tasks
from flywheel.components.register.component import register
from flywheel.config import Settings
from flywheel.registry import Registry


def _inputs(
    settings: Settings, make_batches: Callable[..., list[str]], tmp_path: Path
) -> dict[str, tuple[type, Path]]:
    make_batches(settings, 4)
    c = settings.to_json()
    tasks.ingest(c, "", tmp_path / "w")
    tasks.validate(c, tmp_path / "w", "", tmp_path / "contract", tmp_path / "validation")
    tasks.train(c, tmp_path / "w", tmp_path / "model", tmp_path / "h")
    tasks.evaluate(
        c, tmp_path / "model", tmp_path / "h", tmp_path / "w", "", tmp_path / "e", tmp_path / "r"
    )
    tasks.decide(c, tmp_path / "e", tmp_path / "d")
    return {
        "model": (dsl.Model, tmp_path / "model"),
        "contract": (dsl.Artifact, tmp_path / "contract"),
        "evaluation": (dsl.Artifact, tmp_path / "e"),
        "evaluation_report": (dsl.HTML, tmp_path / "r"),
        "decision": (dsl.Artifact, tmp_path / "d"),
        "validation_report": (dsl.Markdown, tmp_path / "validation"),
        "window": (dsl.Dataset, tmp_path / "w"),
    }


PARAMS = {
    "run_id": "run-x",
    "git_commit": "deadbeef",
    "image": "img@sha256:abc",
    "image_digest": "sha256:abc",
}


def test_logic_registers_once_and_bootstraps_production(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    artifacts = {
        n: cls(name=n, uri=str(p), metadata={})
        for n, (cls, p) in _inputs(settings, make_batches, tmp_path).items()
    }
    assert register.python_func(config=settings.to_json(), **artifacts, **PARAMS) == "v1"
    assert register.python_func(config=settings.to_json(), **artifacts, **PARAMS) == "v1"
    reg = Registry.from_settings(settings)
    assert reg.resolve("production") == "v1" and len(reg.history("candidate")) == 1
    lineage = json.loads(reg.read("v1", "lineage.json"))
    assert (lineage["image"], lineage["image_digest"], lineage["git_commit"]) == (
        "img@sha256:abc",
        "sha256:abc",
        "deadbeef",
    )


def test_under_kfp_local(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    run_component: Callable[..., Path],
    tmp_path: Path,
) -> None:
    settings = small_settings()
    run_component(
        register,
        artifacts=_inputs(settings, make_batches, tmp_path),
        config=settings.to_json(),
        **PARAMS,
    )
    record = json.loads(Registry.from_settings(settings).store.read("runs/run-x/registration.json"))
    assert record["version"] == "v1" and record["aliases"] == ["candidate", "production"]
