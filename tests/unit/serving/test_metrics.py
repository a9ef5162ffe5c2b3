"""Score buckets: the edges, and one function shared by the model and the gateway."""

from __future__ import annotations

import pytest

from flywheel.rollout import gateway
from flywheel.rollout.analysis import Window
from flywheel.serving import metrics, model


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
