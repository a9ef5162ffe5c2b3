"""`flywheel monitor`: drift, skew, performance and health of the served versions, per window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from flywheel.cli import options
from flywheel.cli.render import fmt, out

if TYPE_CHECKING:
    from flywheel.monitoring.analysis import WindowReport
    from flywheel.monitoring.statistics import Interval


def _interval(value: Interval | None) -> str:
    return "–" if value is None else f"{value.value:.3f} [{value.low:.3f}, {value.high:.3f}]"


def monitor(
    ctx: typer.Context,
    window: Annotated[
        Literal["hour", "day"] | None,
        typer.Option(help="Window length (default: monitoring.window)."),
    ] = None,
    windows: Annotated[
        int | None,
        typer.Option(help="Complete windows to look back (default: monitoring.windows).", min=1),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="End of the newest window, UTC (default: now, rounded down)."),
    ] = None,
    version: Annotated[
        list[str] | None,
        typer.Option(help="Only this version or alias (repeatable; default: every served one)."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the HTML report with plots over time here.")
    ] = Path("monitoring-report.html"),
    record: Annotated[
        bool, typer.Option(help="Store one create-only record per window and version.")
    ] = True,
    pushgateway: Annotated[
        str | None,
        typer.Option(
            help="Push the newest window's metrics to this Prometheus Pushgateway URL "
            "(default: monitoring.pushgateway)."
        ),
    ] = None,
) -> None:
    """Read the prediction and feedback logs window by window and report on each served version."""
    from flywheel.config import DEFAULT_MONITORED
    from flywheel.monitoring import page, prometheus
    from flywheel.monitoring.monitor import monitor as run

    extra = [f"monitoring.window={window}"] if window else []
    extra += [f"monitoring.windows={windows}"] if windows else []
    settings = options.settings(ctx, *extra)
    stores = options.stores(ctx, settings)
    result = run(
        settings,
        stores.registry,
        stores.source,
        until=options.parse_time("--until", until),
        versions=version or (),
        record=record,
    )
    policy = settings.monitoring
    out.rule(f"monitoring {settings.model_name}: {policy.windows} {policy.window}(s)")
    for r in result.reports:
        drifted = [f.feature for f in r.features if f.result.drifted]
        skew = (
            "–" if r.skew is None else ("ok" if r.skew.agrees else f"{r.skew.disagreeing} differ")
        )
        out.print(
            f"[bold]{r.start:%Y-%m-%d %H:%M}[/] {r.version} ({r.role}): {r.health.requests} "
            f"requests, {r.health.rows} rows, p95 {fmt(r.health.latency_p95_ms)} ms, "
            f"error rate {fmt(r.health.error_rate)}",
            highlight=False,
        )
        out.print(
            f"  drift: {len(drifted)}/{len(r.features)} features"
            + (f" ({', '.join(drifted)})" if drifted else "")
            + (" [red]DATASET DRIFT[/]" if r.dataset_drift else "")
            + f"; {'scores' if r.task == 'binary' else 'predictions'} PSI "
            + (fmt(r.prediction_drift.psi) if r.prediction_drift else "–")
            + (" [red]DRIFTED[/]" if r.prediction_drift and r.prediction_drift.drifted else "")
            + f"; skew {skew}"
            + f"; contract {_invariants(r)}",
            highlight=False,
        )
        metric = DEFAULT_MONITORED[r.task]
        offline = r.offline.newest.get(metric) if r.offline else None
        out.print(
            f"  {metric}: {_interval(r.performance.get(metric))} on {r.performance.labelled} "
            f"labels, estimated {_interval(r.estimate.get(metric) if r.estimate else None)}"
            + (f" ({r.no_estimate})" if r.no_estimate else "")
            + f", offline {fmt(offline)}",
            highlight=False,
        )
    if not result.reports:
        out.print("No served requests and no log lines in these windows.")
    if result.skipped:
        out.print(
            "Skipped log lines: "
            + ", ".join(f"{n} {reason}" for reason, n in result.skipped.items()),
            highlight=False,
        )
    out.print(
        "Accuracy (RMSE for a regression) on delayed labels, and estimated before labels arrive "
        "(CBPE from calibrated scores, or DLE from error models; it assumes no concept drift), "
        "with confidence intervals.",
        highlight=False,
    )
    if report is not None and result.reports:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(
            page.monitoring_page(
                result.reports, f"{settings.model_name}: monitoring", result.skipped
            )
        )
        out.print(f"Report: {report}", highlight=False)
    if result.records:
        out.print(
            f"Recorded {len(result.records)} window(s) in {settings.storage.uri}", highlight=False
        )
    gateway = pushgateway or policy.pushgateway
    if gateway:
        prometheus.push(gateway, settings.model_name, prometheus.exposition(result.reports))
        out.print(f"Pushed metrics to {gateway}", highlight=False)


def _invariants(report: WindowReport) -> str:
    """Whether the served inputs met the contract, and which checks failed."""
    found = report.invariants
    if found is None:
        return "–"
    failed = [f"{v.column} {v.check}" for v in found.violations if v.severity == "error"]
    return "ok" if not failed else f"[red]{len(failed)} check(s) fail[/] ({', '.join(failed)})"
