"""What the CLI prints: the consoles, number formats, tables and run summaries (rich)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TaskID
from rich.table import Table
from rich.text import Text

from flywheel import lineage as lineage_module
from flywheel.config import Settings
from flywheel.evaluation import HEADLINE

if TYPE_CHECKING:
    from flywheel.registry import AliasState, Manifest
    from flywheel.runs import StepState

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fmt(value: Any) -> str:
    """A metric with four decimals, or a dash when there is none."""
    return "–" if value is None or value != value else f"{value:.4f}"


def step_line(state: StepState) -> str:
    """One step of a local run as a line of markup: "train           done in 5.3 s"."""
    name = f"{state.step:<15}"
    if state.state == "running":
        return f"{name} running"
    seconds = f"{state.seconds:.1f} s" if state.seconds is not None else "?"
    if state.state == "done":
        return f"{name} [green]done[/] in {seconds}"
    if state.state == "failed":
        return (
            f"{name} [red bold]failed[/] after {seconds}: {escape(state.error or '')}\n"
            f"{'':<15} log: {escape(str(state.log))}"
        )
    return f"{name} [dim]{state.state}[/]"


class _StepColumn(ProgressColumn):
    """A step's line, with the seconds it has been running so far."""

    def render(self, task: Task) -> Text:
        state: StepState = task.fields["state"]
        if state.state == "running":
            return Text(f"{state.step:<15} running {task.elapsed or 0:.0f} s")
        return Text.from_markup(step_line(state))


@contextlib.contextmanager
def step_progress(verbose: bool = False) -> Iterator[Callable[[StepState], None]]:
    """Show each step of a local run as it goes: a live line per step on a terminal; else,
    or when the steps' own output is shown too (`verbose`), a line when a step ends."""
    # Bound now: during the run sys.stdout is the run's log.
    console = Console(file=sys.stdout, soft_wrap=True)
    if verbose or not console.is_interactive:

        def show(state: StepState) -> None:
            if state.state != "running":
                console.print(step_line(state), highlight=False)

        yield show
        return
    progress = Progress(
        SpinnerColumn(finished_text=" "),
        _StepColumn(),
        console=console,
        refresh_per_second=4,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    lines: dict[str, TaskID] = {}

    def update(state: StepState) -> None:
        if not lines:
            progress.start()  # not before: an empty display leaves a blank line per refresh
        if state.step not in lines:
            lines[state.step] = progress.add_task(state.step, total=1, state=state)
        progress.update(lines[state.step], state=state, completed=state.state != "running")

    try:
        yield update
    finally:
        progress.stop()


def run_result(settings: Settings, result: Any, production: str | None = None) -> None:
    """What one pipeline run did: its metrics against production, the gate, the registration
    (and `production`, the version in production after it)."""
    out.rule(f"run {result.run_id}")
    if not result.succeeded:
        out.print(
            f"[red bold]FAILED[/] at step [bold]{result.failed_task or '?'}[/] after "
            f"{result.seconds:.1f}s: {escape(result.error or '')}",
            highlight=False,
        )
        if result.log:
            out.print(f"Log: {result.log}", highlight=False)
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
    task = evaluation.get("task", "binary")
    classes = evaluation.get("classes") or []
    what = f"{task}, {len(classes)} classes: {', '.join(classes[:6])}" if classes else task
    how = (
        "inferred from the label; set model.task to fix it"
        if settings.model.task is None
        else "model.task"
    )
    out.print(f"Task: {what} ({how})", highlight=False)
    cand = evaluation["candidate"]
    prod = evaluation.get("production")
    table = Table(title=f"{metric} and friends", show_lines=False)
    table.add_column("metric")
    table.add_column("candidate, holdout", justify="right")
    table.add_column(f"candidate, newest ({evaluation['newest_batch']})", justify="right")
    if prod:
        table.add_column(f"production {prod['version']}, newest", justify="right")
    for name in HEADLINE.get(task, HEADLINE["binary"]):
        holdout = cand["holdout"] or {}
        row = [name, fmt(holdout.get(name)), fmt(cand["newest"].get(name))]
        if prod:
            row.append(fmt(prod["newest"].get(name)))
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
    if result.log:
        out.print(f"Log: {result.log}")
    if result.registration:
        reg = result.registration
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


def closing_summary(settings: Settings, result: Any, rollout: str, production: str | None) -> None:
    """What the whole loop did, on one screen: `rollout` says how the rollout ended, and
    `production` is the version in production after it."""
    window, evaluation = result.read("window"), result.read("evaluation")
    decision = result.read("decision")
    metric, cand = evaluation["metric"], evaluation["candidate"]["newest"][evaluation["metric"]]
    prod = evaluation.get("production")
    versus = f" vs production {prod['version']} {fmt(prod['newest'][metric])}" if prod else ""
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


def models_table(title: str, versions: list[Manifest], aliases: dict[str, list[str]]) -> Table:
    """Every complete version with its aliases (by version) and headline numbers."""
    table = Table(title=title)
    for column in ("version", "aliases", "created", "metric", "newest", "holdout", "data", "run"):
        table.add_column(column, overflow="fold")
    for m in versions:
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
    manifest: Manifest,
    location: str,
    lineage: dict[str, Any],
    metrics: dict[str, Any],
    history: dict[str, list[AliasState]],
) -> None:
    """One version: where it lives, where it came from, its files, metrics and the history of
    each alias in `history` (oldest first)."""
    out.print(f"[bold]{manifest.model_name} {manifest.version}[/] at {location}")
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
    for alias, states in history.items():
        for state in states:
            if manifest.version in (state.version, state.previous):
                out.print(
                    f"{state.at} {alias} {state.previous or '-'} -> {state.version} "
                    f"by {state.actor}: {state.reason}"
                )


def _interval(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "–"
    return f"{fmt(entry.get('mean'))} [{fmt(entry.get('low'))}, {fmt(entry.get('high'))}]"


def version_diff(
    model_name: str, versions: tuple[str, str], change: lineage_module.VersionDiff
) -> None:
    """What changed from one version to another (importances only when an evaluation has
    them)."""
    a, b = versions
    out.print(f"[bold]{model_name} {a} -> {b}[/]")
    out.print(f"configuration: {len(change.config) or 'no'} key(s) changed", highlight=False)
    for key, was, now in change.config:
        out.print(
            f"  {key}: {json.dumps(was, default=str)} -> {json.dumps(now, default=str)}",
            highlight=False,
        )
    span = [f"{d[0]}..{d[-1]} ({len(d)} batches)" if d else "none recorded" for d in change.days]
    out.print(f"data window: {span[0]} -> {span[1]}", highlight=False)
    if change.added_days or change.dropped_days:
        out.print(
            f"  batches added: {', '.join(change.added_days) or 'none'}; "
            f"dropped: {', '.join(change.dropped_days) or 'none'}",
            highlight=False,
        )
    hashes = change.hashes
    out.print(
        f"  content hash {hashes[0]} -> {hashes[1]}"
        + (" (the same data)" if hashes[0] == hashes[1] else ""),
        highlight=False,
    )
    if change.gained or change.lost:
        out.print(
            f"features: added {', '.join(change.gained) or 'none'}; "
            f"removed {', '.join(change.lost) or 'none'}",
            highlight=False,
        )
    else:
        out.print(f"features: the same {len(change.features[1])}", highlight=False)
    table = Table(title="metrics", title_justify="left")
    for column in ("name", a, b, "change"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for name, was, now, delta in change.metrics:
        table.add_row(name, fmt(was), fmt(now), "–" if delta is None else f"{delta:+.4f}")
    out.print(table)
    if change.importances:
        table = Table(
            title=escape("permutation importance: mean [low, high]"), title_justify="left"
        )
        for column in ("feature", a, b):
            table.add_column(column, justify="left" if column == "feature" else "right")
        for name, before, after in change.importances:
            table.add_row(name, _interval(before), _interval(after))
        out.print(table)
