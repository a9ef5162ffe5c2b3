"""The figures of a simulated timeline, its report, and the daily-retrained oracle.

The timelines are built by hand (DayRecord and Timeline are plain models), so each figure
can be checked against numbers worked out here.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from conftest import SMALL
from flywheel.config import load_settings
from flywheel.simulation import report, scores
from flywheel.simulation.loop import DayRecord, Timeline
from flywheel.simulation.oracle import oracle_accuracy

START = date(2026, 1, 15)
SCHEDULE = "schedule '0 3 * * 1': tick at 2026-01-19 03:00 UTC"
DRIFT = "drift: 3 of the newest 2 window(s) drifted (shares 0.33, 0.44)"


def day(index: int, accuracy: float | None = 0.8, **fields: Any) -> DayRecord:
    values: dict[str, Any] = {
        "index": index,
        "day": START + timedelta(days=index),
        "production": "v1",
        "accuracy": accuracy,
        "rows": 100,
        "refused": 0,
        "batch_blocked": False,
        "drift": {},
        "drifted_share": None,
        "decision": None,
        "run": None,
        "rollout": None,
        "model_age_days": float(index + 1),
    }
    return DayRecord(**{**values, **fields})


def fired(reason: str) -> dict[str, Any]:
    return {"fired": True, "reason": reason, "blocked_by": None, "record": "r"}


def run(run_id: str, registered: str | None = "v2") -> dict[str, Any]:
    return {"run_id": run_id, "reason": "r", "registered": registered, "blessed": True}


def timeline(
    records: list[DayRecord], scenario: str = "concept_drift", policy: str = "triggers"
) -> Timeline:
    return Timeline(
        scenario=scenario,
        seed=0,
        days=len(records),
        policy=policy,  # type: ignore[arg-type]
        change_day=5,
        label_delay=2,
        traffic=100,
        records=records,
        wall_seconds=12.5,
    )


def test_detection_delay_counts_from_the_change_day_to_the_first_retrain_on_or_after_it() -> None:
    # given runs on day 3 (before the change on day 5) and day 7, and a planted faulty
    # version on day 5 that is no retrain
    records = [day(i) for i in range(10)]
    records[3] = day(3, run=run("sim-3"))
    records[5] = day(5, run=run("faulty-shuffled"))
    records[7] = day(7, run=run("sim-7"))
    # when / then the delay is 7 - 5 days; the faulty version counts neither as detection
    # nor as a retrain
    assert scores.detection_delay(timeline(records)) == 2
    assert scores.retrains(timeline(records)) == 2
    # and nothing after the change, or no change at all, has no delay
    assert scores.detection_delay(timeline(records[:7])) is None
    assert scores.detection_delay(timeline(records, scenario="stable")) is None


def test_days_below_the_floor_and_the_mean_metric_skip_days_without_a_figure() -> None:
    # given four days, one without any accuracy (nothing served)
    records = [day(0, 0.8), day(1, 0.65), day(2, None), day(3, 0.7)]
    # when / then only the day strictly under the floor counts, and the mean is over three
    assert scores.days_below(timeline(records), floor=0.7) == 1
    assert scores.days_below(timeline(records), floor=0.81) == 3
    assert scores.mean_metric(timeline(records)) == pytest.approx((0.8 + 0.65 + 0.7) / 3)
    assert scores.mean_metric(timeline([day(0, None)])) is None


def test_false_triggers_are_firings_other_than_the_schedule_while_nothing_changed() -> None:
    # given the trigger policy: the schedule, a drift firing, a schedule joined with drift,
    # a blocked drift firing (not fired), and after the change a performance firing
    records = [day(i) for i in range(8)]
    records[0] = day(0, decision=fired(SCHEDULE))
    records[1] = day(1, decision=fired(DRIFT))
    records[2] = day(2, decision=fired(f"{SCHEDULE}; {DRIFT}"))
    records[3] = day(3, decision={**fired(DRIFT), "fired": False, "blocked_by": "cooldown"})
    records[4] = day(4, decision=fired("forced: a person asked"))
    records[6] = day(6, decision=fired("performance drop: accuracy 0.67"))
    # when / then on concept drift only the two before the change count
    assert scores.false_triggers(timeline(records)) == 2
    # on stable every day is unchanged
    assert scores.false_triggers(timeline(records, scenario="stable")) == 3
    # and the policies that decide nothing from signals have no such figure
    assert scores.false_triggers(timeline(records, policy="daily")) is None


def test_the_cost_of_staleness_is_the_slope_of_the_gap_to_the_oracle_against_the_age() -> None:
    # given a model deployed on day 0 losing 0.01 a day against an oracle at 0.8, redeployed
    # at the end of day 4 (age 0 there: day 5 began with a fresh model)
    ages = [1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 2.0]
    serving = [0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0]
    records = [
        day(i, 0.8 - 0.01 * serving[i] - 0.02, model_age_days=ages[i]) for i in range(len(ages))
    ]
    oracle: list[float | None] = [0.8] * len(records)
    oracle[2] = None  # a day the oracle could not score
    # when
    cost = scores.staleness_cost(timeline(records), oracle)
    # then the ages are those when each day began, and the slope is 0.01 a day over 6 days
    assert scores.serving_ages(timeline(records)) == serving
    assert cost["points"] == 6 and cost["from"] == "gap to the oracle"
    assert cost["per_day"] == pytest.approx(0.01)
    assert scores.oracle_gap(timeline(records), oracle) == pytest.approx(
        0.02 + 0.01 * sum(serving[i] for i in (0, 1, 3, 4, 5, 6)) / 6
    )
    # and without an oracle it is the fall of accuracy itself
    assert scores.staleness_cost(timeline(records))["per_day"] == pytest.approx(0.01)


def test_write_puts_the_figures_in_summary_json_and_six_plots_in_the_page(tmp_path: Path) -> None:
    # given a concept drift caught on day 7, a rollout promoted, another rolled back,
    # and a blocked batch
    records = [
        day(i, 0.78 if i < 5 else 0.66, drift={"income": 0.01 * i, "age": 0.02}, drifted_share=0.1)
        for i in range(10)
    ]
    records[7] = day(
        7,
        0.66,
        decision=fired("performance drop: accuracy 0.66"),
        run=run("sim-7"),
        rollout={"version": "v2", "phase": "promoted", "reason": "ok"},
        production="v2",
        model_age_days=0.0,
    )
    records[8] = day(8, 0.77, production="v2", model_age_days=1.0, batch_blocked=True)
    records[9] = day(
        9,
        0.77,
        production="v2",
        model_age_days=2.0,
        run=run("sim-9", "v3"),
        rollout={"version": "v3", "phase": "rolled_back", "reason": "accuracy"},
    )
    oracle: list[float | None] = [0.8] * 10
    # when
    page = report.write(timeline(records), tmp_path / "out", oracle=oracle, floor=0.7)
    # then summary.json holds the figures
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["detection_delay_days"] == 2 and summary["retrains"] == 2
    assert summary["days_below_floor"] == 3  # days 5, 6 and 7 at 0.66
    assert summary["promotions"] == 1 and summary["rollbacks"] == 1
    assert summary["blocked_batches"] == 1 and summary["false_triggers"] == 0
    assert summary["mean_metric"] == pytest.approx((5 * 0.78 + 3 * 0.66 + 2 * 0.77) / 10, abs=1e-4)
    assert summary["oracle_mean_metric"] == 0.8
    assert summary["staleness_cost"]["from"] == "gap to the oracle"
    # and the page has every plot, the definition of the cost and one row per day
    text = page.read_text()
    assert page == tmp_path / "out" / "report.html"
    assert text.count("<img ") == 6
    assert "accuracy lost per day of model age" in text
    assert text.count("<tr>") == 1 + 10
    # and the terminal summary shows them
    console = Console(record=True, width=120)
    console.print(report.terminal_summary(summary))
    shown = console.export_text()
    assert "2 day(s)" in shown and "1 / 1" in shown and "0.8000" in shown


def test_the_oracle_scores_each_day_once_and_has_nothing_to_say_about_a_broken_one(
    tmp_path: Path,
) -> None:
    # given small settings (600 rows a day) and a three-day window
    settings = load_settings(None, env={}, overrides=[*SMALL, "data.generator.change_day=4"])
    days = [settings.data.generator.start_date + timedelta(days=i) for i in (5,)]
    cache = tmp_path / "oracle.json"
    # when the oracle is asked twice, the cache altered in between
    first = oracle_accuracy(settings, days, window_days=3, cache=cache)
    known = json.loads(cache.read_text())
    assert len(known) == 1
    known = {key: 0.5 for key in known}
    cache.write_text(json.dumps(known))
    second = oracle_accuracy(settings, days, window_days=3, cache=cache)
    # then its figures are accuracies a real model reaches, read back from the cache
    assert all(value is not None and 0.6 < value < 1.0 for value in first), first
    assert second == [0.5]
    # and a day whose batch lost a column (broken upstream) has no oracle
    assert oracle_accuracy(settings, days[:1], scenario="broken_missing_column", window_days=3) == [
        None
    ]
