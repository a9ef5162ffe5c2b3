"""The compiled package: edits of its image and environment, and run ids.

The compiled package itself (current, loads back, wired right) is checked in
tests/repo/test_pipeline.py.
"""

from __future__ import annotations

import re

import pytest
import yaml

from flywheel import images
from flywheel.config import Settings
from flywheel.runs.package import (
    compile_package,
    customise,
    dump_package,
    executors,
    groups,
    new_run_id,
)


@pytest.fixture(scope="module")
def package() -> dict[str, object]:
    spec, _ = compile_package(Settings())
    return spec


def test_customise_swaps_the_image_and_adds_environment(package: dict[str, object]) -> None:
    changed = customise(package, image="ghcr.io/x/y@sha256:abc", env={"A": "1"})
    assert {c["image"] for c in executors(changed)} == {"ghcr.io/x/y@sha256:abc"}
    assert all({"name": "A", "value": "1"} in c["env"] for c in executors(changed))
    assert {c["image"] for c in executors(package)} == {images.COMPONENT_IMAGE}
    assert yaml.safe_load(dump_package([changed]))["deploymentSpec"] == changed["deploymentSpec"]


def test_customise_replaces_a_variable_rather_than_repeating_it(
    package: dict[str, object],
) -> None:
    once = customise(package, env={"FLYWHEEL_CODE_VERSION": "a", "B": "2"})
    twice = customise(once, env={"FLYWHEEL_CODE_VERSION": "b"})
    for container in executors(twice):
        names = [e["name"] for e in container["env"]]
        assert names.count("FLYWHEEL_CODE_VERSION") == 1
        assert {"name": "FLYWHEEL_CODE_VERSION", "value": "b"} in container["env"]
        assert {"name": "B", "value": "2"} in container["env"]


def test_executors_of_a_package_without_a_deployment_are_none() -> None:
    assert executors({}) == []
    assert executors({"deploymentSpec": {"executors": {"exec-x": {"importer": {}}}}}) == []


def test_run_ids_sort_by_time_and_differ() -> None:
    first, second = new_run_id(), new_run_id()
    assert re.fullmatch(r"run-\d{8}-\d{6}-[0-9a-f]{6}", first)
    assert first != second


def test_the_steps_inside_the_gates_condition_are_its_group(package: dict[str, object]) -> None:
    assert groups(package) == {"condition-1": ["deploy", "infra-validate", "register"]}
    assert groups({}) == {}
