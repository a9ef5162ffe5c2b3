"""The daily-retrained oracle: each day scored once, cached, and silent on a broken day."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from flywheel.config import load_settings
from flywheel.simulation.oracle import oracle_accuracy
from harness.projects import SMALL


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
