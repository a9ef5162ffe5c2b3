"""The pipeline's steps and each step's resources."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from flywheel.config import STEPS, ConfigError, PipelineResources, StepResources, load_settings


def pipeline_resources(text: str, tmp_path: Path) -> PipelineResources:
    """pipeline.resources as read from a file holding `text` under that key."""
    path = tmp_path / "f.yaml"
    path.write_text("pipeline:\n  resources:\n" + textwrap.indent(text, "    "))
    return load_settings(path, env={}).pipeline.resources


def test_every_step_gets_the_default_resources_unless_it_overrides_a_key(tmp_path: Path) -> None:
    # given a default and an override of two keys for train
    resources = pipeline_resources(
        "default: {cpu_request: 500m, cpu_limit: 2, memory_request: 1Gi, memory_limit: 2Gi}\n"
        "steps:\n  train: {cpu_limit: '4', memory_limit: 8Gi}\n",
        tmp_path,
    )
    # then train has its two keys and the default's others; every other step the default
    assert resources.for_step("train") == StepResources(
        cpu_request="500m", cpu_limit="4", memory_request="1Gi", memory_limit="8Gi"
    )
    for step in STEPS:
        if step != "train":
            assert resources.for_step(step) == resources.default
    # a YAML number is read as the quantity it spells
    assert resources.default.cpu_limit == "2"


def test_an_unknown_step_is_named_with_its_key_path_and_line(tmp_path: Path) -> None:
    # given an override for a step that does not exist (a typo of train)
    with pytest.raises(ConfigError) as error:
        pipeline_resources("steps:\n  trian: {memory_limit: 4Gi}\n", tmp_path)
    # then the error names the key path, where it is, and the steps there are
    assert str(error.value).replace(str(tmp_path) + "/", "") == (
        "f.yaml is not valid:\n"
        "  pipeline.resources.steps.trian (f.yaml:4): not a valid key: Input should be "
        "'resolve', 'ingest', 'validate', 'train', 'evaluate', 'gate', 'infra-validate', "
        "'register' or 'deploy'"
    )


def test_the_steps_named_in_config_are_the_steps_that_run() -> None:
    from flywheel import tasks

    assert tasks.STEPS is STEPS
    with pytest.raises(ValueError, match=r"'trian' is not a pipeline step \(one of resolve, "):
        PipelineResources().for_step("trian")


def test_a_step_may_override_a_limit_below_the_default_request_only_with_its_own_request() -> None:
    # given a default request of 512Mi: a step limited to 256Mi must also ask for less
    with pytest.raises(
        ValidationError, match=r"steps\.gate \(on top of default\): memory_request 512Mi is above"
    ):
        PipelineResources.model_validate({"steps": {"gate": {"memory_limit": "256Mi"}}})
    small = {"memory_request": "128Mi", "memory_limit": "256Mi"}
    resources = PipelineResources.model_validate({"steps": {"gate": small}})
    assert resources.for_step("gate").memory_limit == "256Mi"
