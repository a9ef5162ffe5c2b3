"""`make bench-loop`: its table and goals on summaries of hand-built timelines, and one short
run of every policy on one scenario (the whole run is the benchmark's to make: about an hour)."""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from benchmarks import loop as bench
from flywheel.simulation import scores
from flywheel.simulation.loop import DayRecord, Timeline

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = "schedule '0 3 * * 1': tick"
DRIFT = "drift: 3 of the newest 2 window(s) drifted"


def summary(
    scenario: str,
    policy: str,
    accuracy: float,
    retrain_days: set[int],
    *,
    days: int = 60,
    fired_days: dict[int, str] | None = None,
    refused_days: frozenset[int] = frozenset(),
    oracle: float | None = 0.8,
) -> dict[str, Any]:
    """The summary of a timeline of `days` days at `accuracy`, retraining on `retrain_days`
    (runs started by what fired that day, a drift firing unless `fired_days` says; blessed
    but on `refused_days`)."""
    fired = {i: DRIFT for i in retrain_days} | (fired_days or {})
    records = [
        DayRecord(
            index=i,
            day=date(2026, 1, 15) + timedelta(days=i),
            production="v1",
            accuracy=accuracy,
            rows=100,
            refused=0,
            batch_blocked=False,
            drift={},
            drifted_share=None,
            decision={"fired": True, "reason": fired[i]} if i in fired else None,
            run={"run_id": f"sim-{i}", "blessed": i not in refused_days}
            if i in retrain_days
            else None,
            rollout=None,
            model_age_days=1.0,
            oracle=oracle,
        )
        for i in range(days)
    ]
    timeline = Timeline(
        scenario=scenario,
        seed=0,
        days=days,
        policy=policy,  # type: ignore[arg-type]
        change_day=7,
        label_delay=2,
        traffic=100,
        records=records,
        wall_seconds=100.0,
    )
    return scores.summary(timeline, timeline.oracle, 0.7)


def test_the_goals_are_met_when_triggers_stay_close_to_daily_at_a_third_of_the_cost() -> None:
    # given triggers 0.005 under daily with 8 of its 60 retrains, concept drift caught on day 9
    # and covariate drift on day 10 by a signal, on stable only the schedule fired, and every
    # policy under the oracle
    weekly = {i: SCHEDULE for i in range(4, 60, 7)}
    summaries = {
        "stable": {
            "triggers": summary("stable", "triggers", 0.775, set(weekly), fired_days=weekly),
            "daily": summary("stable", "daily", 0.78, set(range(60))),
        },
        "concept_drift": {
            "triggers": summary("concept_drift", "triggers", 0.775, {9, 20}),
            "never": summary("concept_drift", "never", 0.70, set()),
            "daily": summary("concept_drift", "daily", 0.78, set(range(60))),
        },
        "covariate_drift": {
            "triggers": summary("covariate_drift", "triggers", 0.78, {10}),
            "daily": summary("covariate_drift", "daily", 0.78, set(range(60))),
        },
    }
    # when
    checked = bench.goals(summaries, 60, seconds=3000.0)
    lines = bench.table(summaries)
    # then every goal is met, and the details say with what
    assert {name: ok for name, (ok, _) in checked.items()} == {
        "within 0.01 of daily with <= 1/3 of its retrains": True,
        "concept_drift detected within 2 days": True,
        "covariate_drift detected within 3 days": True,
        "no false trigger on stable": True,
        "the oracle above every policy": True,
        "the whole run in <= 60 minutes": True,
    }
    assert "2 day(s)" in checked["concept_drift detected within 2 days"][1]
    assert checked["no false trigger on stable"][1] == "stable: 0 in 60 days"
    # and the table has a row per simulation, with ratios against daily
    never = next(line for line in lines if line.split()[:2] == ["concept_drift", "never"])
    assert "-0.0800" in never and " 0.00 " in never
    triggers = next(line for line in lines if line.split()[:2] == ["concept_drift", "triggers"])
    assert "-0.0050" in triggers and "0.03" in triggers


def test_the_goals_are_missed_or_undecided_for_the_right_reasons() -> None:
    # given triggers that retrain as often as daily; on concept drift only by the schedule and
    # by a drift run the gate refused; that fire on drift on stable; a policy above the
    # oracle; and a run of 70 minutes
    refused = summary(
        "concept_drift",
        "triggers",
        0.78,
        {8, 11},
        days=30,
        fired_days={11: SCHEDULE},
        refused_days=frozenset({8}),
    )
    summaries = {
        "stable": {
            "triggers": summary("stable", "triggers", 0.78, set(), days=30, fired_days={3: DRIFT}),
        },
        "concept_drift": {
            "triggers": refused,
            "daily": summary("concept_drift", "daily", 0.82, {0, 1, 2, 3, 4}, days=30),
        },
    }
    # when
    checked = bench.goals(summaries, 30, seconds=4200.0)
    # then
    assert checked["within 0.01 of daily with <= 1/3 of its retrains"][0] is False
    assert checked["concept_drift detected within 2 days"] == (
        False,
        "concept_drift: no blessed run a signal started after the change",
    )
    assert checked["covariate_drift detected within 3 days"] == (None, "covariate_drift not run")
    assert checked["no false trigger on stable"] == (False, "stable: 1 in 30 days")
    assert checked["the oracle above every policy"] == (False, "concept_drift daily by 0.0200")
    assert checked["the whole run in <= 60 minutes"] == (False, "70.0 min for 30 days")
    # and a run that read results from the cache cannot tell how long the whole run takes
    assert bench.goals(summaries, 30, seconds=600.0, from_cache=2)[
        "the whole run in <= 60 minutes"
    ] == (None, "10.0 min, 2 result(s) from the cache")


def test_detection_counts_only_a_blessed_run_a_signal_started() -> None:
    # given concept drift from day 7, a schedule run on day 11 and a drift run on day 12
    late = summary("concept_drift", "triggers", 0.78, {11, 12}, fired_days={11: SCHEDULE})
    # then the schedule run is the first blessed run, and the drift run the detection
    assert late["first_blessed_days"] == 4 and late["detection_delay_days"] == 5


def test_a_regression_world_is_judged_by_its_error_rising_over_dailys() -> None:
    # given the regression world's trigger policy at 4% more error than daily, then at 8%
    def world(mine: float) -> dict[str, dict[str, Any]]:
        out = {
            "triggers": summary("concept_drift", "triggers", mine, {0, 20}),
            "daily": summary("concept_drift", "daily", 10.0, set(range(60))),
        }
        for s in out.values():
            s["metric"] = "mae"
        return {"regression:concept_drift": out}

    name = "within 0.01 of daily with <= 1/3 of its retrains"
    close = bench.goals(world(10.4), 60)[name]
    far = bench.goals(world(10.8), 60)[name]
    # then 4% is within the 5% goal and 8% is not, each said as a share of daily's error
    assert close == (True, "regression:concept_drift mae +4.0% vs daily with 2/60 retrains")
    assert far[0] is False and "mae +8.0% vs daily" in far[1]


def test_make_passes_args_through() -> None:
    args = "ARGS=--days 3 --scenarios stable"
    shown = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(REPO), "bench-loop", args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-m benchmarks.loop --days 3 --scenarios stable" in shown.splitlines()[-1]


# A world small enough for seconds a simulation: three days of batches a run, fewer trees.
SMALL = [
    "data.window_days=3",
    "data.generator.change_day=1",
    "model.params.max_iter=30",
    "promotion.importance.repeats=2",
]


def test_a_short_run_plays_every_policy_and_caches_never_and_daily(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a small world, two days, one scenario, one simulation at a time
    common = ["--days", "2", "--scenarios", "concept_drift", "--traffic", "200", "--jobs", "1"]
    common += ["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    common += [word for override in SMALL for word in ("--set", override)]
    # when every policy is played
    assert bench.main(common) == 0
    out = capsys.readouterr().out
    # then the run says where it is day by day, and ends with one JSON line of every
    # policy's figures
    assert "concept_drift signals day 2/2:" in out
    last = json.loads(out.strip().splitlines()[-1])
    assert last["days"] == 2 and last["simulations"] == 5 and last["from_cache"] == 0
    for policy in bench.POLICIES:
        assert last[f"concept_drift_{policy}_mean_metric"] is not None
        assert last[f"concept_drift_{policy}_oracle_mean_metric"] is not None
    assert last["concept_drift_daily_retrains"] == 2
    assert last["concept_drift_never_retrains"] == 0
    # and never and daily are kept in the cache, read back the second time
    assert len(list((tmp_path / "cache").glob("binary-concept_drift-*-days2-*.json"))) == 2
    assert bench.main([*common, "--policies", "never,daily"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["from_cache"] == 2
    assert again["concept_drift_daily_mean_metric"] == last["concept_drift_daily_mean_metric"]
