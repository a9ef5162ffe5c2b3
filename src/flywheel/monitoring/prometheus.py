"""Window reports as Prometheus metrics: served by the rollout controller, or pushed.

The monitor is a batch job (a step of the trigger engine's CronWorkflow): it lives
for seconds, so Prometheus cannot scrape it. It stores each window's report, and
the always-running rollout controller serves the newest ones at its /metrics
(`flywheel.exporter`), which the chart's ServiceMonitor scrapes. A Pushgateway,
which Prometheus' documentation names for the result of a service-level batch
job, is the other way (`monitoring.pushgateway`): each push replaces the group
`job="flywheel-monitor", model=<model>`, so a version that is no longer served
stops being reported.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from flywheel.config import MONITORED_METRICS
from flywheel.errors import FlywheelError
from flywheel.exposition import CONTENT_TYPE, Metric, Sample, render
from flywheel.monitoring.intervals import Interval
from flywheel.monitoring.window import WindowReport

JOB = "flywheel-monitor"

_HELP = {
    "flywheel_monitor_computed_timestamp_seconds": "When the monitor last looked at the newest window",
    "flywheel_monitor_window_end_timestamp_seconds": "End of the newest monitored window",
    "flywheel_monitor_requests": "Requests logged in the window",
    "flywheel_monitor_rows": "Rows scored in the window",
    "flywheel_monitor_error_rate": "Share of logged requests with a NaN, infinite or out-of-range score",
    "flywheel_monitor_latency_ms": "Model latency percentile in the window",
    "flywheel_monitor_invalid_values": "NaN, infinite or missing values in inputs and outputs",
    "flywheel_monitor_skipped_lines": "Prediction and feedback log lines skipped, by reason",
    "flywheel_monitor_model_age_hours": "Hours from registration to the window's end",
    "flywheel_monitor_data_age_hours": "Hours from the newest training day to the window's end",
    "flywheel_monitor_feature_psi": "PSI of a feature against the contract reference",
    "flywheel_monitor_feature_drift_statistic": "The feature's drift test statistic",
    "flywheel_monitor_feature_drifted": "1 when the feature's drift test fired",
    "flywheel_monitor_drifted_share": "Share of features whose drift test fired",
    "flywheel_monitor_prediction_psi": "PSI of served scores (a binary classifier), predicted "
    "classes (multiclass) or predicted values (regression) against the evaluation's",
    "flywheel_monitor_prediction_drifted": "1 when the prediction drift test fired",
    "flywheel_monitor_class_prediction_psi": "PSI of a multiclass model's served probability of "
    "a class against the evaluation's",
    "flywheel_monitor_class_prediction_drifted": "1 when the class probability's drift test fired",
    "flywheel_monitor_skew_disagreeing": "Sampled rows whose offline score differs from the served",
    "flywheel_monitor_skew_max_difference": "Largest served-offline score difference in the sample",
    "flywheel_monitor_labelled_rows": "Rows of the window whose labels arrived",
    "flywheel_monitor_unusable_labels": "Labels that fit no row of the task (an unknown class, "
    "a regression label that is not a number)",
    "flywheel_monitor_metric": "Metric on delayed labels (bound: value, low, high)",
    "flywheel_monitor_class_metric": "A multiclass model's metric of one class against the rest, "
    "on delayed labels (bound: value, low, high)",
    "flywheel_monitor_estimated_metric": "Estimate before labels, CBPE (a classifier) or DLE "
    "(a regression) (bound: value, low, high)",
    "flywheel_monitor_offline_metric": "The version's evaluation on its newest batch",
    "flywheel_monitor_invariants_hold": "1 when the served inputs pass the contract's checks",
    "flywheel_monitor_invariant_violation": "1 per contract check the served inputs fail",
}
METRICS = {name: Metric(text) for name, text in _HELP.items()}


class PushError(FlywheelError, RuntimeError):
    """The Pushgateway refused the metrics or cannot be reached."""


def _samples(report: WindowReport) -> Iterable[tuple[str, dict[str, str], float | None]]:
    h = report.health
    yield "flywheel_monitor_window_end_timestamp_seconds", {}, report.end.timestamp()
    yield "flywheel_monitor_computed_timestamp_seconds", {}, report.computed_at.timestamp()
    yield "flywheel_monitor_requests", {}, h.requests
    yield "flywheel_monitor_rows", {}, h.rows
    yield "flywheel_monitor_error_rate", {}, h.error_rate
    for q, v in (("0.5", h.latency_p50_ms), ("0.95", h.latency_p95_ms), ("0.99", h.latency_p99_ms)):
        yield "flywheel_monitor_latency_ms", {"quantile": q}, v
    for where, kind, count in (
        ("inputs", "missing", h.missing_inputs),
        ("inputs", "nan", h.nan_inputs),
        ("inputs", "infinite", h.infinite_inputs),
        ("outputs", "nan", h.nan_outputs),
        ("outputs", "infinite", h.infinite_outputs),
    ):
        yield "flywheel_monitor_invalid_values", {"where": where, "kind": kind}, count
    for reason, count in h.skipped_lines.items():
        yield "flywheel_monitor_skipped_lines", {"reason": reason}, count
    yield "flywheel_monitor_model_age_hours", {}, h.model_age_hours
    yield "flywheel_monitor_data_age_hours", {}, h.data_age_hours
    for f in report.features:
        labels = {"feature": f.feature, "test": f.result.test}
        yield "flywheel_monitor_feature_psi", {"feature": f.feature}, f.result.psi
        yield "flywheel_monitor_feature_drift_statistic", labels, f.result.statistic
        yield "flywheel_monitor_feature_drifted", {"feature": f.feature}, float(f.result.drifted)
    yield "flywheel_monitor_drifted_share", {}, report.drifted_share
    if report.prediction_drift is not None:
        yield "flywheel_monitor_prediction_psi", {}, report.prediction_drift.psi
        yield "flywheel_monitor_prediction_drifted", {}, float(report.prediction_drift.drifted)
    if report.skew is not None:
        yield "flywheel_monitor_skew_disagreeing", {}, report.skew.disagreeing
        yield "flywheel_monitor_skew_max_difference", {}, report.skew.max_difference
    for name, drifted in report.class_drift.items():
        yield "flywheel_monitor_class_prediction_psi", {"class": name}, drifted.psi
        yield "flywheel_monitor_class_prediction_drifted", {"class": name}, float(drifted.drifted)
    # Every labelled row's counts when they were joined (`monitoring.label_join: every`).
    counted = report.performance.every_label or report.performance
    yield "flywheel_monitor_labelled_rows", {}, counted.labelled
    yield "flywheel_monitor_unusable_labels", {}, counted.unusable_labels
    for name, source in (
        ("flywheel_monitor_metric", report.performance),
        ("flywheel_monitor_estimated_metric", report.estimate),
    ):
        for measured in MONITORED_METRICS[report.task]:
            interval = source.get(measured) if source is not None else None
            yield from _bounds(name, {"metric": measured}, interval)
    for label, scores in report.performance.classes.items():
        for which in ("recall", "precision", "roc_auc"):
            labels = {"class": label, "metric": which}
            yield from _bounds("flywheel_monitor_class_metric", labels, getattr(scores, which))
    if report.offline is not None:
        for metric, value in report.offline.newest.items():
            yield "flywheel_monitor_offline_metric", {"metric": metric}, value
    if report.invariants is not None:
        yield "flywheel_monitor_invariants_hold", {}, float(report.invariants.hold)
        for broken in report.invariants.violations:
            labels = {
                "feature": broken.column or "",
                "check": broken.check,
                "severity": broken.severity,
            }
            yield "flywheel_monitor_invariant_violation", labels, 1.0


def _bounds(
    name: str, labels: dict[str, str], interval: Interval | None
) -> Iterable[tuple[str, dict[str, str], float | None]]:
    if interval is not None:
        for bound in ("value", "low", "high"):
            yield name, {**labels, "bound": bound}, getattr(interval, bound)


def samples(reports: Sequence[WindowReport]) -> Iterable[Sample]:
    """The newest window of each version in `reports`, labelled by model, version and role."""
    newest: dict[str, WindowReport] = {}
    for report in reports:
        if report.version not in newest or report.start > newest[report.version].start:
            newest[report.version] = report
    for report in newest.values():
        base = {"model": report.model, "version": report.version, "role": report.role}
        for name, labels, value in _samples(report):
            yield Sample(name, {**base, **labels}, value)


def exposition(reports: Sequence[WindowReport]) -> str:
    """The Prometheus text format of the newest window of each version in `reports`."""
    return render(samples(reports), METRICS)


def push(url: str, model: str, text: str, timeout: float = 10.0) -> None:
    """PUT the metrics to the Pushgateway, replacing this job's group for `model`."""
    target = f"{url.rstrip('/')}/metrics/job/{quote(JOB, safe='')}/model/{quote(model, safe='')}"
    request = urllib.request.Request(
        target, data=text.encode(), method="PUT", headers={"Content-Type": CONTENT_TYPE}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace").strip()
        raise PushError(
            f"the Pushgateway at {url} refused the metrics: {error.code} {detail}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise PushError(f"cannot reach the Pushgateway at {url}: {reason}") from None
