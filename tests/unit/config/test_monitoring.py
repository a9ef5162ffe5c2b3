"""The trigger policy, checked at load: a trigger that could never fire is refused, null is off."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from flywheel.config import load_settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "triggers:\n  drift:\n    features: {incme: 0.2}\n",
            "triggers.drift.features.incme: 'incme' is not a feature",
        ),
        (
            "triggers:\n  drift:\n    features: {income: 0}\n",
            "triggers.drift.features (f.yaml:3): Value error, income: a PSI threshold must be above 0",
        ),
        (
            "triggers:\n  schedule:\n    cron: '0 3 * *'\n",
            "triggers.schedule.cron (f.yaml:3): Value error, '0 3 * *' has 4 field(s)",
        ),
        (
            "triggers:\n  schedule:\n    cron: '0 25 * * *'\n",
            "hour field '25': 25 is outside 0-23",
        ),
        (
            "triggers:\n  drift:\n    share: null\n",
            "triggers.drift (f.yaml:2): Value error, set share, or PSI thresholds under features",
        ),
        ("triggers:\n  drift:\n    share: 1.0\n", "share must be below 1"),
        (
            "triggers:\n  drift:\n    share: 1.5\n",
            "triggers.drift.share (f.yaml:3): Input should be",
        ),
        (
            "triggers:\n  performance:\n    max_drop: null\n",
            "triggers.performance (f.yaml:2): Value error, set floor or max_drop",
        ),
        ("triggers:\n  performance:\n    floor: 0\n", "floor must be above 0"),
        ("triggers:\n  daily_budget: 0\n", "triggers.daily_budget (f.yaml:2): Input should be"),
        (
            "monitoring:\n  windows: 1\ntriggers:\n  drift:\n    windows: 2\n",
            "triggers.drift.windows: 2 windows never fit in the 1 that monitoring.windows",
        ),
        (
            "triggers:\n  schedule:\n    cron: '0 0 30 2 *'\n",
            "triggers.schedule.cron (f.yaml:3): Value error, '0 0 30 2 *' never fires: no month "
            "it names has day 30",
        ),
        (
            "monitoring:\n  windows: 3\n  label_delay_days: 4\n",
            "triggers.performance: monitoring.label_delay_days lets labels arrive up to 4 day(s) "
            "after a window, but monitoring.windows looks back 3 day(s) (3 day window(s)): labels "
            "that late are never judged",
        ),
        (
            "monitoring:\n  window: hour\n  windows: 24\n",
            "monitoring.windows looks back 1 day(s) (24 hour window(s))",
        ),
    ],
)
def test_a_trigger_that_cannot_fire_is_refused_at_load(
    refusal: Callable[[str], str], text: str, expected: str
) -> None:
    # given a trigger policy with one trigger that could never fire
    # when it is loaded, then the error names the trigger's key and why
    assert expected in refusal(text)


@pytest.mark.parametrize(
    "overrides",
    [
        ["triggers.schedule.cron=0 0 29 2 *"],  # leap days fire
        ["monitoring.windows=3", "monitoring.label_delay_days=3"],  # as late as it looks back
        ["monitoring.windows=3", "triggers.performance=null"],  # no trigger waits for labels
        ["monitoring.window=hour", "monitoring.windows=2", "monitoring.label_delay_days=1"],
    ],
)
def test_a_policy_that_can_fire_is_accepted(overrides: list[str]) -> None:
    assert load_settings(None, env={}, overrides=overrides)


def test_a_trigger_set_to_null_is_off_and_a_named_feature_is_accepted() -> None:
    settings = load_settings(
        None,
        env={},
        overrides=["triggers.schedule=null", "triggers.drift.features.income=0.2"],
    )
    assert settings.triggers.schedule is None
    assert settings.triggers.drift is not None and settings.triggers.drift.features == {
        "income": 0.2
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "triggers:\n  performance:\n    metric: rmse\n    floor: 0.5\n",
            "triggers.performance (f.yaml:2): Value error, floor: lower rmse is better; "
            "bound it with ceiling or max_rise",
        ),
        (
            "triggers:\n  performance:\n    metric: accuracy\n    ceiling: 0.5\n",
            "ceiling: higher accuracy is better; bound it with floor or max_drop",
        ),
        (
            "triggers:\n  performance:\n    metric: mae\n    max_rise: null\n",
            "set ceiling or max_rise for mae",
        ),
        (
            "triggers:\n  estimated_performance:\n    metric: r2\n",
            "triggers.estimated_performance (f.yaml:2): Value error, metric: r2 has no "
            "estimate before labels",
        ),
        (
            "model:\n  task: regression\ntriggers:\n  performance:\n    metric: accuracy\n",
            "triggers.performance.metric: accuracy is not monitored for regression "
            "(one of: rmse, mae, r2, mape)",
        ),
        (
            "model:\n  task: regression\ntriggers:\n  performance:\n    floor: 0.8\n",
            "triggers.performance.floor: lower rmse is better; bound it with ceiling or "
            "max_rise (the task is regression)",
        ),
        (
            "model:\n  task: binary\ntriggers:\n  estimated_performance:\n    metric: macro_f1\n",
            "triggers.estimated_performance.metric: macro_f1 is not monitored for binary",
        ),
    ],
)
def test_a_performance_trigger_the_task_cannot_have_is_refused_with_its_key(
    refusal: Callable[[str], str], text: str, expected: str
) -> None:
    # given a metric or a bound the task (said, or none yet) cannot be judged by
    # when it is loaded, then the error names the key and why
    assert expected in refusal(text)


def test_a_regressions_triggers_default_to_its_rmse_and_old_policies_still_load() -> None:
    # given the shipped policy of a classifier (accuracy, max_drop) and a regression's
    regression = load_settings(None, env={}, overrides=["model.task=regression"])
    old = load_settings(
        None,
        env={},
        overrides=["triggers.performance.metric=accuracy", "triggers.performance.floor=0.8"],
    )
    # then a regression's is judged on rmse against ceilings, a classifier's as before
    performance = regression.triggers.performance
    assert performance is not None and performance.metric_for("regression") == "rmse"
    assert performance.lower_is_better("regression")
    assert old.triggers.performance is not None
    assert old.triggers.performance.metric_for("binary") == "accuracy"
    assert old.triggers.performance.floor == 0.8
