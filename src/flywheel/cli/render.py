"""What the CLI prints: the consoles, number formats, tables and run summaries (rich)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from flywheel import lineage as lineage_module
from flywheel.config import Settings
from flywheel.registry import PRODUCTION, Registry

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

HEADLINE_METRICS = ("roc_auc", "average_precision", "accuracy", "f1", "log_loss")


def fmt(value: Any) -> str:
    """A metric with four decimals, or a dash when there is none."""
    return "–" if value is None or value != value else f"{value:.4f}"


def run_result(settings: Settings, result: Any) -> None:
    """What one pipeline run did: its metrics against production, the gate, the registration."""
    out.rule(f"run {result.run_id}")
    if not result.succeeded:
        out.print(
            f"[red bold]FAILED[/] at step [bold]{result.failed_task or '?'}[/] after "
            f"{result.seconds:.1f}s: {result.error}",
            highlight=False,
        )
        if result.failure_report:
            out.print(result.failure_report, highlight=False)
        out.print("No model version was written; the production alias is unchanged.")
        out.print(steps_table(result.steps))
        return
    window, evaluation = result.read("window"), result.read("evaluation")
    decision = result.read("decision")
    days = [b["day"] for b in window["batches"]]
    metric = evaluation["metric"]
    out.print(
        f"[green bold]SUCCEEDED[/] in {result.seconds:.1f}s. Data: {len(days)} batches "
        f"{days[0]}..{days[-1]} from {window['source']} (sha256 {window['content_hash'][:12]})"
    )
    cand = evaluation["candidate"]
    prod = evaluation.get("production")
    table = Table(title=f"{metric} and friends", show_lines=False)
    table.add_column("metric")
    table.add_column("candidate, holdout", justify="right")
    table.add_column(f"candidate, newest ({evaluation['newest_batch']})", justify="right")
    if prod:
        table.add_column(f"production {prod['version']}, newest", justify="right")
    for name in HEADLINE_METRICS:
        row = [name, fmt(cand["holdout"][name]), fmt(cand["newest"][name])]
        if prod:
            row.append(fmt(prod["newest"][name]))
        table.add_row(*row)
    out.print(table)
    if prod:
        out.print(
            f"Compared with production {prod['version']} on the newest batch: {metric} "
            f"{fmt(cand['newest'][metric])} (candidate) vs {fmt(prod['newest'][metric])} (production)"
        )
    else:
        out.print("Nothing in production yet: the candidate is judged on the minimums alone.")
    verdict = "[green]BLESSED[/]" if decision["blessed"] else "[yellow]NOT BLESSED[/]"
    passed = sum(c["passed"] for c in decision["checks"])
    out.print(f"Gate: {verdict} ({passed}/{len(decision['checks'])} checks passed)")
    for check in decision["checks"]:
        if not check["passed"]:
            out.print(f"  - {check['detail']}")
    out.print(f"Report: {result.outputs['report']}")
    if result.registration:
        reg = result.registration
        production = Registry.from_settings(settings).resolve(PRODUCTION)
        out.print(
            f"Registered [bold]{settings.model_name} {reg['version']}[/] at {reg['location']}"
        )
        out.print(
            f"Aliases moved: {', '.join(reg['aliases']) or 'none (same model as before)'}; production is {production}"
        )
    out.print(steps_table(result.steps))


def steps_table(steps: list[Any]) -> Table:
    """Each step's time, peak memory and CPU time, as its Metrics recorded them."""
    table = Table(title="steps", title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("peak memory (MiB)", justify="right")
    table.add_column("CPU seconds", justify="right")
    ran = [row.usage for row in steps if row.usage is not None]
    for row in steps:
        if row.usage is None:
            table.add_row(row.step, row.status, "–", "–")
        else:
            u = row.usage
            table.add_row(
                row.step, f"{u.seconds:.2f}", f"{u.peak_rss_mib:.0f}", f"{u.cpu_seconds:.2f}"
            )
    if ran:
        table.add_section()
        table.add_row(
            "all that ran",
            f"{sum(u.seconds for u in ran):.2f}",
            f"{max(u.peak_rss_mib for u in ran):.0f}",
            f"{sum(u.cpu_seconds for u in ran):.2f}",
        )
    return table


def closing_summary(settings: Settings, result: Any, rollout: str) -> None:
    """What the whole loop did, on one screen."""
    window, evaluation = result.read("window"), result.read("evaluation")
    decision = result.read("decision")
    metric, cand = evaluation["metric"], evaluation["candidate"]["newest"][evaluation["metric"]]
    prod = evaluation.get("production")
    versus = f" vs production {prod['version']} {fmt(prod['newest'][metric])}" if prod else ""
    production = Registry.from_settings(settings).resolve(PRODUCTION)
    days = [b["day"] for b in window["batches"]]
    rows = [
        (
            "data",
            f"{len(days)} batches {days[0]}..{days[-1]}, sha256 {window['content_hash'][:12]}",
        ),
        ("candidate", f"{metric} {fmt(cand)} on {evaluation['newest_batch']}{versus}"),
        ("gate", "blessed" if decision["blessed"] else "not blessed"),
        ("registered", (result.registration or {}).get("version", "nothing")),
        ("rollout", rollout),
        ("production", f"{settings.model_name} {production}"),
        ("report", str(result.outputs["report"])),
        ("next", f"flywheel models show {production}; flywheel serve; make run (a new week)"),
    ]
    table = Table(title=f"flywheel run {result.run_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


def tick_printer(started: float, steps: int) -> Callable[[Any, Any], None]:
    """A rollout callback that prints each look at the canary with its checks."""

    def show(state: Any, verdict: Any) -> None:
        if verdict is None:
            return
        parts = []
        for check in verdict.checks:
            value = "–" if check.measured is None else f"{check.measured:.3g}"
            parts.append(f"{check.name} {value} [{check.status}]")
        out.print(
            f"[{time.monotonic() - started:5.1f}s] step {state.step + 1}/{steps} "
            f"canary {state.weight}%: {verdict.action} ({verdict.reason}); " + ", ".join(parts),
            highlight=False,
        )

    return show


def models_table(registry: Registry) -> Table:
    """Every complete version with its aliases and headline numbers."""
    aliases: dict[str, list[str]] = {}
    for alias in ("production", "candidate"):
        version = registry.resolve(alias)
        if version:
            aliases.setdefault(version, []).append(alias)
    table = Table(title=f"{registry.model_name} in {registry.store.uri}")
    for column in ("version", "aliases", "created", "metric", "newest", "holdout", "data", "run"):
        table.add_column(column, overflow="fold")
    for m in registry.versions():
        s = m.summary
        table.add_row(
            m.version,
            ", ".join(aliases.get(m.version, [])),
            m.created_at[:19],
            str(s.get("metric", "")),
            fmt(s.get("newest")),
            fmt(s.get("holdout")),
            str(s.get("data_hash", ""))[:12],
            m.run_id,
        )
    return table


def version_details(
    registry: Registry, version: str, lineage: dict[str, Any], metrics: dict[str, Any]
) -> None:
    """One version: where it lives, where it came from, its files, metrics and alias history."""
    manifest = registry.manifest(version)
    out.print(f"[bold]{registry.model_name} {manifest.version}[/] at {registry.location(version)}")
    out.print(f"created {manifest.created_at} by run {manifest.run_id}")
    out.print(f"trained because: {lineage_module.trained_because(lineage)}", highlight=False)
    decision = (lineage.get("trigger") or {}).get("decision")
    if decision:
        out.print(f"trigger decision record {decision}", highlight=False)
    out.print(
        f"git commit {lineage.get('git_commit')}; image {lineage.get('image') or '(local)'} {lineage.get('image_digest') or ''}"
    )
    data = lineage.get("data", {})
    out.print(
        f"data {data.get('content_hash')} from {data.get('source')}: {', '.join(b['day'] if isinstance(b, dict) else str(b) for b in data.get('batches', []))}"
    )
    out.print("packages " + ", ".join(f"{k} {v}" for k, v in lineage.get("packages", {}).items()))
    out.print("files " + ", ".join(sorted(manifest.files)))
    table = Table(title="metrics")
    table.add_column("name")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, fmt(value))
    out.print(table)
    for alias in ("production", "candidate"):
        for state in registry.history(alias):
            if manifest.version in (state.version, state.previous):
                out.print(
                    f"{state.at} {alias} {state.previous or '-'} -> {state.version}: {state.reason}"
                )
