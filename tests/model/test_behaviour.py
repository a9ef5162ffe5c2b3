"""Behavioural tests of the trained model (ML Test Score): what must not move its scores,
and which way they must move.

These test the model the pipeline trains, not the code: run on rows it never saw,
through flywheel.predictor.Predictor, the code path serving uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:
    from harness.model import TrainedModel

# Invariance: columns the model must ignore. Each change keeps the rows in order.
IGNORED: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "event time a year later": lambda rows: rows.assign(
        event_time=rows["event_time"] + pd.Timedelta(days=365)
    ),
    "event time missing": lambda rows: rows.assign(event_time=pd.NaT),
    "no event time column": lambda rows: rows.drop(columns="event_time"),
    "unknown columns added": lambda rows: rows.assign(
        customer_id=np.arange(len(rows))[::-1], note="called twice", score=0.99
    ),
    "label flipped": lambda rows: rows.assign(defaulted=1 - rows["defaulted"]),
    "no label column": lambda rows: rows.drop(columns="defaulted"),
    "columns in reverse order": lambda rows: rows[rows.columns[::-1]],
}


@pytest.mark.parametrize("change", IGNORED.values(), ids=IGNORED.keys())
def test_a_column_the_model_ignores_changes_no_score(
    model: TrainedModel, change: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    rows = model.held_out
    np.testing.assert_array_equal(model.risk(change(rows.copy())), model.risk(rows))


def test_row_order_changes_no_score(model: TrainedModel) -> None:
    rows = model.held_out
    order = np.random.default_rng(7).permutation(len(rows))
    shuffled = rows.iloc[order].reset_index(drop=True)
    np.testing.assert_array_equal(model.risk(shuffled), model.risk(rows)[order])


def test_a_rows_score_does_not_depend_on_the_rest_of_the_request(model: TrainedModel) -> None:
    rows = model.held_out.head(40)
    alone = [model.risk(rows.iloc[[i]])[0] for i in range(len(rows))]
    np.testing.assert_array_equal(alone, model.risk(rows))


def late_payment_risk(model: TrainedModel, extra: range) -> np.ndarray:
    """P(default) of every held-out row with `k` more late payments, one column per k."""
    rows = model.held_out
    return np.stack(
        [model.risk(rows.assign(late_payments=rows["late_payments"] + k)) for k in extra], axis=1
    )


def test_more_late_payments_never_lower_the_risk(model: TrainedModel) -> None:
    risk = late_payment_risk(model, range(4))  # + 0, 1, 2, 3 late payments
    steps = np.diff(risk, axis=1)
    lowered = (steps < 0).any(axis=1)
    assert not lowered.any(), (
        f"{lowered.sum()} of {len(risk)} held-out rows score a lower risk with one more late "
        f"payment ({(steps < 0).sum()} of {steps.size} steps; per step +1, +2, +3: "
        f"{(steps < 0).sum(axis=0).tolist()}); the largest drop is {-steps.min():.4f}, "
        f"the median drop {-np.median(steps[steps < 0]):.4f}"
    )


def test_more_late_payments_raise_the_average_risk(model: TrainedModel) -> None:
    # Weaker than the test above, which is the requirement: this one catches a model
    # that learned the effect backwards or not at all (a swapped column, say).
    mean = late_payment_risk(model, range(4)).mean(axis=0)
    assert (np.diff(mean) > 0.05).all(), mean
