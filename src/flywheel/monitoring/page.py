"""The monitoring report: one self-contained HTML page with plots over time, per version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flywheel.monitoring.analysis import WindowReport
from flywheel.monitoring.statistics import Interval
from flywheel.report import encode_png, html_page, number


def _axes(title: str, ylabel: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=90)
    ax.set(title=title, ylabel=ylabel)
    return fig, ax


def _by_version(reports: Sequence[WindowReport]) -> dict[str, list[WindowReport]]:
    out: dict[str, list[WindowReport]] = {}
    for report in sorted(reports, key=lambda r: r.start):
        out.setdefault(f"{report.version} ({report.role})", []).append(report)
    return out


def _with_intervals(ax: Any, label: str, points: list[tuple[Any, Interval]], style: str) -> None:
    if not points:
        return
    values = [i.value for _, i in points]
    below = [i.value - i.low for _, i in points]
    above = [i.high - i.value for _, i in points]
    x = [t for t, _ in points]
    ax.errorbar(x, values, yerr=[below, above], fmt=style, capsize=3, label=label)


def metric_figure(reports: Sequence[WindowReport], metric: str) -> str:
    """A metric over time: on delayed labels, estimated by CBPE, and offline."""
    fig, ax = _axes(f"{metric} over time", metric)
    for name, series in _by_version(reports).items():
        actual = [(r.start, getattr(r.performance, metric)) for r in series]
        _with_intervals(ax, f"{name}: on labels", [(t, i) for t, i in actual if i], "o-")
        estimated = [(r.start, getattr(r.estimate, metric) if r.estimate else None) for r in series]
        _with_intervals(ax, f"{name}: CBPE estimate", [(t, i) for t, i in estimated if i], "x--")
        offline = series[-1].offline.newest.get(metric) if series[-1].offline else None
        if offline is not None:
            ax.axhline(offline, linestyle=":", color="grey", label=f"{name}: offline")
    return encode_png(fig, ax, dates=True)


def drift_figure(reports: Sequence[WindowReport]) -> str:
    """PSI of each feature and of the scores over time, for the production version."""
    fig, ax = _axes("PSI against the reference (production)", "PSI")
    production = [r for r in sorted(reports, key=lambda r: r.start) if r.role == "production"]
    names = sorted({f.feature for r in production for f in r.features})
    for name in names:
        points = [
            (r.start, f.result.psi) for r in production for f in r.features if f.feature == name
        ]
        ax.plot([t for t, _ in points], [v for _, v in points], ".-", label=name)
    scores = [(r.start, r.prediction_drift.psi) for r in production if r.prediction_drift]
    if scores:
        ax.plot([t for t, _ in scores], [v for _, v in scores], "k-", linewidth=2, label="scores")
    return encode_png(fig, ax, dates=True)


def share_figure(reports: Sequence[WindowReport]) -> str:
    """The share of drifted features over time, per version."""
    fig, ax = _axes("share of drifted features", "share")
    for name, series in _by_version(reports).items():
        points = [(r.start, r.drifted_share) for r in series if r.drifted_share is not None]
        ax.plot([t for t, _ in points], [v for _, v in points], "o-", label=name)
    ax.set_ylim(0, 1)
    return encode_png(fig, ax, dates=True)


def traffic_figure(reports: Sequence[WindowReport]) -> str:
    """Requests and p95 latency over time, per version."""
    fig, ax = _axes("requests and p95 latency", "requests")
    other = ax.twinx()
    other.set_ylabel("p95 latency (ms)")
    for name, series in _by_version(reports).items():
        ax.plot([r.start for r in series], [r.health.requests for r in series], "o-", label=name)
        latency = [(r.start, r.health.latency_p95_ms) for r in series if r.health.latency_p95_ms]
        other.plot([t for t, _ in latency], [v for _, v in latency], "x:", label=f"{name} p95")
    return encode_png(fig, ax, dates=True)


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


def monitoring_page(reports: Sequence[WindowReport], title: str, skipped: dict[str, int]) -> str:
    """Every window as a table row, and the plots over time."""
    rows = []
    for r in sorted(reports, key=lambda r: (r.version, r.start)):
        drifted = sum(f.result.drifted for f in r.features)
        rows.append(
            (
                f"{r.start:%Y-%m-%d %H:%M}",
                f"{r.version} ({r.role})",
                str(r.health.requests),
                f"{drifted}/{len(r.features)}",
                number(r.prediction_drift.psi) if r.prediction_drift else "–",
                f"{r.skew.disagreeing}/{r.skew.sampled}" if r.skew else "–",
                _contract(r),
                str(r.performance.labelled),
                _interval(r.performance.accuracy),
                _interval(r.estimate.accuracy if r.estimate else None),
                number(r.offline.newest.get("accuracy")) if r.offline else "–",
                str(sum(r.health.skipped_lines.values())),
            )
        )
    lost = ", ".join(f"{n} {reason}" for reason, n in skipped.items()) or "none"
    figures = [
        ("accuracy: on delayed labels, CBPE estimate, offline", metric_figure(reports, "accuracy")),
        ("ROC AUC: on delayed labels, CBPE estimate, offline", metric_figure(reports, "roc_auc")),
        ("feature and score drift (PSI)", drift_figure(reports)),
        ("share of drifted features", share_figure(reports)),
        ("traffic and latency", traffic_figure(reports)),
    ]
    return html_page(
        title,
        intro=(
            f"{len(reports)} window(s). Log lines skipped: {lost}. The CBPE columns are "
            "estimates from calibrated scores, not measurements: they assume the "
            "relation between inputs and labels has not changed."
        ),
        table=(
            (
                "window",
                "version",
                "requests",
                "drifted features",
                "score PSI",
                "skew (disagree/sampled)",
                "contract",
                "labelled rows",
                "accuracy [CI]",
                "estimated accuracy [CI]",
                "offline accuracy",
                "skipped lines",
            ),
            rows,
        ),
        figures=figures,
    )
