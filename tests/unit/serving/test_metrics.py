"""Score buckets: the edges, and one function shared by the model and the gateway; the
worker totals stored for seldon-core, as seldon-core would add them."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flywheel.rollout import gateway
from flywheel.rollout.analysis import Window
from flywheel.rollout.local import DeployRefused, serving_python
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
    # (the model's counters are metrics.request_metrics of metrics.answer_buckets)
    assert model.request_metrics is metrics.request_metrics
    assert model.answer_buckets is metrics.answer_buckets
    assert gateway.answer_buckets is metrics.answer_buckets
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


# Run in the serving virtualenv, the only one with seldon-core: the same responses'
# metrics stored by seldon-core's own update (one after another) and by the patched one
# (from threads), with each stage's exposition, sorted, and stored entries compared.
WRITES_ONCE = r"""
import json, sys, threading
from seldon_core import metrics as seldon
from flywheel.serving.metrics import write_metrics_once

original_update, original_clear = seldon.SeldonMetrics.update, seldon.SeldonMetrics.clear
write_metrics_once()
assert seldon.SeldonMetrics.update is not original_update
worker = {"id": 1}
patched = seldon.SeldonMetrics(worker_id_func=lambda: worker["id"])
reference = seldon.SeldonMetrics(worker_id_func=lambda: worker["id"])

def response(thread, i):
    # exact binary fractions of a second, so sums agree whatever the threads' order
    ms = (1.953125, 7.8125, 31.25, 125.0, 500.0, 2000.0, 64000.0)[(thread + i) % 7]
    return [
        {"type": "COUNTER", "key": "rows", "value": 1 + i % 3},
        {"type": "COUNTER", "key": "rows", "value": 0.5, "tags": {"bucket": str(i % 2)}},
        {"type": "GAUGE", "key": "backlog", "value": i, "tags": {"thread": str(thread)}},
        {"type": "TIMER", "key": "ms", "value": ms},
        {"type": "TIMER", "key": "ms", "value": ms / 2, "tags": {"bucket": str(i % 2)}},
    ]

def serve(threads, per_thread):
    def work(thread):
        for i in range(per_thread):
            patched.update(response(thread, i), "predict")
    running = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    for thread in range(threads):
        for i in range(per_thread):
            original_update(reference, response(thread, i), "predict")

stages = {}
def stage(name):
    stages[name] = {
        "patched": sorted(patched.generate_metrics()[0].splitlines()),
        "reference": sorted(reference.generate_metrics()[0].splitlines()),
        "same_entries": dict(patched.data) == dict(reference.data),
        "rows": {
            w: sum(e["value"] for (kind, key, tags), e in entries.items()
                   if (kind, key, tags) == ("COUNTER", "rows", "method-predict"))
            for w, entries in dict(patched.data).items()
        },
    }

serve(threads=8, per_thread=40)
stage("threads")
# another worker (a forked one has a new pid) already holding totals of its own
for store in (patched, reference):
    store.data[2] = {("COUNTER", "rows", "method-predict"): {"value": 1000, "tags": {"method": "predict"}}}
worker["id"] = 2
serve(threads=2, per_thread=5)
stage("worker 2")
worker["id"] = 1
serve(threads=2, per_thread=5)
stage("worker 1 again")
patched.clear()
original_clear(reference)
stage("cleared")
serve(threads=2, per_thread=5)
stage("after clear")
# a worker exiting after its group's manager process was stopped
patched._manager.shutdown()
patched.clear()
print(json.dumps(stages))
"""


def test_the_patched_store_keeps_the_totals_seldon_cores_update_keeps() -> None:
    # given seldon-core's SeldonMetrics (in the serving virtualenv), patched to write once
    try:
        python = serving_python()
    except DeployRefused as error:
        # Every make tier that runs this test builds .venv-serving: in CI its absence is a fault.
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(str(error))
    source = Path(metrics.__file__).resolve().parents[2]
    # when threads add responses' counters, gauges and timers to it, another worker
    # id adds to its own entry, and a clear starts the worker over (and, once the metrics'
    # manager is gone, as when a server's whole group is stopped, does nothing, silently)
    result = subprocess.run(
        [str(python), "-c", WRITES_ONCE],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(source)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stages = json.loads(result.stdout.strip().splitlines()[-1])
    # then at every stage it exposes and stores what seldon-core's own update would
    for name, stage in stages.items():
        assert stage["patched"] == stage["reference"], name
        assert stage["same_entries"], name
    # rows: 8 threads of 40 responses of 1 + i % 3 (8 x 79), then 2 threads of 5 (2 x 9)
    assert stages["threads"]["rows"] == {"1": 632}
    # worker 2 went on from its own 1,000, not from worker 1's totals
    assert stages["worker 2"]["rows"] == {"1": 632, "2": 1000 + 18}
    assert stages["worker 1 again"]["rows"] == {"1": 632 + 18, "2": 1018}
    # the clear drops worker 1's entry, and counting starts again from zero
    assert stages["cleared"]["rows"] == {"2": 1018}
    assert stages["after clear"]["rows"] == {"1": 18, "2": 1018}
