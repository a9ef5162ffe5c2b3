"""`make bench-loop`: Flywheel's retraining policy against the obvious ones, on every scenario.

For each scenario (stable, covariate_drift, concept_drift, label_shift, new_category), the
same simulated world (`flywheel.simulation.loop.simulate`: the same seed, the same days, the
same served rows) is played once per policy, side by side:

- triggers: Flywheel's trigger engine with flywheel.yaml's policy;
- schedule: a retrain every 7 days;
- never: the first model forever;
- daily: a retrain every day.

Per scenario and policy (`flywheel.simulation.scores`): the detection delay (days from the
change to the first retrain on or after it), the days below the floor (production accuracy
under promotion.min_metric, or --floor), the mean production accuracy, the retrains (the
cost), and the false triggers (the trigger policy's firings other than the schedule while
nothing had changed); against daily retraining: the accuracy given up and the share of its
retrains. Beside them, the oracle retrained daily (flywheel.simulation.oracle) and the cost
of staleness (accuracy lost per day of model age).

The loop's goals are checked: the trigger policy within 0.01 of daily's mean accuracy
with at most a third of its retrains (on every scenario), concept_drift detected within 2
days, no false trigger on stable, and 60 simulated days in at most 10 minutes (the trigger
policy's wall time, scaled to 60 days when --days is shorter). The run ends with one JSON
line of the figures; everything also goes to build/bench/loop.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("stable", "covariate_drift", "concept_drift", "label_shift", "new_category")
POLICIES = ("triggers", "schedule", "never", "daily")
GOAL_METRIC_GAP = 0.01
GOAL_RETRAIN_SHARE = 1 / 3
GOAL_DETECTION_DAYS = 2
GOAL_SECONDS_PER_60_DAYS = 600.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60, help="simulated days per run")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated scenarios"
    )
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policies")
    parser.add_argument("--traffic", type=int, default=2000, help="rows served a day")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-delay", type=int, default=2)
    parser.add_argument(
        "--floor",
        type=float,
        default=None,
        help="the accuracy floor (flywheel.simulation.scores.floor if unset)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a flywheel.yaml override"
    )
    parser.add_argument(
        "--search",
        action="store_true",
        help="keep model.search, as flywheel simulate --search does (ten fits a run)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    parser.add_argument("--keep", action="store_true", help="keep each simulation's folder")
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    policies = [p for p in args.policies.split(",") if p]

    from benchmarks.serving import hardware
    from flywheel.config import load_settings
    from flywheel.errors import FlywheelError
    from flywheel.simulation import oracle, scores
    from flywheel.simulation.loop import simulate

    # As `flywheel simulate` plays it: one fit a run unless --search.
    overrides = args.set if args.search else ["model.search.enabled=false", *args.set]
    settings = load_settings(REPO / "flywheel.yaml", env={}, overrides=overrides)
    floor = args.floor if args.floor is not None else scores.floor(settings)
    print(
        f"SIMULATION of the whole loop ({args.days} days per run, {args.traffic} rows served a "
        f"day, labels {args.label_delay} days late, seed {args.seed}) on "
        f"{', '.join(scenarios)}, policies {', '.join(policies)}: flywheel.yaml"
        + (f" with {', '.join(overrides)}" if overrides else "")
        + f"; floor {floor:g} on accuracy; {hardware()}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    summaries: dict[str, dict[str, dict[str, Any]]] = {}
    started = time.monotonic()
    try:
        for scenario in scenarios:
            summaries[scenario] = {}
            best: list[float | None] | None = None
            for policy in policies:
                try:
                    timeline = simulate(
                        settings,
                        root=work / f"{scenario}-{policy}",
                        days=args.days,
                        scenario=scenario,
                        seed=args.seed,
                        label_delay=args.label_delay,
                        traffic=args.traffic,
                        policy=policy,
                    )
                except FlywheelError as error:
                    print(f"error: {scenario} {policy}: {error}", file=sys.stderr)
                    return 1
                if best is None:
                    best = oracle.for_timeline(settings, timeline, cache=work / "oracle.json")
                summary = scores.summary(timeline, best, floor)
                summaries[scenario][policy] = summary
                print(
                    f"  {scenario:16} {policy:9} {timeline.wall_seconds:7.1f}s: mean accuracy "
                    f"{_num(summary['mean_metric'])}, {summary['retrains']} retrain(s)",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"simulations kept in {work}")
    elapsed = time.monotonic() - started

    for line in table(summaries):
        print(line)
    checked = goals(summaries, args.days)
    print(
        "\ngoals: "
        + "; ".join(
            f"{name} {'met' if ok else ('n/a' if ok is None else 'MISSED')}"
            for name, (ok, _) in checked.items()
        )
    )
    for name, (_, detail) in checked.items():
        print(f"  {name}: {detail}")
    figures = {
        "simulation": "the whole loop in-process on a simulated clock (flywheel simulate)",
        "days": args.days,
        "traffic": args.traffic,
        "label_delay": args.label_delay,
        "seed": args.seed,
        "floor": floor,
        "overrides": overrides,
        "hardware": hardware(),
        "seconds": round(elapsed, 1),
        "goals": {name: ok for name, (ok, _) in checked.items()},
        "scenarios": {
            scenario: {policy: compact(s) for policy, s in by_policy.items()}
            for scenario, by_policy in summaries.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loop.json").write_text(
        json.dumps({"figures": figures, "summaries": summaries}, indent=1) + "\n"
    )
    print(json.dumps(figures, sort_keys=True))
    return 0


def compact(summary: dict[str, Any]) -> dict[str, Any]:
    """The JSON line's figures of one simulation."""
    return {
        "detection_delay_days": summary["detection_delay_days"],
        "days_below_floor": summary["days_below_floor"],
        "mean_metric": summary["mean_metric"],
        "retrains": summary["retrains"],
        "false_triggers": summary["false_triggers"],
        "refused_share": summary["refused_share"],
        "oracle_mean_metric": summary["oracle_mean_metric"],
        "staleness_cost_per_day": summary["staleness_cost"]["per_day"],
        "wall_seconds": summary["wall_seconds"],
    }


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def table(summaries: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The side-by-side table: one row per scenario and policy, ratios against daily."""
    head = (
        f"\n{'scenario':16} {'policy':9} {'delay d':>7} {'< floor':>7} {'mean acc':>8} "
        f"{'vs daily':>8} {'retrains':>8} {'/ daily':>7} {'false trig':>10} "
        f"{'refused':>7} {'oracle':>7} {'stale/day':>9} {'wall s':>7}"
    )
    lines = [head, "-" * (len(head) - 1)]
    for scenario, by_policy in summaries.items():
        daily = by_policy.get("daily")
        for policy, s in by_policy.items():
            gap = share = None
            if daily is not None and s["mean_metric"] is not None and daily["mean_metric"]:
                gap = s["mean_metric"] - daily["mean_metric"]
            if daily is not None and daily["retrains"]:
                share = s["retrains"] / daily["retrains"]
            cost = s["staleness_cost"]["per_day"]
            lines.append(
                f"{scenario:16} {policy:9} {_int(s['detection_delay_days']):>7} "
                f"{s['days_below_floor']:>7} {_num(s['mean_metric']):>8} "
                f"{'-' if gap is None else f'{gap:+.4f}':>8} {s['retrains']:>8} "
                f"{'-' if share is None else f'{share:.2f}':>7} {_int(s['false_triggers']):>10} "
                f"{_share(s['refused_share']):>7} {_num(s['oracle_mean_metric']):>7} "
                f"{'-' if cost is None else f'{cost:+.5f}':>9} {s['wall_seconds']:>7.0f}"
            )
    return lines


def goals(
    summaries: dict[str, dict[str, dict[str, Any]]], days: int
) -> dict[str, tuple[bool | None, str]]:
    """The loop's goals: (met, or None when the run cannot tell; what was measured)."""
    out: dict[str, tuple[bool | None, str]] = {}
    pairs = [
        (scenario, p["triggers"], p["daily"])
        for scenario, p in summaries.items()
        if "triggers" in p and "daily" in p
    ]
    if pairs:
        details, ok = [], True
        for scenario, mine, daily in pairs:
            gap = (daily["mean_metric"] or 0.0) - (mine["mean_metric"] or 0.0)
            allowed = daily["retrains"] * GOAL_RETRAIN_SHARE
            met = gap <= GOAL_METRIC_GAP and mine["retrains"] <= allowed
            ok = ok and met
            details.append(
                f"{scenario} {gap:+.4f} below daily with {mine['retrains']}/{daily['retrains']} "
                f"retrains{'' if met else ' (missed)'}"
            )
        out["within 0.01 of daily with <= 1/3 of its retrains"] = (ok, "; ".join(details))
    else:
        out["within 0.01 of daily with <= 1/3 of its retrains"] = (None, "needs triggers and daily")
    concept = summaries.get("concept_drift", {}).get("triggers")
    if concept is not None:
        delay = concept["detection_delay_days"]
        out["concept_drift detected within 2 days"] = (
            delay is not None and delay <= GOAL_DETECTION_DAYS,
            "never retrained after the change" if delay is None else f"{delay} day(s)",
        )
    else:
        out["concept_drift detected within 2 days"] = (None, "concept_drift not run")
    stable = summaries.get("stable", {}).get("triggers")
    name = "no false trigger on stable over 60 days"
    if stable is not None:
        count = stable["false_triggers"]
        verdict: bool | None = count == 0 if days >= 60 else (None if count == 0 else False)
        out[name] = (verdict, f"{count} over {days} days" + ("" if days >= 60 else " (too short)"))
    else:
        out[name] = (None, "stable not run")
    walls = [p["triggers"]["wall_seconds"] for p in summaries.values() if "triggers" in p]
    if walls:
        scaled = max(walls) * 60 / days
        out["60 days in <= 10 minutes"] = (
            scaled <= GOAL_SECONDS_PER_60_DAYS,
            f"slowest trigger-policy run {max(walls):.0f}s for {days} days, "
            f"{scaled:.0f}s per 60 days",
        )
    else:
        out["60 days in <= 10 minutes"] = (None, "the trigger policy not run")
    return out


def _terminate(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C, so the `finally` removes the simulations' folder (SIGTERM's
    # default would skip it and leave /tmp/bench-loop-* behind); a second one is ignored.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    raise SystemExit(main(sys.argv[1:]))
