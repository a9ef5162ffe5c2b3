"""The repository's promises about itself: components, lock files, pins and make targets."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from flywheel import predictor

REPO = Path(__file__).resolve().parents[2]


def _pins(lock: str) -> dict[str, str]:
    text = (REPO / "requirements" / lock).read_text()
    return {
        m.group(1).lower(): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", text, re.M)
    }


def test_every_component_folder_is_complete_and_packaged() -> None:
    packages = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = sorted(p.parent for p in (REPO / "components").glob("*/component.py"))
    assert len(folders) == 9
    for folder in folders:
        assert f"flywheel.components.{folder.name}" in packages, folder
        assert (folder / "README.md").is_file(), folder
        assert list((folder / "tests").glob("test_*.py")), folder


def test_every_library_package_is_packaged() -> None:
    packages = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    src = REPO / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.glob("flywheel/**/__init__.py")}
    assert found <= packages, found - packages


@pytest.mark.parametrize(
    "package", ["numpy", "scikit-learn", "scipy", "pandas", "joblib", "pyarrow"]
)
def test_training_and_serving_locks_agree_on_what_pickles_depend_on(package: str) -> None:
    versions = {lock: _pins(lock)[package] for lock in ("dev.txt", "pipelines.txt", "serving.txt")}
    assert len(set(versions.values())) == 1, versions


def test_infra_validation_pins_match_the_serving_lock() -> None:
    serving = _pins("serving.txt")
    assert {k: serving[k] for k in predictor.SERVING_PINS} == predictor.SERVING_PINS


def test_serving_uses_the_last_apache_licensed_seldon_core() -> None:
    serving, pipelines = _pins("serving.txt"), _pins("pipelines.txt")
    assert serving["seldon-core"] == "1.17.1"
    assert int(serving["protobuf"].split(".")[0]) < 4
    assert int(pipelines["protobuf"].split(".")[0]) >= 6
    assert "seldon-core" not in pipelines and "kfp" not in serving


def test_the_makefile_offers_the_promised_targets() -> None:
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.M))
    assert {
        "help",
        "setup",
        "run",
        "test",
        "lint",
        "format",
        "compile",
        "bench",
        "bench-pipeline",
        "clean",
        "tools",
    } <= targets


def test_ci_runs_make_test() -> None:
    assert "make test" in (REPO / ".ci" / "run").read_text()
