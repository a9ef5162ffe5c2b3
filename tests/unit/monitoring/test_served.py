"""A window's rows read from logged requests and from a summary's sample as columns: the same
rows, in the same order, with the same answers."""

from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pytest

from flywheel import logformat
from flywheel.monitoring.logs import Prediction
from flywheel.monitoring.served import Logged, Sampled, answers

FEATURES = ("income", "region")


def _requests(ties: bool = False) -> list[Prediction]:
    """Requests of one to three rows; one answer out of [0, 1], one NaN; with `ties`, the first
    ten two by two at the same time."""
    rng = random.Random(3)
    made = []
    for i in range(40):
        rows = rng.randint(1, 3)
        outputs = [(1 - (p := rng.random()), p) for _ in range(rows)]
        if i == 5:
            outputs[0] = (-0.2, 1.2)
        if i == 9:
            outputs[-1] = (math.nan, math.nan)
        made.append(
            Prediction(
                request_id=f"req-{i}",
                version="v1",
                time=1000.0 + (i // 2 if ties and i < 10 else i),
                latency_ms=2.0,
                features=FEATURES,
                inputs=tuple(
                    (round(rng.uniform(0, 100), 3), rng.choice(["north", "south"]))
                    for _ in range(rows)
                ),
                outputs=tuple(outputs),
            )
        )
    return made


def _as_table(predictions: list[Prediction], shuffled: bool = True) -> pa.Table:
    """The requests as the log's Parquet rows, shuffled as a merged sample may hold them."""
    entries = [
        {
            "request_id": p.request_id,
            "time": p.time,
            "latency_ms": p.latency_ms,
            "features": list(p.features),
            "inputs": [list(row) for row in p.inputs],
            "outputs": [list(row) for row in p.outputs],
        }
        for p in predictions
    ]
    table = logformat.prediction_table(entries, ["income"], ["region"], 2)
    if not shuffled:
        return table
    order = np.random.default_rng(7).permutation(table.num_rows)
    return table.take(pa.array(order))


def test_a_sample_as_columns_reads_the_rows_the_logged_requests_give_in_their_order() -> None:
    predictions = _requests()
    logged = Logged(predictions, "binary", 2)
    sampled = Sampled(_as_table(predictions), "binary", 2)

    assert sampled.rows == logged.rows == sum(len(p.outputs) for p in predictions)
    assert [n for _, n in sampled.requests] == [n for _, n in logged.requests]
    assert [k for k, _ in sampled.requests] == [
        f"{logformat.request_key(r):016x}" for r, _ in logged.requests
    ]
    np.testing.assert_array_equal(sampled.answers.outputs, logged.answers.outputs)
    np.testing.assert_array_equal(sampled.answers.usable, logged.answers.usable)
    assert sampled.answers.broken_requests == logged.answers.broken_requests == 2
    assert sampled.numbers("income") == logged.numbers("income")
    assert sampled.values("region") == logged.values("region")
    assert sampled.scorable(set(FEATURES)) == logged.scorable(set(FEATURES))
    some = sampled.scorable(set(FEATURES))[::3]
    assert sampled.frame(some).equals(logged.frame(some))
    assert sampled.frame()[list(FEATURES)].equals(logged.frame()[list(FEATURES)])
    np.testing.assert_array_equal(sampled.outputs_of(some), logged.outputs_of(some))


def test_requests_at_the_same_time_keep_the_order_the_sample_first_holds_them_in() -> None:
    predictions = _requests(ties=True)
    sampled = Sampled(_as_table(predictions, shuffled=False), "binary", 2)
    assert [k for k, _ in sampled.requests] == [
        f"{logformat.request_key(p.request_id):016x}" for p in predictions
    ]
    reversed_ = Sampled(_as_table(predictions[::-1], shuffled=False), "binary", 2)
    assert [k for k, _ in reversed_.requests][:2] == [k for k, _ in sampled.requests][:2][::-1]


def test_a_feature_the_sample_does_not_have_has_no_values_and_no_row_is_scorable() -> None:
    sampled = Sampled(_as_table(_requests()), "binary", 2)
    assert sampled.numbers("age") == [] and sampled.values("age") == []
    assert sampled.scorable({"income"}) == []


def test_a_sample_of_another_width_than_the_tasks_is_refused() -> None:
    with pytest.raises(ValueError, match="2 outputs, the task 3"):
        Sampled(_as_table(_requests()), "multiclass", 3)


def test_an_answer_of_the_wrong_width_is_nan_and_breaks_its_request() -> None:
    short = Prediction("r", "v1", 0.0, None, FEATURES, ((1.0, "north"),) * 2, ((0.4,), (0.3, 0.7)))
    found = answers([short], "binary", 2)
    assert np.isnan(found.outputs[0]).all() and found.outputs[1].tolist() == [0.3, 0.7]
    assert found.usable.tolist() == [False, True] and found.broken_requests == 1


def test_a_regressions_answers_are_usable_outside_zero_to_one() -> None:
    value = Prediction("r", "v1", 0.0, None, FEATURES, ((1.0, "north"),), ((42.5,),))
    found = answers([value], "regression", 1)
    assert found.usable.tolist() == [True] and found.broken_requests == 0


def test_rows_are_ordered_and_named_by_request_key_alike_from_requests_and_a_sample() -> None:
    # given the same requests read both ways
    predictions = _requests()
    logged = Logged(predictions, "binary", 2)
    sampled = Sampled(_as_table(predictions), "binary", 2)
    rows = logged.scorable(set(FEATURES))
    # then both order the rows by request key, then place in the request, and name them alike
    ordered = logged.by_key(rows)
    assert ordered == sampled.by_key(rows) and sorted(ordered) == rows
    named = logged.identities(ordered)
    assert named == sampled.identities(ordered)
    assert [(key, place) for key, place, _ in named] == sorted((k, p) for k, p, _ in named)
    keys = {logformat.request_key(p.request_id) for p in predictions}
    assert {key for key, _, _ in named} <= keys


def test_a_duplicate_request_id_with_other_inputs_is_another_row() -> None:
    # given two requests of one id: the same answer, one input changed
    first = Prediction("dup", "v1", 0.0, None, FEATURES, ((1.0, "north"),), ((0.4, 0.6),))
    second = Prediction("dup", "v1", 1.0, None, FEATURES, ((2.0, "north"),), ((0.4, 0.6),))
    again = Prediction("dup", "v1", 2.0, None, FEATURES, ((1.0, "north"),), ((0.4, 0.6),))
    named = Logged([first, second, again], "binary", 2).identities([0, 1, 2])
    # then they share key and place, not name, unless their inputs are the same
    assert named[0][:2] == named[1][:2] and named[0] != named[1] and named[0] == named[2]
