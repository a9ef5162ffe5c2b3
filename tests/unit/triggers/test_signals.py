"""Each trigger judged on hand-built monitoring reports and known dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from flywheel.config import (
    CodeChangeTrigger,
    DriftTrigger,
    EstimatedPerformanceTrigger,
    NewDataTrigger,
    PerformanceTrigger,
    ScheduleTrigger,
)
from flywheel.monitoring.estimation import Estimate
from flywheel.monitoring.intervals import Interval
from flywheel.monitoring.performance import Offline, Performance
from flywheel.monitoring.window import WindowReport
from flywheel.triggers import signals
from flywheel.triggers.signals import Production
from harness.reports import DAY0, interval, window_report

THREE = ("income", "loan_amount", "credit_score")


def spans(*days: int) -> list[datetime]:
    return [DAY0 + timedelta(days=d) for d in days]


def test_schedule_fires_once_a_tick_passed_since_the_last_run() -> None:
    policy = ScheduleTrigger(cron="0 3 * * 1")  # Mondays 03:00; 2026-01-12 is a Monday
    now = datetime(2026, 1, 14, tzinfo=UTC)
    # given a run that started before Monday's tick, then it fires and says which tick
    fired = signals.schedule(policy, now, datetime(2026, 1, 11, tzinfo=UTC))
    assert fired.fired and "tick at 2026-01-12 03:00 UTC" in fired.reason
    assert fired.inputs["last_tick"] == "2026-01-12T03:00:00+00:00"
    # given a run that started after it, then it does not
    assert not signals.schedule(policy, now, datetime(2026, 1, 12, 4, tzinfo=UTC)).fired
    # given no run at all, then it fires
    assert signals.schedule(policy, now, None).fired


def test_new_data_counts_batches_after_the_last_runs_newest() -> None:
    policy = NewDataTrigger(batches=3)
    days = [date(2026, 1, d) for d in range(1, 11)]
    assert not signals.new_data(policy, days, date(2026, 1, 8)).fired  # 9th, 10th: two
    check = signals.new_data(policy, days, date(2026, 1, 7))
    assert (
        check.fired and check.inputs["new_batches"] == 3 and check.inputs["newest"] == "2026-01-10"
    )


def test_drift_fires_only_when_every_one_of_the_newest_windows_drifted() -> None:
    policy = DriftTrigger(share=0.3, windows=2)
    # given a drifted window after a quiet one, then one window is not enough
    reports = [window_report(0), window_report(1, drifted=THREE)]
    assert not signals.drift(policy, reports, spans(0, 1)).fired
    # given two drifted windows in a row, then it fires, naming the features by PSI
    reports.append(window_report(2, drifted=THREE, psi={"income": 0.31}))
    check = signals.drift(policy, reports, spans(1, 2))
    assert check.fired
    assert check.reason.startswith("drift: 3/9 features drifted (income PSI 0.31,")
    assert "2 windows to 2026-01-12" in check.reason
    assert [w["drifted_share"] for w in check.inputs["windows"]] == [1 / 3, 1 / 3]


def test_drift_share_must_be_exceeded_and_a_missing_window_does_not_count() -> None:
    policy = DriftTrigger(share=0.3, windows=2)
    two = ("income", "loan_amount")  # 2/9 = 0.22, not above 0.3
    assert not signals.drift(
        policy, [window_report(0, drifted=two), window_report(1, drifted=two)], spans(0, 1)
    ).fired
    # given no report for the newest window (no traffic), then it does not fire
    check = signals.drift(policy, [window_report(0, drifted=THREE)], spans(0, 1))
    assert not check.fired and check.inputs["windows"][1]["rows"] == 0


def test_drift_on_a_named_features_psi() -> None:
    policy = DriftTrigger(share=None, features={"income": 0.2}, windows=1)
    assert not signals.drift(policy, [window_report(0, psi={"income": 0.19})], spans(0)).fired
    check = signals.drift(policy, [window_report(0, psi={"income": 0.31})], spans(0))
    assert check.fired and check.reason == "drift: income (PSI 0.31 > 0.2) in 2026-01-10"


@pytest.mark.parametrize(
    ("accuracy", "fired"),
    [
        (interval(0.70, 0.03), True),  # upper bound 0.73 < 0.8 - 0.05
        (interval(0.72, 0.04), False),  # upper bound 0.76 is not below 0.75: not significant
        (interval(0.78, 0.01), False),
    ],
)
def test_performance_fires_only_when_the_whole_interval_is_below(
    accuracy: Interval, fired: bool
) -> None:
    policy = PerformanceTrigger(max_drop=0.05, min_labelled=100)
    reports = [window_report(0, accuracy=accuracy, labelled=400, offline=0.8)]
    check = signals.performance(policy, reports)
    assert check.fired is fired
    assert check.inputs["threshold"] == pytest.approx(0.75) and check.inputs["offline"] == 0.8
    if fired:
        assert check.reason.startswith("performance drop: accuracy 0.700 [0.670, 0.730] on 400")
        assert check.severity == "high"


def test_a_drop_against_the_offline_figure_counts_that_figures_own_error() -> None:
    # given a window of 10,000 labels whose accuracy 0.74 ± 0.008 is surely below 0.8 - 0.05,
    # against an offline figure measured on 2,000 rows (its error about √5 times the window's)
    policy = PerformanceTrigger(max_drop=0.05, min_labelled=100)
    report = window_report(0, accuracy=interval(0.74, 0.008), labelled=10_000, offline=0.8)
    assert report.offline is not None
    measured = report.model_copy(
        update={"offline": report.offline.model_copy(update={"newest_rows": 2000})}
    )
    # when judged, then the difference's interval is √(1 + 10,000 / 2,000) = √6 times as wide
    # (0.74 + 0.0196 = 0.7596, not below 0.75), and it does not fire; without the offline
    # figure's rows (an older record) it does
    check = signals.performance(policy, [measured])
    assert not check.fired
    assert check.inputs["judged_interval"]["high"] == pytest.approx(0.74 + 0.008 * 6**0.5, abs=1e-4)
    assert signals.performance(policy, [report]).fired
    # and a floor the user set is not an estimate: no widening
    floor = PerformanceTrigger(floor=0.75, max_drop=None, min_labelled=100)
    assert signals.performance(floor, [measured]).fired


def test_a_named_features_psi_does_not_fire_on_a_window_too_small_to_trust() -> None:
    # given a window of 20 rows, fewer than its deciles need (5 rows a bin), with PSI 0.9
    policy = DriftTrigger(share=None, features={"income": 0.2}, windows=1)
    report = window_report(0, psi={"income": 0.9}, rows=20)
    # then its PSI is reported and does not fire
    check = signals.drift(policy, [report], spans(0))
    assert not check.fired and check.inputs["windows"][0]["psi"]["income"] == 0.9


def test_performance_uses_the_newest_window_with_enough_labels_and_a_floor() -> None:
    policy = PerformanceTrigger(floor=0.7, max_drop=None, min_labelled=100)
    reports = [
        window_report(0, accuracy=interval(0.6), labelled=400),
        window_report(1, accuracy=interval(0.9), labelled=400),
        window_report(2, accuracy=interval(0.1), labelled=50),  # too few labels yet
    ]
    check = signals.performance(policy, reports)
    assert not check.fired and check.inputs["window"] == "2026-01-11"
    none = signals.performance(policy, [window_report(0, labelled=20)])
    assert not none.fired and "no window has 100 labels yet (most: 20)" in none.reason


def test_performance_skips_windows_whose_labels_the_last_run_saw() -> None:
    policy = PerformanceTrigger(floor=0.7, max_drop=None, min_labelled=100)
    # given a newer window the last run saw with its labels, and an older one it did not
    reports = [
        window_report(0, accuracy=interval(0.6), labelled=400),
        window_report(1, accuracy=interval(0.6), labelled=400),
    ]
    # when judged, then the window whose labels came back after the run counts
    check = signals.performance(policy, reports, seen={DAY0 + timedelta(days=1)})
    assert check.fired and check.inputs["window"] == "2026-01-10"
    # and with both seen, nothing is judged again, and the reason says so
    quiet = signals.performance(policy, reports, seen=set(spans(0, 1)))
    assert not quiet.fired and quiet.inputs["seen"] == ["2026-01-10", "2026-01-11"]
    assert quiet.reason == (
        "performance: no labels came back since the last run started (it saw those of 2026-01-11)"
    )


def test_estimated_performance_needs_every_window_and_is_low_severity() -> None:
    policy = EstimatedPerformanceTrigger(max_drop=0.05, windows=2)
    low = interval(0.70, 0.02)
    assert not signals.estimated_performance(
        policy, [window_report(0), window_report(1, estimate=low)], spans(0, 1)
    ).fired
    check = signals.estimated_performance(
        policy, [window_report(0, estimate=low), window_report(1, estimate=low)], spans(0, 1)
    )
    assert check.fired and check.severity == "low"
    assert "CBPE, an estimate" in check.reason


def test_code_change_compares_ci_with_productions_lineage_once() -> None:
    policy = CodeChangeTrigger()
    production = Production(
        version="v3",
        created_at=DAY0,
        newest_batch=None,
        commit="aaaa1111",
        image_digest="sha256:" + "1" * 64,
        image=None,
    )
    same = signals.code_change(policy, production, "aaaa1111", "repo@sha256:" + "1" * 64, [])
    assert not same.fired
    commit = signals.code_change(policy, production, "bbbb2222", None, [])
    assert (
        commit.fired and commit.reason == "code change: commit bbbb2222 (production v3: aaaa1111)"
    )
    image = signals.code_change(policy, production, None, "repo@sha256:" + "2" * 64, [])
    assert image.fired and "image sha256:22222222222" in image.reason
    # given a run already started for that commit, then it does not fire again
    assert not signals.code_change(policy, production, "bbbb2222", None, [("bbbb2222", None)]).fired
    assert not signals.code_change(policy, production, None, None, []).fired


def _regression(
    day: int, rmse: Interval | None, labelled: int, estimate: Interval | None = None
) -> WindowReport:
    """A regression's window: RMSE on labels and estimated, its offline RMSE 50."""
    base = window_report(day, labelled=labelled)
    return base.model_copy(
        update={
            "task": "regression",
            "performance": Performance(labelled=labelled, rmse=rmse),
            "offline": Offline(newest={"rmse": 50.0, "mae": 40.0, "r2": 0.4}, holdout=None),
            "estimate": Estimate(method="DLE", rows=400, rmse=estimate or interval(50.0, 2.0)),
        }
    )


@pytest.mark.parametrize(
    ("rmse", "fired"),
    [
        (interval(60.0, 4.0), True),  # lower bound 56 > 50 x 1.1
        (interval(57.0, 3.0), False),  # lower bound 54 is not above 55: not significant
        (interval(45.0, 3.0), False),  # better than offline
    ],
)
def test_an_errors_trigger_fires_when_the_whole_interval_is_above_its_ceiling(
    rmse: Interval, fired: bool
) -> None:
    # given the default policy (rmse for a regression, 10% worse than offline) and a window
    policy = PerformanceTrigger(min_labelled=100)
    check = signals.performance(policy, [_regression(0, rmse, 400)])
    # then it fires only when even the lower bound is above the offline figure times 1.1
    assert check.fired is fired
    assert check.inputs["metric"] == "rmse" and check.inputs["threshold"] == pytest.approx(55.0)
    assert "max_drop" not in check.inputs and check.inputs["max_rise"] == 0.1
    if fired:
        assert check.reason.startswith("performance drop: rmse 60.000 [56.000, 64.000] on 400")
        assert "surely above 55.000 (offline 50.000)" in check.reason


def test_an_errors_fixed_ceiling_and_its_estimate() -> None:
    # given a ceiling of 52, stricter than offline x 1.15
    policy = EstimatedPerformanceTrigger(metric="rmse", ceiling=52.0, windows=2)
    high = interval(58.0, 3.0)
    reports = [_regression(0, None, 0, high), _regression(1, None, 0, high)]
    # when the estimate of both windows is above it, then it fires, naming the method
    check = signals.estimated_performance(policy, reports, spans(0, 1))
    assert (
        check.fired and "DLE, an estimate" in check.reason and "surely above 52.000" in check.reason
    )
    # and an estimate that reaches the ceiling does not
    near = interval(53.0, 2.0)
    quiet = signals.estimated_performance(
        policy, [_regression(0, None, 0, near), _regression(1, None, 0, near)], spans(0, 1)
    )
    assert not quiet.fired and "lower 51.000 vs 52.000" in quiet.reason


def test_a_multiclass_window_is_judged_on_its_macro_f1() -> None:
    policy = PerformanceTrigger(metric="macro_f1", floor=0.7, max_drop=None)
    base = window_report(0, labelled=300)
    report = base.model_copy(
        update={
            "task": "multiclass",
            "performance": Performance(labelled=300, macro_f1=interval(0.6, 0.05)),
        }
    )
    check = signals.performance(policy, [report])
    assert check.fired and check.reason.startswith("performance drop: macro_f1 0.600")


def test_a_policy_the_versions_task_cannot_have_is_not_judged() -> None:
    # given an accuracy floor from before the task was known, and a regression in production
    policy = PerformanceTrigger(metric="accuracy", floor=0.8)
    check = signals.performance(policy, [_regression(0, interval(60.0), 400)])
    # then the check is quiet and says why
    assert not check.fired
    assert "not judged: triggers.performance.metric: accuracy is not monitored for regression" in (
        check.reason
    )
