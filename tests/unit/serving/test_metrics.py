"""Score buckets: the edges, and one function shared by the model and the gateway; the
worker totals stored for seldon-core, as seldon-core would add them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from flywheel.rollout import gateway
from flywheel.rollout.analysis import Window
from flywheel.serving import metrics, model
from flywheel.serving.metrics import add_metrics, histogram_bin


@pytest.mark.parametrize(
    ("score", "bucket"),
    [
        (0.0, 0),
        (0.05, 0),
        (0.0999999, 0),
        (0.1, 1),
        (0.5, 5),  # the decision threshold opens the upper half
        (0.999, 9),
        (1.0, 9),  # the top edge belongs to the last bucket, not an eleventh
        (-0.01, 0),
        (1.5, 9),
    ],
)
def test_score_buckets_at_the_edges(score: float, bucket: int) -> None:
    assert metrics.score_bucket(score) == bucket


def test_every_bucket_is_reachable_and_there_are_as_many_as_the_analysis_reads() -> None:
    reached = {metrics.score_bucket(i / 100) for i in range(101)}
    assert reached == set(range(metrics.SCORE_BUCKETS)) == set(range(len(Window().scores)))


def test_the_model_and_the_gateway_bucket_with_the_same_function() -> None:
    # The model's Prometheus counters (Kubernetes) and the gateway's windows (local)
    # must agree, or the two drivers would judge the same canary differently.
    assert model.score_bucket is metrics.score_bucket
    assert gateway.score_bucket is metrics.score_bucket
    assert gateway.SCORE_BUCKETS == metrics.SCORE_BUCKETS


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf")])
def test_a_score_that_is_not_finite_belongs_to_no_bucket(score: float) -> None:
    # The gateway skips a response it cannot bucket (ValueError); the model skips the row.
    with pytest.raises(ValueError, match="must be finite"):
        metrics.score_bucket(score)


# seldon-core 1.17.1's timer bins (seldon_core.metrics.BINS), in seconds
BINS = [0.0, *np.logspace(-3, np.log10(30), 50).tolist(), math.inf]


@pytest.mark.parametrize(
    "seconds", [0.0, 0.0005, BINS[1], BINS[7], np.nextafter(BINS[7], 0), 29.99, 30.0, 1e9, math.inf]
)
def test_a_timer_value_falls_in_numpys_histogram_bin(seconds: float) -> None:
    # given a value on, below or between seldon-core's bin edges
    expected = np.histogram([seconds], BINS)[0]
    # when it is binned as a stored timer is, then it is the bin numpy counts it in
    at = histogram_bin(float(seconds), BINS)
    assert at is not None and expected[at] == 1 and expected.sum() == 1


def test_values_numpy_counts_in_no_bin_are_counted_in_none() -> None:
    assert histogram_bin(-1.0, BINS) is None and histogram_bin(math.nan, BINS) is None


def test_metrics_add_up_as_seldon_core_adds_them() -> None:
    # given a worker's totals and two responses' metrics
    worker: dict[Any, Any] = {}
    key = "_".join  # any tags key: the caller passes seldon-core's

    def response(rows: int, ms: float, backlog: int) -> list[dict[str, Any]]:
        return [
            {"type": "COUNTER", "key": "rows", "value": rows},
            {"type": "TIMER", "key": "ms", "value": ms},
            {"type": "GAUGE", "key": "backlog", "value": backlog},
        ]

    # when both are added
    add_metrics(worker, response(3, 2.0, 5), "predict", BINS, lambda t: key(sorted(t)))
    add_metrics(worker, response(1, 2.0, 0), "predict", BINS, lambda t: key(sorted(t)))
    # then counters add, gauges keep the last value and the timer counts both in one bin
    values = {name[1]: entry["value"] for name, entry in worker.items()}
    assert values["rows"] == 4 and values["backlog"] == 0
    counts, total = values["ms"]
    assert total == 0.004 and counts == np.histogram([0.002, 0.002], BINS)[0].tolist()
    assert all(entry["tags"] == {"method": "predict"} for entry in worker.values())
