"""Kubernetes requests and limits of one container: a model server's, or a pipeline step's."""

from __future__ import annotations

from pydantic import model_validator

from flywheel.config.base import Strict
from flywheel.config.quantities import CpuQuantity, MemoryQuantity, cpu_cores, memory_bytes


class ResourceSettings(Strict):
    """Kubernetes resource requests and limits of one serving container."""

    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"


class StepResources(ResourceSettings):
    """The requests and limits of one pipeline step's container."""

    cpu_request: CpuQuantity = "250m"
    cpu_limit: CpuQuantity = "1"
    memory_request: MemoryQuantity = "512Mi"
    memory_limit: MemoryQuantity = "1Gi"

    @model_validator(mode="after")
    def _request_within_limit(self) -> StepResources:
        problem = self.above_limit()
        if problem:
            raise ValueError(problem)
        return self

    def above_limit(self) -> str | None:
        """Why Kubernetes would refuse these (a request above its limit), or None."""
        for kind, over in (
            ("cpu", cpu_cores(self.cpu_request) > cpu_cores(self.cpu_limit)),
            ("memory", memory_bytes(self.memory_request) > memory_bytes(self.memory_limit)),
        ):
            if over:
                request, limit = getattr(self, f"{kind}_request"), getattr(self, f"{kind}_limit")
                return (
                    f"{kind}_request {request} is above {kind}_limit {limit}; "
                    "Kubernetes refuses a request above its limit"
                )
        return None


class StepResourceOverrides(Strict):
    """What one step changes of the default; a key left out keeps the default's value."""

    cpu_request: CpuQuantity | None = None
    cpu_limit: CpuQuantity | None = None
    memory_request: MemoryQuantity | None = None
    memory_limit: MemoryQuantity | None = None
