"""Kubernetes CPU and memory quantities."""

from __future__ import annotations

import pytest

from flywheel.config import PipelineResources, cpu_cores, memory_bytes


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cpu_limit", "2"),
        ("cpu_limit", 2),
        ("cpu_limit", 0.5),
        ("cpu_limit", "1500m"),
        ("cpu_limit", ".5"),
        ("memory_limit", "2Gi"),
        ("memory_limit", "2G"),
        ("memory_limit", "2000Mi"),
        ("memory_limit", "3000000Ki"),
        ("memory_limit", 4294967296),
    ],
)
def test_quantities_kubernetes_and_kfp_both_accept(key: str, value: object) -> None:
    resources = PipelineResources.model_validate({"default": {key: value}})
    assert getattr(resources.default, key) == str(value)


def test_quantities_convert_to_cores_and_bytes() -> None:
    assert [cpu_cores(q) for q in ("2", "0.5", "250m", ".5")] == [2.0, 0.5, 0.25, 0.5]
    assert [memory_bytes(q) for q in ("1Ki", "1K", "3", "2Gi")] == [1024, 1000, 3, 2 * 1024**3]
    with pytest.raises(ValueError, match="not a memory quantity"):
        memory_bytes("1.5Gi")
