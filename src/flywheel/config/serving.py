"""Serving a model version, and the canary rollout of a new one."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from flywheel.config.base import Fraction, Name, Strict
from flywheel.config.resources import ResourceSettings
from flywheel.images import SERVING_IMAGE

# Bytes of log records a server holds before it drops new ones (serving.log_max_bytes).
LOG_MAX_BYTES = 4 * 1024 * 1024


class ServingSettings(Strict):
    """How a model version is served (seldon-core Python wrapper)."""

    image: str = SERVING_IMAGE
    image_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    namespace: Name = "flywheel"
    deployment: Name | None = Field(
        default=None, description="SeldonDeployment name (default: model_name)"
    )
    replicas: int = Field(default=1, ge=1, le=100)
    workers: int = Field(default=2, ge=1, le=64, description="gunicorn workers per container")
    max_rows: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_predictions: bool = True
    log_max_bytes: int = Field(
        default=LOG_MAX_BYTES,
        ge=65_536,
        description="Bytes of prediction and feedback records a server holds before "
        "it drops (and counts) new ones, the batch being written included",
    )
    resources: ResourceSettings = ResourceSettings()
    pod_template: Name | None = Field(
        default=None,
        description="PodTemplate (the chart's) whose pod spec and replicas the model's "
        "predictors take on a cluster; unset: rendered from these settings",
    )


# Keys a policy may still carry from before the one budget, and what replaced them.
_REPLACED_CHECKS = {
    "error_significance": "false_rollback_rate",
    "accuracy_significance": "false_rollback_rate",
    "divergence_significance": "false_rollback_rate",
    "min_requests_for_p99": "the latency check's own test",
}


class RolloutChecks(Strict):
    """What the canary is compared with the stable model on, at every step."""

    false_rollback_rate: float = Field(
        default=0.02,
        gt=0,
        lt=1,
        description="the chance, at most, that a healthy canary is rolled back by any check "
        "at any step, however often the controller looks: shared equally by every check at "
        "every step",
    )
    max_error_rate_increase: Fraction = 0.01
    max_p99_ratio: float = Field(default=1.5, ge=1.0)
    p99_floor_ms: float = Field(default=50.0, ge=0, description="p99 below this always passes")
    max_divergence: Fraction = Field(default=0.3, description="Jensen-Shannon distance of scores")
    max_accuracy_drop: Fraction = 0.05
    min_labelled: int = Field(default=100, ge=1)
    min_errors: int = Field(
        default=3, ge=1, description="failed canary requests before an error-rate breach counts"
    )
    detect_error_rate_increase: Fraction = Field(
        default=0.05,
        gt=0,
        description="a step passes once the canary's error rate is shown below the "
        "tolerated one plus this: one this much worse passes with chance at most its check's level",
    )
    detect_accuracy_drop: Fraction = Field(
        default=0.1,
        gt=0,
        description="a step passes once the canary's accuracy is shown above the "
        "tolerated one less this: one this much worse passes with chance at most its check's level",
    )

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: object) -> object:
        if isinstance(data, dict):
            old = sorted(set(data) & set(_REPLACED_CHECKS))
            if old:
                raise ValueError(
                    "; ".join(f"{key} was replaced by {_REPLACED_CHECKS[key]}" for key in old)
                    + " (one false-rollback budget for every check and step: docs/serving.md)"
                )
        return data


AccuracyPolicy = Literal["required", "optional"]


class TrafficStep(Strict):
    """One canary step: its share of the traffic, and whether it must check accuracy.

    `required`: the step waits for `checks.min_labelled` labels (until its timeout);
    `optional`: it may pass without them, and its decision record says so.
    """

    weight: int = Field(gt=0, le=100, description="canary traffic, in percent")
    accuracy: AccuracyPolicy = "optional"


def _step_form(value: object) -> object:
    # A plain number is the short form of a step: `steps: [10, {weight: 50, accuracy: required}]`.
    if isinstance(value, int) and not isinstance(value, bool):
        return {"weight": value}
    if not isinstance(value, dict | TrafficStep):
        raise ValueError(
            "a step is a traffic percentage, or {weight: PERCENT, accuracy: required|optional}"
        )
    return value


class RolloutSettings(Strict):
    """The canary policy: traffic steps and the analysis that gates each one."""

    steps: tuple[Annotated[TrafficStep, BeforeValidator(_step_form)], ...] = Field(
        default=(
            TrafficStep(weight=10),
            TrafficStep(weight=25),
            TrafficStep(weight=50, accuracy="required"),
            TrafficStep(weight=100),
        ),
        description="canary traffic steps, each a percentage or {weight, accuracy}",
    )
    min_requests: int = Field(
        default=200, ge=1, description="canary requests before a step can pass"
    )
    min_requests_to_fail: int = Field(
        default=20, ge=1, description="canary requests before a breach counts"
    )
    interval_seconds: float = Field(default=5.0, gt=0)
    step_timeout_seconds: float = Field(default=600.0, gt=0)
    checks: RolloutChecks = RolloutChecks()
    prometheus_url: str = "http://prometheus-operated.monitoring:9090"
    driver: Literal["local", "kubernetes"] = "local"

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[TrafficStep, ...]) -> tuple[TrafficStep, ...]:
        if not steps:
            raise ValueError("at least one traffic step is needed")
        weights = [s.weight for s in steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"traffic steps must increase, got {weights}")
        return steps

    @property
    def weights(self) -> tuple[int, ...]:
        """Each step's canary traffic, in percent."""
        return tuple(s.weight for s in self.steps)
