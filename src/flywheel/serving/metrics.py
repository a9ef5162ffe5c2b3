"""The custom metrics every served model exports, shared with the rollout analysis that reads them.

seldon-core turns each into a Prometheus series (counters get `_total`-less keys
as given here); the gateway computes the same answer buckets from responses.

What a model answered, per row (`SCORES`, `PREDICTIONS`):
- a binary classifier: P(positive class) in `SCORE_BUCKETS` equal buckets, `bucket` label;
- a multiclass classifier: every class's probability in the same buckets, `class` and
  `bucket` labels (a row counts once in each class's histogram);
- a regression: the predicted value in the bins of the contract's label profile
  (its inner quantile edges: `(-inf, e0], (e0, e1], ..., (en, inf)`), `bucket` label.

What the labels of a feedback said of the answers (`FEEDBACK`, `ERRORS`, `ABS_ERROR`,
`SQUARED_ERROR`): right and wrong for a classifier (its most probable class; for binary,
P >= 0.5); for a regression, each labelled row's absolute error in the fixed
`ERROR_BOUNDS`, and the sums of absolute and squared errors (as a Prometheus histogram's
`_sum`), from which the canary reads the mean absolute error.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

# Seldon's executor times every request it serves in this histogram (the local
# gateway exports the same series), in client_golang's default buckets (seconds).
REQUESTS = "seldon_api_executor_server_requests_seconds"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# The score distribution is a histogram of each probability in this many equal buckets.
SCORE_BUCKETS = 10
SCORES = "flywheel_scores_total"
PREDICTIONS = "flywheel_predictions_total"
FEEDBACK = "flywheel_feedback_total"
ERRORS = "flywheel_feedback_errors_total"
ABS_ERROR = "flywheel_feedback_abs_error_total"
SQUARED_ERROR = "flywheel_feedback_squared_error_total"
ROWS = "flywheel_rows_total"
PREDICT_MS = "flywheel_predict_ms"
# Upper bounds of the absolute-error buckets (a last one above 1e6 is unbounded): 1, 2, 5
# per decade, the same for every model and version, so a dashboard reads any of them.
ERROR_BOUNDS: tuple[float, ...] = (
    *(float(f"{m}e{e}") for e in range(-3, 6) for m in (1, 2, 5)),
    1e6,
)
# The key of an answer histogram that is not a class's: binary P(positive), regression bins.
WHOLE = ""


def score_bucket(score: float) -> int:
    """The histogram bucket of one probability; a ValueError for NaN or infinity, which
    belong to no bucket (monitoring counts them from the prediction log)."""
    if not math.isfinite(score):
        raise ValueError(f"a score must be finite, not {score}")
    return min(max(int(score * SCORE_BUCKETS), 0), SCORE_BUCKETS - 1)


def prediction_bucket(value: float, edges: Sequence[float]) -> int:
    """The bin of one predicted value among a label profile's inner edges, as
    `drift.bin_fractions` bins it: (-inf, e0] is 0, (en, inf) is len(edges)."""
    if not math.isfinite(value):
        raise ValueError(f"a prediction must be finite, not {value}")
    return bisect.bisect_left(edges, value)


def error_bucket(error: float) -> int:
    """The bucket of one absolute error: the first of `ERROR_BOUNDS` at or above it, or
    len(ERROR_BOUNDS) beyond the last."""
    if not math.isfinite(error):
        raise ValueError(f"an error must be finite, not {error}")
    return bisect.bisect_left(ERROR_BOUNDS, abs(error))


def answer_buckets(
    rows: Sequence[Sequence[float]], classes: Sequence[str], edges: Sequence[float] | None
) -> Counter[tuple[str, int]]:
    """How the rows of one answer fall into the answer histograms, by (histogram, bucket):
    one value a row is a regression's prediction (binned on `edges`; not counted without
    them), two a binary's [P(0), P(1)] (P(1) counted, under `WHOLE`), more a multiclass's
    probabilities (each under its name in `classes`). A value that is not finite is
    answered and logged, not counted."""
    counts: Counter[tuple[str, int]] = Counter()
    for row in rows:
        if len(row) == 1:
            if edges is not None and math.isfinite(row[0]):
                counts[WHOLE, prediction_bucket(row[0], edges)] += 1
        elif len(row) == 2:
            if math.isfinite(row[1]):
                counts[WHOLE, score_bucket(row[1])] += 1
        else:
            for name, p in zip(classes, row, strict=True):
                if math.isfinite(p):
                    counts[name, score_bucket(p)] += 1
    return counts


def request_metrics(
    buckets: Mapping[tuple[str, int], int],
    rows: int,
    elapsed_ms: float,
    *,
    regression: bool = False,
) -> list[dict[str, Any]]:
    """One answer's custom metrics: its rows, its scoring time, and its answers by bucket
    (`answer_buckets`): SCORES of a classifier, PREDICTIONS of a regression."""
    metrics: list[dict[str, Any]] = [
        {"type": "COUNTER", "key": ROWS, "value": rows},
        {"type": "TIMER", "key": PREDICT_MS, "value": elapsed_ms},
    ]
    key = PREDICTIONS if regression else SCORES
    for (name, bucket), count in sorted(buckets.items()):
        tags = {"class": name, "bucket": str(bucket)} if name else {"bucket": str(bucket)}
        metrics.append({"type": "COUNTER", "key": key, "value": count, "tags": tags})
    return metrics


def feedback_metrics(right: int, wrong: int) -> list[dict[str, Any]]:
    """One feedback's custom metrics of a classifier: its labelled rows answered right and wrong."""
    return [
        {"type": "COUNTER", "key": FEEDBACK, "value": count, "tags": {"correct": correct}}
        for correct, count in (("true", right), ("false", wrong))
        # proto3 drops zero values, and seldon-core then fails on a metric without one
        if count
    ]


def error_metrics(errors: Sequence[float]) -> list[dict[str, Any]]:
    """One feedback's custom metrics of a regression: its labelled rows by absolute error
    (ERRORS), and the sums of their absolute and squared errors."""
    buckets = Counter(error_bucket(e) for e in errors)
    metrics: list[dict[str, Any]] = [
        {"type": "COUNTER", "key": ERRORS, "value": count, "tags": {"bucket": str(bucket)}}
        for bucket, count in sorted(buckets.items())
    ]
    sums = ((ABS_ERROR, sum(abs(e) for e in errors)), (SQUARED_ERROR, sum(e * e for e in errors)))
    # a zero sum is left out, as zero counts are (see feedback_metrics)
    metrics += [{"type": "COUNTER", "key": k, "value": float(v)} for k, v in sums if v]
    return metrics


def add_metrics(
    worker: dict[Any, Any],
    metrics: list[dict[str, Any]],
    method: str,
    bins: Sequence[float],
    key: Callable[[dict[str, str]], str],
) -> None:
    """Add one response's custom metrics to a worker's totals, as seldon-core's
    `SeldonMetrics.update` does: counters add, gauges replace, timers (milliseconds)
    count in the histogram `bins` (seconds) and add to its sum."""
    for metric in metrics:
        kind = metric.get("type", "COUNTER")
        tags = metric.get("tags", {})
        tags["method"] = method
        name = (kind, metric["key"], key(tags))
        if kind == "COUNTER":
            value = worker.get(name, {}).get("value", 0)
            worker[name] = {"value": value + metric["value"], "tags": tags}
        elif kind == "TIMER":
            counts, total = worker.get(name, {}).get("value", ([0.0] * (len(bins) - 1), 0))
            seconds = metric["value"] / 1000
            counts = list(counts)
            at = histogram_bin(seconds, bins)
            if at is not None:
                counts[at] += 1.0
            worker[name] = {"value": (counts, total + seconds), "tags": tags}
        elif kind == "GAUGE":
            worker[name] = {"value": metric["value"], "tags": tags}
        else:
            log.error("Unknown metrics type: %s", kind)


def histogram_bin(value: float, bins: Sequence[float]) -> int | None:
    """The bin `numpy.histogram([value], bins)` counts `value` in (each bin holds its left
    edge, the last also its right), or None when it counts it in none."""
    if value == bins[-1]:
        return len(bins) - 2
    at = bisect.bisect_right(bins, value) - 1
    return at if 0 <= at < len(bins) - 1 else None


def write_metrics_once() -> None:
    """Make seldon-core store a response's custom metrics in one round trip, not six.

    seldon-core 1.17.1 keeps each worker's metrics in a multiprocessing Manager's dict
    and, for every response, takes the manager's lock, reads the worker's whole entry,
    releases the lock, takes it again, writes the entry back and releases it: six
    round trips to another process, each pickling the entry (with a timer, 50 numpy
    scalars), and `numpy.histogram` on one value. Only this worker writes its entry (it
    is keyed by pid), so it keeps its own copy, adds to it as `update` would, and
    writes it in one assignment, which the manager applies at once; a scrape reads it
    as before. Patched in the serving process only, when seldon-core serves the model.
    """
    try:
        from seldon_core import metrics as seldon
    except ImportError:
        return
    store = seldon.SeldonMetrics
    if getattr(store.update, "writes_once", False):
        return
    bins = [float(b) for b in seldon.BINS]
    clear = store.clear
    lock = threading.Lock()

    def update(self: Any, custom_metrics: list[dict[str, Any]], method: str) -> None:
        if not custom_metrics:
            return  # nothing to add: the stored entry is already this worker's totals
        worker_id = self.worker_id_func()
        with lock:  # request threads: each write carries every addition before it
            held = self.__dict__.get("_flywheel_worker")
            if held is None or held[0] != worker_id:  # first use in this worker
                with self._lock:
                    held = (worker_id, dict(self.data.get(worker_id, {})))
                self._flywheel_worker = held
            add_metrics(held[1], custom_metrics, method, bins, store._generate_tags_key)
            self.data[worker_id] = held[1]

    def cleared(self: Any) -> None:
        with lock:
            self.__dict__.pop("_flywheel_worker", None)
        try:
            clear(self)
        except (OSError, EOFError):
            # A worker exiting as its whole group is stopped: the metrics' manager process
            # went first, and the entries this drops with it.
            log.debug("the metrics manager is gone: nothing left to clear")

    update.writes_once = True  # type: ignore[attr-defined]
    store.update = update
    store.clear = cleared


def keep_zero_metrics() -> None:
    """Make seldon-core keep custom metrics whose value is 0 in gRPC responses.

    seldon-core 1.17.1 reads a gRPC response's metrics by converting its `meta` to
    JSON, and proto3 JSON leaves out a field at its default: a metric of value 0
    arrives without "value" and seldon-core fails on it (KeyError). So a gauge
    such as the log's backlog could never go back to 0 over gRPC. The conversion
    is replaced, in seldon_methods only, by one that keeps default values.
    """
    try:
        from google.protobuf import json_format  # type: ignore[import-untyped]
        from seldon_core import seldon_methods
    except ImportError:
        return
    if getattr(seldon_methods.seldon_message_to_json, "keeps_zeros", False):
        return

    def with_zeros(message: Any) -> dict[str, Any]:
        converted: dict[str, Any] = json_format.MessageToDict(
            message, including_default_value_fields=True
        )
        return converted

    with_zeros.keeps_zeros = True  # type: ignore[attr-defined]
    seldon_methods.seldon_message_to_json = with_zeros
