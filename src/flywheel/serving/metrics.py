"""The custom metrics every served model exports, shared with the rollout analysis that reads them.

seldon-core turns each into a Prometheus series (counters get `_total`-less keys
as given here); the gateway computes the same score buckets from responses.
"""

from __future__ import annotations

import math

# Seldon's executor times every request it serves in this histogram (the local
# gateway exports the same series).
REQUESTS = "seldon_api_executor_server_requests_seconds"

# The score distribution is a histogram of P(positive) in this many equal buckets.
SCORE_BUCKETS = 10
SCORES = "flywheel_scores_total"
FEEDBACK = "flywheel_feedback_total"
ROWS = "flywheel_rows_total"
PREDICT_MS = "flywheel_predict_ms"


def score_bucket(score: float) -> int:
    """The histogram bucket of one positive-class probability; a ValueError for NaN or
    infinity, which belong to no bucket (monitoring counts them from the prediction log)."""
    if not math.isfinite(score):
        raise ValueError(f"a score must be finite, not {score}")
    return min(max(int(score * SCORE_BUCKETS), 0), SCORE_BUCKETS - 1)
