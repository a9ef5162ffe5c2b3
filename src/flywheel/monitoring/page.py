"""The monitoring report: one self-contained HTML page with plots over time, per version.

The plots follow the task: a classifier's accuracy and ROC AUC (and a multiclass one's macro
F1 and the drift of each class's probability), a regression's RMSE and MAE; each on delayed
labels, estimated before them, and offline.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Callable, Sequence
from datetime import datetime

from flywheel.config import DEFAULT_MONITORED, MonitoredMetric, Task
from flywheel.monitoring.charts import Chart, Dash, Marker, Series
from flywheel.monitoring.intervals import Interval
from flywheel.monitoring.window import WindowReport
from flywheel.report import html_page, number


def _encoded(chart: Chart) -> str:
    return base64.b64encode(chart.svg().encode()).decode()


def _by_version(reports: Sequence[WindowReport]) -> dict[str, list[WindowReport]]:
    out: dict[str, list[WindowReport]] = {}
    for report in sorted(reports, key=lambda r: r.start):
        out.setdefault(f"{report.version} ({report.role})", []).append(report)
    return out


def _finite(points: Sequence[tuple[datetime, float | None]]) -> tuple[tuple[datetime, float], ...]:
    return tuple((t, v) for t, v in points if v is not None and math.isfinite(v))


def _with_intervals(
    chart: Chart, label: str, points: list[tuple[datetime, Interval]], marker: Marker, dash: Dash
) -> None:
    if not points:
        return
    # An interval's bound can sit a rounding error inside its value (accuracy 1.0, say).
    errors = tuple((max(0.0, i.value - i.low), max(0.0, i.high - i.value)) for _, i in points)
    chart.add(Series(label, tuple((t, i.value) for t, i in points), marker, dash, errors=errors))


def metric_figure(reports: Sequence[WindowReport], metric: MonitoredMetric) -> str:
    """A metric over time: on delayed labels (over every labelled row when they were all
    joined), estimated (CBPE or DLE), and offline."""
    chart = Chart(f"{metric} over time", metric)
    for name, series in _by_version(reports).items():
        actual = [(r.start, r.performance.get(metric)) for r in series]
        _with_intervals(chart, f"{name}: on labels", [(t, i) for t, i in actual if i], "o", "solid")
        estimated = [(r.start, r.estimate.get(metric) if r.estimate else None) for r in series]
        method = next((r.estimate.method for r in series if r.estimate), "CBPE")
        _with_intervals(
            chart,
            f"{name}: {method} estimate",
            [(t, i) for t, i in estimated if i],
            "x",
            "dashed",
        )
        offline = series[-1].offline.newest.get(metric) if series[-1].offline else None
        if offline is not None and math.isfinite(offline):
            chart.lines.append((offline, f"{name}: offline"))
    return _encoded(chart)


def drift_figure(reports: Sequence[WindowReport]) -> str:
    """PSI of each feature and of the scores over time, for the production version."""
    chart = Chart("PSI against the reference (production)", "PSI")
    production = [r for r in sorted(reports, key=lambda r: r.start) if r.role == "production"]
    names = sorted({f.feature for r in production for f in r.features})
    for name in names:
        points = [
            (r.start, f.result.psi) for r in production for f in r.features if f.feature == name
        ]
        chart.add(Series(name, _finite(points), "."))
    scores = [(r.start, r.prediction_drift.psi) for r in production if r.prediction_drift]
    if scores:
        label = "scores" if production[-1].task == "binary" else "predictions"
        chart.add(Series(label, _finite(scores), "", colour="#000", width=2.5))
    return _encoded(chart)


def class_drift_figure(reports: Sequence[WindowReport]) -> str:
    """PSI of a multiclass model's probability of each class over time (production)."""
    chart = Chart("PSI of each class's probability (production)", "PSI")
    production = [r for r in sorted(reports, key=lambda r: r.start) if r.role == "production"]
    for name in sorted({c for r in production for c in r.class_drift}):
        points = [(r.start, r.class_drift[name].psi) for r in production if name in r.class_drift]
        chart.add(Series(f"P({name})", _finite(points), "."))
    return _encoded(chart)


def share_figure(reports: Sequence[WindowReport]) -> str:
    """The share of drifted features over time, per version."""
    chart = Chart("share of drifted features", "share", ylim=(0.0, 1.0))
    for name, series in _by_version(reports).items():
        points = [(r.start, r.drifted_share) for r in series]
        chart.add(Series(name, _finite(points)))
    return _encoded(chart)


def traffic_figure(reports: Sequence[WindowReport]) -> str:
    """Requests and p95 latency over time, per version."""
    chart = Chart("requests and p95 latency", "requests", right_label="p95 latency (ms)")
    for name, series in _by_version(reports).items():
        requests = [(r.start, float(r.health.requests)) for r in series]
        chart.add(Series(name, _finite(requests)))
        latency = [(r.start, r.health.latency_p95_ms) for r in series if r.health.latency_p95_ms]
        chart.add(Series(f"{name} p95", _finite(latency), "x", "dotted", right=True))
    return _encoded(chart)


def _interval(value: Interval | None) -> str:
    return "–" if value is None else f"{number(value.value)} [{value.low:.3f}, {value.high:.3f}]"


def _contract(report: WindowReport) -> str:
    """ "ok", or the contract's checks the served rows failed."""
    if report.invariants is None:
        return "–"
    failed = [
        f"{v.column} {v.check}" for v in report.invariants.violations if v.severity == "error"
    ]
    return "ok" if not failed else "fails: " + ", ".join(failed)


# The metrics each task's report plots over time, and what its estimate is.
PLOTTED: dict[Task, tuple[MonitoredMetric, ...]] = {
    "binary": ("accuracy", "roc_auc"),
    "multiclass": ("accuracy", "macro_f1", "roc_auc"),
    "regression": ("rmse", "mae"),
}
ESTIMATES: dict[Task, str] = {
    "binary": "The estimated columns are CBPE estimates from calibrated scores, not "
    "measurements: they assume the relation between inputs and labels has not changed.",
    "multiclass": "The estimated columns are CBPE estimates (one-vs-rest, as NannyML does it) "
    "from calibrated probabilities, not measurements: they assume the relation between "
    "inputs and labels has not changed.",
    "regression": "The estimated columns are direct loss estimates (DLE, as NannyML does it) "
    "from error models fitted on rows the version never trained on, not measurements: they "
    "assume the relation between inputs and labels has not changed; where a window has no "
    "estimate, the report says why, and only delayed labels measure the errors.",
}


def table(reports: Sequence[WindowReport]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Every window as a row (by version, then time), and the columns' names."""
    task = _task(reports)
    headline = DEFAULT_MONITORED[task]
    rows: list[tuple[str, ...]] = []
    for r in sorted(reports, key=lambda r: (r.version, r.start)):
        drifted = sum(f.result.drifted for f in r.features)
        metric = DEFAULT_MONITORED[r.task]
        estimated = r.estimate.get(metric) if r.estimate else None
        rows.append(
            (
                f"{r.start:%Y-%m-%d %H:%M}",
                f"{r.version} ({r.role})",
                str(r.health.requests),
                "all" if r.sampled_rows is None else f"{r.sampled_rows:,}",
                f"{drifted}/{len(r.features)}",
                number(r.prediction_drift.psi) if r.prediction_drift else "–",
                f"{r.skew.disagreeing}/{r.skew.sampled}" if r.skew else "–",
                _contract(r),
                str(r.performance.labelled_for(metric)),
                _interval(r.performance.get(metric)),
                _interval(estimated) if estimated or not r.no_estimate else "none: see below",
                number(r.offline.newest.get(metric)) if r.offline else "–",
                str(sum(r.health.skipped_lines.values())),
            )
        )
    header: tuple[str, ...] = (
        "window",
        "version",
        "requests",
        "rows tested",
        "drifted features",
        "score PSI" if task == "binary" else "prediction PSI",
        "skew (disagree/sampled)",
        "contract",
        "labelled rows",
        f"{headline} [CI]",
        f"estimated {headline} [CI]",
        f"offline {headline}",
        "skipped lines",
    )
    return header, rows


def _task(reports: Sequence[WindowReport]) -> Task:
    tasks = sorted({r.task for r in reports}) or ["binary"]
    return tasks[0]  # one model's versions share a task


def plots(reports: Sequence[WindowReport]) -> list[tuple[str, Callable[[], str]]]:
    """The plots over time, not drawn yet: (caption, draw) each, draw giving the base64
    SVG figure (so a page can ask for one plot and draw only that)."""
    task = _task(reports)
    method = "DLE" if task == "regression" else "CBPE"
    listed: list[tuple[str, Callable[[], str]]] = [
        (
            f"{metric}: on delayed labels, {method} estimate, offline",
            functools.partial(metric_figure, reports, metric),
        )
        for metric in PLOTTED[task]
    ]
    listed.append(("feature and prediction drift (PSI)", functools.partial(drift_figure, reports)))
    if task == "multiclass":
        listed.append(
            (
                "drift of each class's probability (PSI)",
                functools.partial(class_drift_figure, reports),
            )
        )
    listed += [
        ("share of drifted features", functools.partial(share_figure, reports)),
        ("traffic and latency", functools.partial(traffic_figure, reports)),
    ]
    return listed


def figures(reports: Sequence[WindowReport]) -> list[tuple[str, str]]:
    """The plots over time, drawn: (caption, base64 figure) each."""
    return [(caption, draw()) for caption, draw in plots(reports)]


def notes(reports: Sequence[WindowReport]) -> str:
    """What the estimates are, why a window has none, and what share of requests was logged."""
    task = _task(reports)
    reasons = sorted({r.no_estimate for r in reports if r.no_estimate})
    shares = sorted({r.logged_share for r in reports if r.logged_share < 1})
    sampling = (
        " Tests, metrics and estimates of a window larger than its summary keeps run on a "
        "uniform sample of its rows (rows tested); counts, PSI and categories on every row."
        + (
            f" Serving logged {', '.join(f'{s:.0%}' for s in shares)} of requests "
            "(monitoring.log_sample): request counts are of the logged ones; serving's "
            "Prometheus counters have them all."
            if shares
            else ""
        )
    )
    return ESTIMATES[task] + (f" No estimate: {'; '.join(reasons)}." if reasons else "") + sampling


def monitoring_page(reports: Sequence[WindowReport], title: str, skipped: dict[str, int]) -> str:
    """Every window as a table row, and the plots over time."""
    lost = ", ".join(f"{n} {reason}" for reason, n in skipped.items()) or "none"
    return html_page(
        title,
        intro=f"{len(reports)} window(s). Log lines skipped: {lost}. {notes(reports)}",
        table=table(reports),
        figures=figures(reports),
        image="image/svg+xml",
    )
