"""`flywheel monitor`: drift, skew, performance and health of the served versions, per window."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from flywheel.cli import options
from flywheel.cli.render import fmt, out

if TYPE_CHECKING:
    from flywheel.monitoring.intervals import Interval
    from flywheel.monitoring.window import WindowReport


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
    housekeeping: Annotated[
        bool,
        typer.Option(
            help="After recording: compact settled days' log files, and remove what is older "
            "than monitoring.retention_days."
        ),
    ] = True,
    workers: Annotated[
        int,
        typer.Option(help="Processes that summarise new log files in parallel.", min=1, max=64),
    ] = 1,
    list_partitions: Annotated[
        bool,
        typer.Option(
            "--list-partitions",
            help="Print, as a JSON list, the hours of log files no summary holds yet, and stop "
            "(the chart's fan-out runs one --partition step for each).",
        ),
    ] = False,
    partition: Annotated[
        str | None,
        typer.Option(
            help="Summarise one partition, VERSION/DAY/HOUR (e.g. v3/2026-03-02/14), store it "
            "for the next look to merge, and stop.",
        ),
    ] = None,
) -> None:
    """Read the prediction and feedback logs window by window and report on each served version.

    Each log file is read once: what it holds is summarised and stored, so a look reads only
    the files written since the last one. A window larger than monitoring.sample_rows is
    tested on a uniform sample of its rows (chosen by a hash of the request id); its counts
    are exact."""
    from flywheel.config import DEFAULT_MONITORED
    from flywheel.monitoring import monitor as monitoring
    from flywheel.monitoring import page, prometheus, reading

    extra = [f"monitoring.window={window}"] if window else []
    extra += [f"monitoring.windows={windows}"] if windows else []
    # A look of its own: the performance trigger, which must see labels within the look-back
    # the engine uses, is not this command's.
    extra += ["triggers.performance=null"] if extra else []
    if report is not None and report.is_dir():
        raise typer.BadParameter(f"{str(report)!r} is a directory", param_hint="--report")
    settings = options.settings(ctx, *extra)
    stores = options.stores(ctx, settings)
    at = options.parse_time("--until", until)
    if list_partitions:
        print(json.dumps(reading.partitions(settings, stores.registry, until=at)))
        return
    if partition is not None:
        version_name, day, hour = _partition(partition)
        where = reading.summarise_partition(settings, stores.registry, version_name, day, hour)
        out.print(f"Summarised {partition} into {where}", highlight=False)
        return
    result = monitoring.monitor(
        settings,
        stores.registry,
        stores.source,
        until=at,
        versions=version or (),
        record=record,
        workers=workers,
        housekeeping=housekeeping,
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
            f"requests, {r.health.rows} rows"
            + (f" (tested on a sample of {r.sampled_rows})" if r.sampled_rows else "")
            + (f", {r.logged_share:.0%} of requests logged" if r.logged_share < 1 else "")
            + f", p95 {fmt(r.health.latency_p95_ms)} ms, error rate {fmt(r.health.error_rate)}",
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
            f"  {metric}: {_interval(r.performance.get(metric))} on "
            f"{r.performance.labelled_for(metric)} "
            f"labels, estimated {_interval(r.estimate.get(metric) if r.estimate else None)}"
            + (f" ({r.no_estimate})" if r.no_estimate else "")
            + f", offline {fmt(offline)}",
            highlight=False,
        )
    if not result.reports:
        out.print("No served requests and no log lines in these windows.")
    if result.skipped:
        out.print(
            "Skipped: " + ", ".join(f"{n} {reason}" for reason, n in result.skipped.items()),
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
    kept = result.housekeeping
    if kept.compacted or kept.removed:
        out.print(
            f"Housekeeping: {len(kept.compacted)} day(s) of logs compacted, "
            f"{kept.removed} object(s) removed",
            highlight=False,
        )
    gateway = pushgateway or policy.pushgateway
    if gateway:
        prometheus.push(gateway, settings.model_name, prometheus.exposition(result.reports))
        out.print(f"Pushed metrics to {gateway}", highlight=False)


def _partition(text: str) -> tuple[str, date, int]:
    """VERSION/DAY/HOUR, checked; a usage error names what is wrong."""
    parts = text.split("/")
    try:
        if len(parts) != 3 or not parts[0]:
            raise ValueError("expected VERSION/DAY/HOUR")
        day, hour = date.fromisoformat(parts[1]), int(parts[2])
        if not 0 <= hour <= 23:
            raise ValueError(f"hour {hour} is not 0-23")
    except ValueError as error:
        raise typer.BadParameter(f"{text!r}: {error}", param_hint="--partition") from None
    return parts[0], day, hour


def _invariants(report: WindowReport) -> str:
    """Whether the served inputs met the contract, and which checks failed."""
    found = report.invariants
    if found is None:
        return "–"
    failed = [f"{v.column} {v.check}" for v in found.violations if v.severity == "error"]
    return "ok" if not failed else f"[red]{len(failed)} check(s) fail[/] ({', '.join(failed)})"
