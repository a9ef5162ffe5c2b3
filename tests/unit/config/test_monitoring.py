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
    ],
)
def test_a_trigger_that_cannot_fire_is_refused_at_load(
    refusal: Callable[[str], str], text: str, expected: str
) -> None:
    # given a trigger policy with one trigger that could never fire
    # when it is loaded, then the error names the trigger's key and why
    assert expected in refusal(text)


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
