"""Monitoring of the served model, and the triggers that start a retraining run from it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from flywheel import cron
from flywheel.config.base import Column, Fraction, Strict


class MonitoringSettings(Strict):
    """`flywheel monitor`: windows of the prediction log, drift tests and their thresholds."""

    window: Literal["hour", "day"] = "day"
    windows: int = Field(default=7, ge=1, le=1000, description="Complete windows to look back")
    label_delay_days: int = Field(
        default=7, ge=0, le=366, description="How long after a window its labels may arrive"
    )
    large_window_rows: int = Field(
        default=1000, ge=1, description="Above this, distances replace KS and chi-square"
    )
    p_value: Fraction = Field(default=0.05, description="KS and chi-square: drift below this")
    distance: float = Field(default=0.1, gt=0, description="Wasserstein (normed) and JS limit")
    drifted_share: Fraction = Field(default=0.5, description="Dataset drift above this share")
    skew_sample: int = Field(default=200, ge=1, le=100_000, description="Rows re-scored offline")
    skew_tolerance: float = Field(default=1e-5, gt=0, description="Largest score difference")
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    calibration: Literal["evaluation", "none"] = Field(
        default="evaluation",
        description="CBPE: recalibrate scores on the evaluation's reliability curve, or trust them",
    )
    pushgateway: str | None = Field(
        default=None, description="Push each run's metrics to this Prometheus Pushgateway URL"
    )


Severity = Literal["low", "high"]


def _cron(value: str) -> str:
    try:
        cron.parse(value)
    except cron.CronError as error:
        raise ValueError(str(error)) from None
    return value


CronText = Annotated[str, AfterValidator(_cron)]


class ScheduleTrigger(Strict):
    """Retrain when a cron tick (UTC) has passed since the last run started."""

    cron: CronText = Field(
        default="0 3 * * 1",
        description="Five-field cron in UTC (minute hour day-of-month month day-of-week) or "
        "@daily/@weekly/...; fires once a tick has passed since the last run started",
    )
    severity: Severity = "low"


class NewDataTrigger(Strict):
    """Retrain when enough new daily batches arrived since the data of the last run."""

    batches: int = Field(
        default=7, ge=1, le=366, description="New batches since the newest one the last run read"
    )
    severity: Severity = "low"


class DriftTrigger(Strict):
    """Retrain when serving inputs drift from the production version's reference, window after
    window (monitoring's feature drift)."""

    share: Fraction | None = Field(
        default=0.3,
        description="Fire when more than this share of features drifted (monitoring's tests); "
        "null: only the named features' PSI",
    )
    features: dict[Column, float] = Field(
        default={},
        description="PSI threshold by feature name: fire when one feature's PSI is above its own",
    )
    windows: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Consecutive newest windows that must all drift (one drifted window is noise)",
    )
    severity: Severity = "low"

    @field_validator("features")
    @classmethod
    def _psi_positive(cls, features: dict[str, float]) -> dict[str, float]:
        for name, threshold in features.items():
            if not 0 < threshold <= 10:
                raise ValueError(f"{name}: a PSI threshold must be above 0 and at most 10")
        return features

    @model_validator(mode="after")
    def _can_fire(self) -> DriftTrigger:
        if self.share is None and not self.features:
            raise ValueError(
                "set share, or PSI thresholds under features (or drift: null to turn it off)"
            )
        if self.share is not None and self.share >= 1:
            raise ValueError("share must be below 1: no share of features can be above 1")
        return self


class PerformanceTrigger(Strict):
    """Retrain when a metric on delayed labels is significantly low: the upper bound of its
    confidence interval (monitoring.confidence) is below the floor, or below the offline
    figure by more than max_drop."""

    metric: Literal["accuracy", "roc_auc"] = "accuracy"
    floor: Fraction | None = Field(default=None, description="Fire when surely below this")
    max_drop: Fraction | None = Field(
        default=0.03,
        description="Fire when surely below the version's offline evaluation minus this",
    )
    min_labelled: int = Field(default=100, ge=1, description="Labelled rows a window needs")
    severity: Severity = "high"

    @model_validator(mode="after")
    def _can_fire(self) -> PerformanceTrigger:
        if self.floor is None and self.max_drop is None:
            raise ValueError("set floor or max_drop (or set it to null to turn it off)")
        if self.floor is not None and self.floor <= 0:
            raise ValueError("floor must be above 0: no interval is surely below 0")
        return self


class EstimatedPerformanceTrigger(PerformanceTrigger):
    """Retrain when monitoring's CBPE estimate (before labels arrive) is significantly low in
    each of the newest windows; an estimate, so low severity by default."""

    max_drop: Fraction | None = Field(
        default=0.05,
        description="Fire when surely below the version's offline evaluation minus this",
    )
    windows: int = Field(default=2, ge=1, le=1000, description="Consecutive windows that must fire")
    min_labelled: int = Field(default=100, ge=1, description="Served rows a window needs")
    severity: Severity = "low"


class CodeChangeTrigger(Strict):
    """Retrain when CI reports a commit or image digest other than production's lineage
    (`flywheel triggers check --commit/--image`, or FLYWHEEL_GIT_COMMIT/FLYWHEEL_IMAGE)."""

    severity: Severity = "low"


class TriggerSettings(Strict):
    """The trigger engine's one policy: what starts a retraining run, and what holds it back.

    A trigger set to null is off. Safeguards: a run is not started while another one is in
    flight, beyond the daily budget, while held (`flywheel triggers hold`), or within the
    cooldown of the last one unless a high-severity trigger fired. `--force` bypasses the
    cooldown and the budget, never a hold or a run in flight.
    """

    schedule: ScheduleTrigger | None = ScheduleTrigger()
    new_data: NewDataTrigger | None = None
    drift: DriftTrigger | None = DriftTrigger()
    performance: PerformanceTrigger | None = PerformanceTrigger()
    estimated_performance: EstimatedPerformanceTrigger | None = EstimatedPerformanceTrigger()
    code_change: CodeChangeTrigger | None = CodeChangeTrigger()
    cooldown_hours: float = Field(
        default=24.0, ge=0, le=24 * 366, description="No low-severity run within this of the last"
    )
    daily_budget: int = Field(default=2, ge=1, le=1000, description="Runs started per UTC day")
    run_timeout_hours: float = Field(
        default=6.0,
        gt=0,
        le=24 * 31,
        description="A started run without a finished mark counts as in flight this long",
    )
    records_max_age_hours: float = Field(
        default=1.0,
        gt=0,
        description="Monitoring records older than this (or missing the newest window) are "
        "refreshed by running monitoring first",
    )
