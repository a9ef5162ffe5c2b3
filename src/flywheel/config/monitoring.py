"""Monitoring of the served model, and the triggers that start a retraining run from it."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from flywheel import cron
from flywheel.config.base import LOWER_IS_BETTER, Column, Fraction, Strict, Task

# What monitoring measures on delayed labels, per task, and what it can estimate before them
# (CBPE for a classifier, direct loss estimation for a regression).
MonitoredMetric = Literal[
    "accuracy", "roc_auc", "macro_f1", "log_loss", "rmse", "mae", "r2", "mape"
]
MONITORED_METRICS: dict[Task, tuple[MonitoredMetric, ...]] = {
    "binary": ("accuracy", "roc_auc", "log_loss"),
    "multiclass": ("accuracy", "roc_auc", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2", "mape"),
}
ESTIMATED_METRICS: dict[Task, tuple[MonitoredMetric, ...]] = {
    "binary": ("accuracy", "roc_auc", "log_loss"),
    "multiclass": ("accuracy", "roc_auc", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae"),
}
# The performance triggers' metric when none is set: today's accuracy for a classifier.
DEFAULT_MONITORED: dict[Task, MonitoredMetric] = {
    "binary": "accuracy",
    "multiclass": "accuracy",
    "regression": "rmse",
}


class MonitoringSettings(Strict):
    """`flywheel monitor`: windows of the prediction log, drift tests and their thresholds."""

    window: Literal["hour", "day"] = "day"
    windows: int = Field(default=7, ge=1, le=1000, description="Complete windows to look back")
    label_delay_days: int = Field(
        default=7, ge=0, le=366, description="How long after a window its labels may arrive"
    )
    p_value: Fraction = Field(
        default=0.05,
        description="Drift needs its test's p-value (KS, chi-square) below this, at any size",
    )
    distance: float = Field(
        default=0.1,
        gt=0,
        description="Drift also needs its effect (Wasserstein normed by the reference's spread, or "
        "Jensen-Shannon in nats) above this",
    )
    psi_min_expected: float = Field(
        default=5,
        ge=1,
        le=1000,
        description="PSI alarms only on a window in which every reference bin expects this "
        "many rows (and its bins' chi-square is significant); below, it is reported only",
    )
    drifted_share: Fraction = Field(default=0.5, description="Dataset drift above this share")
    skew_sample: int = Field(default=200, ge=1, le=100_000, description="Rows re-scored offline")
    skew_tolerance: float = Field(default=1e-5, gt=0, description="Largest score difference")
    sample_rows: int = Field(
        default=20_000,
        ge=1000,
        le=1_000_000,
        description="Rows a window's summary keeps, chosen by a hash of the request id: the "
        "drift tests, metrics and estimates of a larger window run on them",
    )
    label_join: Literal["sample", "every"] = Field(
        default="sample",
        description="Which labelled rows the metrics on labels measure: the sample's, or "
        "every one's, joined over the windows' whole log (each look reads every log file of "
        "its windows again)",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    calibration: Literal["evaluation", "none"] = Field(
        default="evaluation",
        description="CBPE: recalibrate scores on the evaluation's reliability curve, or trust them",
    )
    pushgateway: str | None = Field(
        default=None, description="Push each run's metrics to this Prometheus Pushgateway URL"
    )
    log_sample: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of requests serving logs (predictions and their feedback), chosen "
        "by a hash of the request id; the metrics still count every request",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_600,
        description="Remove logs, summaries and window records older than this many days "
        "(none: keep them; or let an S3 lifecycle rule expire them)",
    )

    @model_validator(mode="after")
    def _keeps_what_a_look_reads(self) -> MonitoringSettings:
        looked_back = self.windows * (1 if self.window == "day" else 1 / 24)
        needed = math.ceil(looked_back) + self.label_delay_days + 1
        if self.retention_days is not None and self.retention_days < needed:
            raise ValueError(
                f"retention_days {self.retention_days} would remove logs a look still reads: "
                f"{self.windows} {self.window} window(s) and {self.label_delay_days} day(s) of "
                f"label delay need at least {needed}"
            )
        return self


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
        default=0.1,
        description="Fire when more than this share of features drifted (monitoring's tests, "
        "each a significant test and an effect above its distance; 0.1 is one of 9 features "
        "in each window); null: only the named features' PSI",
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
    """Retrain when a metric on delayed labels is significantly worse: for a metric where
    higher is better, the upper bound of its confidence interval (monitoring.confidence) is
    below the floor, or below the offline figure by more than max_drop; for an error (rmse,
    mae, mape, log_loss), the lower bound is above the ceiling, or above the offline figure
    times 1 + max_rise."""

    _measured: ClassVar[dict[Task, tuple[MonitoredMetric, ...]]] = MONITORED_METRICS

    metric: MonitoredMetric | None = Field(
        default=None,
        description="null: the task's (accuracy for a classifier, rmse for a regression); "
        "binary: accuracy, roc_auc, log_loss; multiclass: those and macro_f1; "
        "regression: rmse, mae, r2, mape",
    )
    floor: Fraction | None = Field(
        default=None, description="Fire when surely below this (a metric where higher is better)"
    )
    ceiling: float | None = Field(
        default=None, gt=0, description="Fire when surely above this (an error, in its units)"
    )
    max_drop: Fraction | None = Field(
        default=0.03,
        description="Fire when surely below the version's offline evaluation minus this "
        "(a metric where higher is better; ignored for an error)",
    )
    max_rise: float | None = Field(
        default=0.1,
        ge=0,
        description="Fire when surely above the version's offline evaluation times 1 + this "
        "(an error: 0.1 is 10% worse; ignored for a metric where higher is better)",
    )
    min_labelled: int = Field(default=100, ge=1, description="Labelled rows a window needs")
    severity: Severity = "high"

    @model_validator(mode="after")
    def _can_fire(self) -> PerformanceTrigger:
        if self.floor is not None and self.floor <= 0:
            raise ValueError("floor must be above 0: no interval is surely below 0")
        if self.metric is not None:
            if not any(self.metric in metrics for metrics in self._measured.values()):
                raise ValueError(f"metric: {self.metric} has no estimate before labels")
            problem = self._misfit(self.metric)
            if problem:
                raise ValueError(
                    problem[1] if problem[0] is None else f"{problem[0]}: {problem[1]}"
                )
        elif self.floor is None and self.max_drop is None:
            # null is a classifier's accuracy, as before tasks; a regression's bounds are
            # checked once the task is known (check_task)
            raise ValueError("set floor or max_drop (or set it to null to turn it off)")
        return self

    def _misfit(self, metric: MonitoredMetric) -> tuple[str | None, str] | None:
        """The bound (None: the trigger as a whole) that does not fit `metric`'s direction, and
        why; None when the bounds fit. max_drop is ignored for an error and max_rise for a
        metric where higher is better: both have defaults, which a serialised copy repeats."""
        lower = metric in LOWER_IS_BETTER
        wrong, right = (
            ("floor", ("ceiling", "max_rise")) if lower else ("ceiling", ("floor", "max_drop"))
        )
        way = "lower" if lower else "higher"
        if getattr(self, wrong) is not None:
            return wrong, f"{way} {metric} is better; bound it with {' or '.join(right)}"
        if all(getattr(self, key) is None for key in right):
            return None, f"set {' or '.join(right)} for {metric} (or set it to null to turn it off)"
        return None

    def metric_for(self, task: Task) -> MonitoredMetric:
        """The metric judged for a version of `task`: the configured one, or the task's."""
        return self.metric or DEFAULT_MONITORED[task]

    def check_task(self, task: Task, key: str) -> None:
        """A ValueError naming `key`'s setting that cannot be judged for `task`."""
        metric = self.metric_for(task)
        if metric not in self._measured[task]:
            fits = ", ".join(self._measured[task])
            raise ValueError(f"{key}.metric: {metric} is not monitored for {task} (one of: {fits})")
        problem = self._misfit(metric)
        if problem:
            where = key if problem[0] is None else f"{key}.{problem[0]}"
            raise ValueError(f"{where}: {problem[1]} (the task is {task})")

    def lower_is_better(self, task: Task) -> bool:
        """Whether the judged metric is an error: a ceiling, not a floor."""
        return self.metric_for(task) in LOWER_IS_BETTER


class EstimatedPerformanceTrigger(PerformanceTrigger):
    """Retrain when monitoring's estimate before labels arrive (CBPE for a classifier, direct
    loss estimation for a regression) is significantly worse in each of the newest windows; an
    estimate, so low severity by default."""

    _measured: ClassVar[dict[Task, tuple[MonitoredMetric, ...]]] = ESTIMATED_METRICS

    max_drop: Fraction | None = Field(
        default=0.05,
        description="Fire when surely below the version's offline evaluation minus this "
        "(a metric where higher is better; ignored for an error)",
    )
    max_rise: float | None = Field(
        default=0.15,
        ge=0,
        description="Fire when surely above the version's offline evaluation times 1 + this "
        "(an error; ignored for a metric where higher is better)",
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
    flight, beyond the daily budget, while held (`flywheel triggers hold`), within the
    cooldown of a run started on the same kind of trigger unless a high-severity trigger
    fired, or after a refused run until a newer batch arrives. `--force` bypasses the cooldown,
    the budget and that wait, never a hold or a run in flight.
    """

    schedule: ScheduleTrigger | None = ScheduleTrigger()
    new_data: NewDataTrigger | None = None
    drift: DriftTrigger | None = DriftTrigger()
    performance: PerformanceTrigger | None = PerformanceTrigger()
    estimated_performance: EstimatedPerformanceTrigger | None = EstimatedPerformanceTrigger()
    code_change: CodeChangeTrigger | None = CodeChangeTrigger()
    cooldown_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 366,
        description="No low-severity run within this of the last run started on the same kind",
    )
    daily_budget: int = Field(default=2, ge=1, le=1000, description="Runs started per UTC day")
    run_timeout_hours: float = Field(
        default=6.0,
        gt=0,
        le=24 * 31,
        description="A started run (the engine's, `flywheel run`'s or `flywheel submit`'s) "
        "without a finished mark counts as in flight this long; then its outcome is unknown",
    )
    records_max_age_hours: float = Field(
        default=1.0,
        gt=0,
        description="Monitoring records older than this (or missing the newest window) are "
        "refreshed by running monitoring first",
    )

    def check_task(self, task: Task) -> None:
        """A ValueError naming the performance trigger's setting that cannot be judged for a
        model of `task` (an accuracy floor for a regression)."""
        for key in ("performance", "estimated_performance"):
            trigger: PerformanceTrigger | None = getattr(self, key)
            if trigger is not None:
                trigger.check_task(task, f"triggers.{key}")
