"""The training pipeline: its steps, where and how it runs, and each step's resources."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from flywheel.config.base import Name, Strict
from flywheel.config.resources import StepResourceOverrides, StepResources

# The training pipeline's steps, in the order they run (tasks.STEPS). They are named
# here, in the bottom layer, because the configuration refers to them.
Step = Literal[
    "resolve",
    "ingest",
    "validate",
    "train",
    "evaluate",
    "gate",
    "infra-validate",
    "register",
    "deploy",
]
STEPS: tuple[Step, ...] = get_args(Step)


class PipelineResources(Strict):
    """Every step's requests and limits: a default, and overrides by step name."""

    default: StepResources = StepResources()
    steps: dict[Step, StepResourceOverrides] = Field(
        default={}, description=f"Overrides by step: {', '.join(STEPS)}"
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> PipelineResources:
        for step in self.steps:
            merged = self.default.model_copy(update=self.steps[step].model_dump(exclude_none=True))
            problem = merged.above_limit()
            if problem:
                raise ValueError(f"steps.{step} (on top of default): {problem}")
        return self

    def for_step(self, step: str) -> StepResources:
        """The requests and limits of one step: its overrides on top of the default."""
        if step not in STEPS:
            raise ValueError(f"{step!r} is not a pipeline step (one of {', '.join(STEPS)})")
        overrides = self.steps.get(step)
        if overrides is None:
            return self.default
        return self.default.model_copy(update=overrides.model_dump(exclude_none=True))


class PipelineSettings(Strict):
    """Where and how the training pipeline runs."""

    root: str = ".flywheel/pipeline-root"
    caching: bool = True
    host: str | None = Field(default=None, description="KFP API endpoint for `flywheel submit`")
    token_env: str = Field(
        default="KFP_TOKEN",
        description="Variable holding the KFP API's bearer token (its name, never the token)",
    )
    experiment: str = "flywheel"
    s3_secret: Name = Field(default="flywheel-s3", description="Secret with the S3 keys on cluster")
    image: str | None = Field(
        default=None,
        description="Components image the cluster runs the steps in, ideally repo@sha256:... "
        "(`flywheel submit --image` wins; unset: the compiled package's)",
    )
    namespace: Name | None = Field(
        default=None, description="Kubeflow profile namespace runs go to (multi-user KFP)"
    )
    service_account: Name | None = Field(
        default=None,
        description="Service account the steps run as on the cluster (the deploy step patches "
        "the model's SeldonDeployment)",
    )
    resources: PipelineResources = Field(
        default=PipelineResources(),
        description="CPU and memory requests and limits of each step's container",
    )
