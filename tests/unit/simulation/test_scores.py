"""The figures of a simulated timeline, on timelines built by hand."""

from __future__ import annotations

import pytest

from flywheel.simulation import scores
from harness.timelines import DRIFT, SCHEDULE, day, fired, run, timeline


def test_detection_delay_counts_only_blessed_runs_a_signal_started_on_or_after_the_change() -> None:
    # given a drift run on day 3 (before the change on day 5), a planted faulty version on
    # day 5 that is no retrain, a blessed schedule run on day 6, a drift run the gate refused
    # on day 7 and a blessed drift run (joined by the schedule) on day 8
    records = [day(i) for i in range(10)]
    records[3] = day(3, run=run("sim-3"), decision=fired(DRIFT))
    records[5] = day(5, run=run("faulty-shuffled"))
    records[6] = day(6, run=run("sim-6"), decision=fired(SCHEDULE))
    records[7] = day(7, run={**run("sim-7"), "blessed": False}, decision=fired(DRIFT))
    records[8] = day(8, run=run("sim-8"), decision=fired(f"{SCHEDULE}; {DRIFT}"))
    # when / then detection is day 8 - 5; the first blessed run of any kind is day 6's; the
    # faulty version counts as neither, nor as a retrain
    assert scores.detection_delay(timeline(records)) == 3
    assert scores.first_blessed(timeline(records)) == 1
    assert scores.retrains(timeline(records)) == 4
    # and the trigger policy without its schedule is judged alike, the calendar ones not at all
    assert scores.detection_delay(timeline(records, policy="signals")) == 3
    assert scores.detection_delay(timeline(records, policy="schedule")) is None
    assert scores.first_blessed(timeline(records, policy="schedule")) == 1
    # and nothing after the change, or no change at all, has no delay
    assert scores.detection_delay(timeline(records[:8])) is None
    assert scores.detection_delay(timeline(records, scenario="stable")) is None
    assert scores.first_blessed(timeline(records, scenario="stable")) is None


def test_days_below_the_floor_and_the_mean_metric_skip_days_without_a_figure() -> None:
    # given four days, one without any accuracy (nothing served)
    records = [day(0, 0.8), day(1, 0.65), day(2, None), day(3, 0.7)]
    # when / then only the day strictly under the floor counts, and the mean is over three
    assert scores.days_below(timeline(records), floor=0.7) == 1
    assert scores.days_below(timeline(records), floor=0.81) == 3
    assert scores.mean_metric(timeline(records)) == pytest.approx((0.8 + 0.65 + 0.7) / 3)
    assert scores.mean_metric(timeline([day(0, None)])) is None


def test_production_and_the_oracle_are_compared_row_for_row_not_day_for_day() -> None:
    # given new_category's shape: two days judged on 2,000 rows each, 0.01 under the oracle,
    # then two days where almost every request was refused, judged on 25 rows each, on which
    # production was lucky (0.92 against an oracle of 0.81: 23 of 25 right)
    records = [
        day(0, 0.80, rows=2000, judged=2000),
        day(1, 0.80, rows=2000, judged=2000),
        day(2, 0.92, rows=25, refused=1975, judged=25),
        day(3, 0.92, rows=25, refused=1975, judged=25),
    ]
    oracle: list[float | None] = [0.81, 0.81, 0.81, 0.81]
    # when / then production's mean is over the 4,050 rows it was judged on, and it stays under
    # the oracle (a mean of days would put it 0.05 above)
    mean = scores.mean_metric(timeline(records))
    assert mean == pytest.approx((2 * 2000 * 0.80 + 2 * 25 * 0.92) / 4050)
    summary = scores.summary(timeline(records), oracle, floor=0.7)
    assert summary["oracle_mean_metric"] == pytest.approx(0.81)
    assert summary["oracle_gap"] == pytest.approx(0.81 - mean, abs=1e-4)
    assert summary["oracle_gap"] > 0
    # and a day without rows judged weighs nothing, and an older timeline without the count
    # weighs each day by its answered rows
    assert scores.mean_metric(timeline([*records, day(4, 0.5, judged=0)])) == pytest.approx(mean)
    older = [r.model_copy(update={"judged": None}) for r in records]
    assert scores.mean_metric(timeline(older)) == pytest.approx(mean)


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


def test_refused_rows_are_counted_against_the_rows_sent() -> None:
    # given a day that refused 90 of its 100 rows (a category production does not know)
    # after a day that answered all of them
    records = [day(0), day(1, 0.9, rows=10, refused=90)]
    # when / then the share is of every row sent, though accuracy saw only the answered ten
    assert scores.refused(timeline(records)) == {"refused_rows": 90, "refused_share": 0.45}
    assert scores.refused(timeline([day(0, None, rows=0)])) == {
        "refused_rows": 0,
        "refused_share": None,
    }


def test_the_floor_is_an_accuracy_floor_from_the_configuration_else_the_default() -> None:
    from flywheel.config import load_settings

    # given a roc_auc gate, an accuracy gate, and a performance trigger defending 0.72
    roc = load_settings(None, env={}, overrides=["promotion.min_metric=0.74"])
    accuracy = load_settings(
        None, env={}, overrides=["promotion.metric=accuracy", "promotion.min_metric=0.74"]
    )
    defended = load_settings(
        None, env={}, overrides=["promotion.min_metric=0.74", "triggers.performance.floor=0.72"]
    )
    # when / then a roc_auc minimum is never applied to accuracy
    assert scores.floor(roc) == scores.DEFAULT_FLOOR == 0.7
    assert scores.floor(accuracy) == 0.74
    assert scores.floor(defended) == 0.72
