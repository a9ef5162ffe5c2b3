"""A container's requests and limits: bad ones name their key and reason."""

from __future__ import annotations

import pytest

from flywheel.config import ConfigError, load_settings


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "pipeline.resources.default.cpu_limit=2 cores",
            "pipeline.resources.default.cpu_limit (from --set pipeline.resources.default.cpu_limit): "
            "Value error, must be a number of cores, e.g. 2 or 0.5, or of millicores, e.g. 500m "
            "(got '2 cores')",
        ),
        ("pipeline.resources.default.cpu_limit=-1", "must be a number of cores"),
        ("pipeline.resources.default.cpu_request=1.5Gi", "must be a number of cores"),
        ("pipeline.resources.default.memory_limit=1.5Gi", "must be a whole number of bytes"),
        ("pipeline.resources.default.memory_limit=2gb", "must be a whole number of bytes"),
        ("pipeline.resources.default.memory_limit=1.5", "must be a whole number of bytes"),
        ("pipeline.resources.steps.train.memory_limit=2GB", "must be a whole number of bytes"),
        (
            "pipeline.resources.default.memory_limit=true",
            "pipeline.resources.default.memory_limit (from --set pipeline.resources.default."
            "memory_limit): Input should be a valid string (got True)",
        ),
        (
            "pipeline.resources.default.gpu_limit=1",
            "pipeline.resources.default.gpu_limit (from --set pipeline.resources.default."
            "gpu_limit): unknown key",
        ),
        (
            "pipeline.resources.default.memory_request=2Gi",
            "pipeline.resources.default (from --set pipeline.resources.default.memory_request): "
            "Value error, memory_request 2Gi is above memory_limit 1Gi; "
            "Kubernetes refuses a request above its limit",
        ),
        (
            "pipeline.resources.steps.gate.cpu_request=2",
            "pipeline.resources (from --set pipeline.resources.steps.gate.cpu_request): "
            "Value error, steps.gate (on top of default): cpu_request 2 is above cpu_limit 1; "
            "Kubernetes refuses a request above its limit",
        ),
    ],
)
def test_bad_resources_name_the_key_path_and_reason(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(None, env={}, overrides=[override])
    assert expected in str(error.value)
    # a check across a whole section does not echo the section back
    assert "(got {" not in str(error.value)
