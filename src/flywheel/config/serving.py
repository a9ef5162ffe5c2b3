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
    max_mae_increase: float = Field(
        default=0.1,
        ge=0,
        description="a regression's check on labels: the canary's mean absolute error may be "
        "this share above stable's",
    )
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
    max_inconclusive: int = Field(
        default=12,
        ge=1,
        description="looks in a row that cannot measure (metrics or API server down, no "
        "series where traffic flows) before the canary is rolled back",
    )
    detect_accuracy_drop: Fraction = Field(
        default=0.1,
        gt=0,
        description="a step passes once the canary's accuracy is shown above the "
        "tolerated one less this: one this much worse passes with chance at most its check's level",
    )
    detect_mae_increase: float = Field(
        default=0.2,
        gt=0,
        description="a step passes once the canary's mean absolute error is shown below "
        "stable's times 1 + max_mae_increase + this: one this much worse passes with chance at "
        "most its check's level",
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


# A step's accuracy policy; "off" only comes from `rollout.accuracy: off`.
AccuracyPolicy = Literal["required", "optional", "off"]


class TrafficStep(Strict):
    """One canary step: its share of the traffic, and whether it must check accuracy (the
    task's check on labels: accuracy, or a regression's mean absolute error).

    `required`: the step waits for `checks.min_labelled` labels (until its timeout);
    `optional`: it may pass without them, and its decision record says so.
    """

    weight: int = Field(gt=0, le=100, description="canary traffic, in percent")
    accuracy: Literal["required", "optional"] = "optional"


def _step_form(value: object) -> object:
    # A plain number is the short form of a step: `steps: [10, {weight: 50, accuracy: required}]`.
    if isinstance(value, int) and not isinstance(value, bool):
        return {"weight": value}
    if not isinstance(value, dict | TrafficStep):
        raise ValueError(
            "a step is a traffic percentage, or {weight: PERCENT, accuracy: required|optional}"
        )
    return value


def _switch(value: object) -> object:
    # YAML 1.1 reads a bare `off` as false (and `on` as true), as PyYAML and Helm both do.
    if isinstance(value, bool):
        return "on" if value else "off"
    return {"true": "on", "false": "off"}.get(str(value).lower(), value)


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
    scrape_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how often Prometheus scrapes the model's pods (the chart's "
        "serviceMonitor.interval): a look sees traffic up to this late",
    )
    driver: Literal["local", "kubernetes"] = "local"
    accuracy: Annotated[Literal["on", "off"], BeforeValidator(_switch)] = Field(
        default="on",
        description="on: some step before 100% must require accuracy on delayed labels; "
        "off: no step checks it, and every decision record says so",
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[TrafficStep, ...]) -> tuple[TrafficStep, ...]:
        if not steps:
            raise ValueError("at least one traffic step is needed")
        weights = [s.weight for s in steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"traffic steps must increase, got {weights}")
        return steps

    @model_validator(mode="after")
    def _accuracy_gates(self) -> RolloutSettings:
        # Fail closed: a canary whose scores look alike while its accuracy dropped must
        # not reach production because a policy forgot to ask (plain numbers are optional).
        required = [s.weight for s in self.steps if s.accuracy == "required"]
        if self.accuracy == "off" and required:
            raise ValueError(
                f"rollout.accuracy is off, yet the steps at {required}% require accuracy: "
                "drop one or the other"
            )
        if self.accuracy == "on" and not [w for w in required if w < 100]:
            raise ValueError(
                f"no step before 100% requires accuracy (steps {list(self.weights)}; a plain "
                "number is a step whose accuracy is optional), so a canary whose accuracy "
                "dropped would be promoted unchecked: make one step {weight: N, accuracy: "
                "required}, or set rollout.accuracy: off to go without (its decisions say so)"
            )
        return self

    @model_validator(mode="after")
    def _can_fail_before_it_passes(self) -> RolloutSettings:
        # A check passes at min_requests: one that could only fail later never fails.
        if self.min_requests_to_fail > self.min_requests:
            raise ValueError(
                f"min_requests_to_fail ({self.min_requests_to_fail}) is above min_requests "
                f"({self.min_requests}): a step would pass before a breach could count"
            )
        return self

    @model_validator(mode="after")
    def _inconclusive_spans_two_scrapes(self) -> RolloutSettings:
        # One missed scrape (a Prometheus restart) must not roll back a healthy canary;
        # two in a row is a measurement that is broken. Argo Rollouts' consecutiveErrorLimit
        # of 4 assumes a look a minute; at a look every 5 s, 4 looks are 20 s.
        spans = self.checks.max_inconclusive * self.interval_seconds
        if self.driver == "kubernetes" and spans < 2 * self.scrape_interval_seconds:
            raise ValueError(
                f"checks.max_inconclusive ({self.checks.max_inconclusive}) looks every "
                f"{self.interval_seconds:g}s span {spans:g}s, less than two scrapes "
                f"({2 * self.scrape_interval_seconds:g}s at scrape_interval_seconds "
                f"{self.scrape_interval_seconds:g}): one missed scrape would roll back a "
                "healthy canary; raise max_inconclusive"
            )
        return self

    @property
    def weights(self) -> tuple[int, ...]:
        """Each step's canary traffic, in percent."""
        return tuple(s.weight for s in self.steps)

    def step_accuracy(self, step: int) -> AccuracyPolicy:
        """Step `step`'s accuracy policy (0-based), or "off" under `rollout.accuracy: off`."""
        return "off" if self.accuracy == "off" else self.steps[step].accuracy
