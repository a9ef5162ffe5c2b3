"""The oracle: the generator's own probabilities on the rows production was judged on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flywheel.config import load_settings
from flywheel.simulation import oracle
from flywheel.synthetic import best_scores
from harness.projects import SMALL
from harness.timelines import day, timeline


def test_the_oracle_is_the_mean_best_score_of_the_rows_judged() -> None:
    # given a small world's day after the change of concept drift
    settings = load_settings(None, env={}, overrides=[*SMALL, "data.generator.change_day=4"])
    generator = settings.data.generator.model_copy(update={"scenario": "concept_drift"})
    when = generator.start_date + timedelta(days=5)
    best = best_scores(when, generator)
    # when the oracle is asked about some of its rows
    rows = [0, 3, 10, 599]
    # then it is their mean, a day's rows in the generator's order
    assert oracle.on_rows(generator, when, rows) == pytest.approx(best[rows].mean(), abs=1e-5)
    # and without rows, or with rows the day's batch does not have, it has nothing to say
    assert oracle.on_rows(generator, when, []) is None
    assert oracle.on_rows(generator, when, [600]) is None


def test_a_timeline_carries_its_oracle() -> None:
    # given days recorded with and without an oracle (a timeline from before it was kept)
    records = [day(0, oracle=0.81), day(1), day(2, oracle=0.79)]
    # when / then
    assert timeline(records).oracle == [0.81, None, 0.79]
