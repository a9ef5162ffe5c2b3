"""The canary's analysis per task, on windows of real answers: wine's and diabetes' models
trained through flywheel.training.train, served by the real serving class, their answers
counted as the gateway counts them and their labels judged as the model judges them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flywheel.config import RolloutSettings
from flywheel.registry import Registry
from flywheel.rollout.analysis import (
    LABEL_CHECKS,
    LATENCY_BOUNDS_MS,
    Window,
    analyse,
    paired_histograms,
)
from flywheel.rollout.gateway import Labels, Side, feedback_counts
from flywheel.serving.metrics import (
    ABS_ERROR,
    ERRORS,
    FEEDBACK,
    SQUARED_ERROR,
    answer_buckets,
    error_bucket,
)
from flywheel.serving.model import FlywheelModel
from flywheel.simulation.canary import prediction_edges
from flywheel.storage import LocalStore
from harness.problems import Dataset, dataset_frame, register

FAST = 5  # a latency bucket: a few milliseconds
POLICY = RolloutSettings(min_requests=200, min_requests_to_fail=20, step_timeout_seconds=60)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per dataset: v1 in production, v2 a healthy candidate, v3 one that learned shuffled
    labels."""
    root = tmp_path_factory.mktemp("canary-tasks")
    for name in ("wine", "diabetes"):
        register(name, root / name)
        register(name, root / name, 1)
        register(name, root / name, 2, shuffled=True)
    return {name: root / name for name in ("wine", "diabetes")}


def _window(
    store: Path, name: Dataset, version: str, requests: int, seed: int, edges: Any
) -> Window:
    """`requests` one-row requests drawn from the dataset, answered by `version` and counted
    as the gateway counts them, every answer labelled through the model's own feedback."""
    model = FlywheelModel(
        model_name=name, model_version=version, store_uri=str(store), log_predictions="false"
    )
    model.load()
    frame = dataset_frame(name)
    columns = [c for c in frame.columns if c not in ("label", "event_time")]
    records = json.loads(frame[columns].to_json(orient="records"))
    labels = frame["label"].tolist()
    side = Side(version=version, url="")
    right = wrong = 0
    errors: list[float] = []
    for i in np.random.default_rng(seed).integers(0, len(records), size=requests):
        request = {"jsonData": [records[i]]}
        response = model.score(request)
        side.requests += 1
        side.latency[FAST] += 1  # the latency check is not what these tests are about
        side.count(answer_buckets(response["data"]["ndarray"], response["data"]["names"], edges))
        judged = model.judge_feedback(request, response, {"data": {"ndarray": [labels[i]]}})
        right, wrong = right + judged.right, wrong + judged.wrong
        errors += list(judged.errors or ())
    # what the model's label counters added over the window, as the gateway reads them
    labelled = Labels(
        right=right,
        wrong=wrong,
        errors=dict(Counter(error_bucket(e) for e in errors)),
        abs_error=sum(abs(e) for e in errors),
        squared_error=sum(e * e for e in errors),
    )
    side.labels_at_start = Labels()
    return side.window(labelled)


def _windows(
    stores: dict[str, Path], name: Dataset, canary: str, requests: int = 300
) -> tuple[Window, Window]:
    store = stores[name]
    edges = prediction_edges(Registry(LocalStore(store), name), "v1")
    return (
        # stable's p99 is bounded, as the latency check needs, on about 2000 requests
        _window(store, name, "v1", 2000, seed=1, edges=edges),
        _window(store, name, canary, requests, seed=2, edges=edges),
    )


def test_a_healthy_multiclass_candidate_passes_on_every_class_and_its_accuracy(
    stores: dict[str, Path],
) -> None:
    stable, canary = _windows(stores, "wine", "v2")
    # the windows hold every class's probability histogram
    assert sorted(canary.class_scores) == ["class_0", "class_1", "class_2"]
    assert all(sum(h) == 300 for h in canary.class_scores.values()) and canary.scored == 300
    verdict = analyse(stable, canary, POLICY, 30, accuracy="required", task="multiclass")
    assert verdict.action == "advance", verdict.reason
    checks = {c.name: c for c in verdict.checks}
    assert checks["accuracy"].status == "pass"
    assert (
        "class probability distributions (largest: class_" in checks["prediction divergence"].detail
    )


def test_a_multiclass_candidate_that_learned_shuffled_labels_is_rolled_back(
    stores: dict[str, Path],
) -> None:
    stable, canary = _windows(stores, "wine", "v3")
    verdict = analyse(stable, canary, POLICY, 30, accuracy="required", task="multiclass")
    assert verdict.action == "rollback"
    failed = {c.name for c in verdict.checks if c.status == "fail"}
    assert "accuracy" in failed


def test_a_healthy_regression_candidate_passes_on_its_predictions_and_error(
    stores: dict[str, Path],
) -> None:
    # (a mean's confidence sequence narrows more slowly than a proportion's: a step passes
    # on a few hundred labels more than accuracy takes)
    stable, canary = _windows(stores, "diabetes", "v2", 1000)
    # predictions are counted in stable's label bins; labels in the error histogram
    contract_bins = prediction_edges(Registry(LocalStore(stores["diabetes"]), "diabetes"), "v1")
    assert contract_bins is not None and len(canary.scores) <= len(contract_bins) + 1
    assert canary.labelled == sum(canary.label_errors) == 1000 and canary.correct == 0
    assert canary.mean_absolute_error is not None and 10 < canary.mean_absolute_error < 60
    verdict = analyse(stable, canary, POLICY, 30, accuracy="required", task="regression")
    assert verdict.action == "advance", verdict.reason
    checks = {c.name: c for c in verdict.checks}
    assert LABEL_CHECKS["regression"] == "mean absolute error"
    assert checks["mean absolute error"].status == "pass"
    assert checks["mean absolute error"].threshold == pytest.approx(
        stable.mean_absolute_error * 1.1  # type: ignore[operator]
    )
    assert "prediction distributions on the label's bins" in checks["prediction divergence"].detail


def test_a_regression_candidate_that_learned_shuffled_labels_is_rolled_back(
    stores: dict[str, Path],
) -> None:
    stable, canary = _windows(stores, "diabetes", "v3")
    assert canary.mean_absolute_error > 1.3 * stable.mean_absolute_error  # type: ignore[operator]
    verdict = analyse(stable, canary, POLICY, 30, accuracy="required", task="regression")
    assert verdict.action == "rollback"
    failed = {c.name for c in verdict.checks if c.status == "fail"}
    assert "mean absolute error" in failed, verdict.reason


def test_a_required_regression_step_without_labels_fails_closed_at_its_timeout() -> None:
    # given windows with answers but no labels
    fast = tuple(2000 if i == FAST else 0 for i in range(len(LATENCY_BOUNDS_MS)))
    answers = Window(requests=2000, scores=(200,) * 10, latency_counts=fast)
    waiting = analyse(answers, answers, POLICY, 30, accuracy="required", task="regression")
    assert waiting.action == "wait"
    assert waiting.reason.startswith("mean absolute error is required at this step")
    timed_out = analyse(answers, answers, POLICY, 61, accuracy="required", task="regression")
    assert timed_out.action == "rollback"
    # and with too few labels to judge, an optional step says it was not checked
    few = answers.model_copy(
        update={"labelled": 5, "abs_error_sum": 50.0, "squared_error_sum": 600.0}
    )
    optional = analyse(few, few, POLICY, 30, accuracy="optional", task="regression")
    assert optional.action == "advance"
    assert "but mean absolute error, not checked (optional at this step)" in optional.reason


def test_a_regression_breach_counts_only_on_enough_labels_each() -> None:
    # given a canary whose errors are ten times stable's on 10 labels each
    stable = Window(requests=400, labelled=10, abs_error_sum=100.0, squared_error_sum=1100.0)
    canary = stable.model_copy(update={"abs_error_sum": 1000.0, "squared_error_sum": 110_000.0})
    # then it is not yet a breach (fewer than min_requests_to_fail labels each) ...
    checks = {c.name: c for c in analyse(stable, canary, POLICY, 30, task="regression").checks}
    assert checks["mean absolute error"].status == "pending"
    # ... and is once each side has them
    more = {"labelled": 40, "abs_error_sum": 400.0, "squared_error_sum": 4400.0}
    stable = stable.model_copy(update=more)
    canary = canary.model_copy(
        update={"labelled": 40, "abs_error_sum": 4000.0, "squared_error_sum": 440_000.0}
    )
    checks = {c.name: c for c in analyse(stable, canary, POLICY, 30, task="regression").checks}
    assert checks["mean absolute error"].status == "fail"


def test_a_class_one_side_never_answers_is_a_probability_of_zero() -> None:
    # given a canary with a class stable's model does not know
    stable = Window(class_scores={"a": (0, 0, 0, 0, 0, 0, 0, 0, 0, 10), "b": (10,) + (0,) * 9})
    canary = Window(class_scores={**stable.class_scores, "c": (0,) * 9 + (10,)})
    pairs = paired_histograms(stable, canary)
    assert pairs["c"] == ((10,) + (0,) * 9, (0,) * 9 + (10,))


def test_the_gateway_reads_a_regressions_error_counters_as_the_model_exports_them() -> None:
    text = "\n".join(
        [
            f'{FEEDBACK}{{correct="true",method="feedback",worker_id="1"}} 3.0',
            f'{ERRORS}{{bucket="14",method="feedback",worker_id="1"}} 2.0',
            f'{ERRORS}{{bucket="14",method="feedback",worker_id="2"}} 1.0',
            f'{ERRORS}{{bucket="16",method="feedback",worker_id="1"}} 4.0',
            f'{ABS_ERROR}{{method="feedback",worker_id="1"}} 250.5',
            f'{SQUARED_ERROR}{{method="feedback",worker_id="1"}} 9000.25',
        ]
    )
    labels = feedback_counts(text)
    assert labels == Labels(3.0, 0.0, {14: 3.0, 16: 4.0}, 250.5, 9000.25)
    # and a window counts what was added since it began, a restarted model from 0
    since = labels.since(Labels(1.0, 0.0, {14: 1.0}, 50.5, 1000.25))
    assert since == Labels(2.0, 0.0, {14: 2.0, 16: 4.0}, 200.0, 8000.0)
    assert Labels(errors={14: 1.0}).since(Labels(errors={14: 5.0})).errors == {14: 1.0}
