"""`flywheel simulate`: the whole loop over simulated days, and its timeline report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flywheel.cli import options
from flywheel.cli.render import err, out

if TYPE_CHECKING:
    from flywheel.config import Settings
    from flywheel.simulation.loop import DayRecord, Timeline

SCENARIOS_HELP = (
    "stable, covariate_drift, concept_drift, label_shift, new_category, broken_upstream "
    "(one corrupt batch on the change day) or bad_candidate (a faulty version registered on "
    "the change day)"
)


def simulate(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="Simulated days to play (after the warm-up).")] = 60,
    scenario: Annotated[str, typer.Option(help=f"The world to play: {SCENARIOS_HELP}.")] = (
        "concept_drift"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the generated data and the served rows.")] = 0,
    label_delay: Annotated[
        int, typer.Option(help="Days before a served row's true label comes back.")
    ] = 2,
    traffic: Annotated[int, typer.Option(help="Rows served a day (25-row requests).")] = 2000,
    policy: Annotated[
        str,
        typer.Option(
            help="When to retrain: triggers (the trigger engine), signals (the engine without "
            "its schedule), schedule (every 7 days, on the schedule's days), never, daily."
        ),
    ] = "triggers",
    change_day: Annotated[
        int | None,
        typer.Option(
            help="Simulated day on which the scenario's change starts (default: "
            "data.generator.change_day).",
            min=0,
        ),
    ] = None,
    search: Annotated[
        bool,
        typer.Option(
            help="Keep model.search (the hyper-parameter search): off by default, as it costs "
            "ten fits per run where one fit is what a policy comparison needs."
        ),
    ] = False,
    servers: Annotated[
        bool,
        typer.Option(
            "--servers",
            help="Serve each day's traffic through the gateway and a seldon-core microservice "
            "(loopback, stopped at the end) instead of the serving class in-process.",
        ),
    ] = False,
    oracle: Annotated[
        bool,
        typer.Option(
            help="Draw the oracle beside production in the report: the generator's own "
            "probabilities, the best any model can expect."
        ),
    ] = True,
    resume: Annotated[
        bool, typer.Option("--resume", help="Carry on an interrupted simulation in --out.")
    ] = False,
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Folder of the simulation: store, batches, timeline, report."),
    ] = Path("build/simulation"),
) -> None:
    """Play the whole loop day by day on a simulated clock, and report its timeline.

    Each day: the day's batch arrives, its traffic is served through the real serving
    class in-process (--servers: through the gateway to a seldon-core microservice serving
    production; the canary analysis still replays its day in-process), labels come back --label-delay days late as Seldon feedback,
    monitoring runs and the policy decides; a firing runs the pipeline's steps
    in this process (the functions kfp.local runs, without its subprocess per step:
    60 days then fit in minutes), the gate decides, and a registered candidate goes
    through the real canary analysis on the day's requests, then is promoted or rolled
    back. Everything lands in the store under --out. Ctrl-C or SIGTERM stops after
    leaving the store consistent; --resume carries on from the last complete day.
    """
    from flywheel.simulation.loop import simulate as play
    from flywheel.simulation.world import POLICIES, SCENARIOS

    if scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}", param_hint="--scenario"
        )
    if policy not in POLICIES:
        raise typer.BadParameter(
            f"unknown policy {policy!r}: one of {', '.join(POLICIES)}", param_hint="--policy"
        )
    if days <= 0:
        raise typer.BadParameter(f"must be 1 or more, not {days}", param_hint="--days")
    extra = [] if search else ["model.search.enabled=false"]
    if change_day is not None:
        extra.append(f"data.generator.change_day={change_day}")
    settings = options.settings(ctx, *extra)
    out.print(
        f"simulating {days} days of {scenario} under policy {policy} (seed {seed}, labels "
        f"{label_delay} days late, {traffic} rows a day) in {out_dir}"
        + ("; resuming" if resume else ""),
        highlight=False,
    )
    timeline = play(
        settings,
        root=out_dir,
        days=days,
        scenario=scenario,
        seed=seed,
        label_delay=label_delay,
        traffic=traffic,
        policy=policy,  # type: ignore[arg-type]
        servers=servers,
        resume=resume,
        on_day=_print_day,
    )
    _report(settings, timeline, out_dir, oracle)


def _print_day(record: DayRecord) -> None:
    performance = "-" if record.performance is None else f"{record.performance:.3f}"
    line = f"day {record.index:>3} {record.day} {record.production or '-':>4} perf {performance}"
    if record.batch_blocked:
        line += " batch BLOCKED"
    if record.decision and record.decision["fired"]:
        line += f" | fired: {record.decision['reason'][:80]}"
    if record.run:
        run = record.run
        why = run.get("error") or "; ".join(run.get("refused_by") or [])
        line += f" | run: {run.get('registered') or 'nothing registered'}"
        line += f" ({why[:80]})" if why and not run.get("registered") else ""
    if record.rollout:
        line += f" | {record.rollout['version']} {record.rollout['phase']}"
    out.print(line, highlight=False)


def _report(settings: Settings, timeline: Timeline, out_dir: Path, oracle: bool) -> None:
    from flywheel.simulation import report, scores

    best = timeline.oracle if oracle else None
    page = report.write(timeline, out_dir, oracle=best, floor=scores.floor(settings))
    summary = out_dir / report.SUMMARY

    out.print(report.terminal_summary(json.loads(summary.read_text())))
    out.print(f"wrote {page} and {summary} ({timeline.wall_seconds:.0f}s)", highlight=False)
    if not page.exists():
        err.print("[yellow]warning:[/] the report page was not written", highlight=False)
