"""Canary analysis on recorded measurements: early failure, patience, each check, and the
false-rollback budget that every check at every step shares."""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flywheel.config import RolloutChecks, RolloutSettings
from flywheel.registry import Registry
from flywheel.rollout import analysis
from flywheel.rollout.analysis import (
    CHECKS,
    LABEL_CHECKS,
    LATENCY_BOUNDS_MS,
    Window,
    analyse,
    check_level,
    js_distance,
    js_lower_bound,
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

POLICY = RolloutSettings(min_requests=200, min_requests_to_fail=20, step_timeout_seconds=60)


def window(
    requests: int,
    *,
    errors: int = 0,
    latency_ms: float = 10.0,
    scores: tuple[int, ...] | None = None,
    labelled: int = 0,
    correct: int = 0,
) -> Window:
    latency = [0] * len(LATENCY_BOUNDS_MS)
    latency[bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)] = requests
    spread = scores or tuple(
        round(requests * share)
        for share in (0.3, 0.2, 0.15, 0.1, 0.08, 0.06, 0.05, 0.03, 0.02, 0.01)
    )
    return Window(
        requests=requests,
        errors=errors,
        latency_counts=tuple(latency),
        scores=spread,
        labelled=labelled,
        correct=correct,
    )


def test_a_healthy_canary_waits_for_enough_traffic_then_advances() -> None:
    early = analyse(window(900), window(50), POLICY, 5)
    assert early.action == "wait" and early.reason == "50/200 canary requests so far"
    later = analyse(window(2000), window(220), POLICY, 20, accuracy="optional")
    assert later.action == "advance"
    assert {c.name: c.status for c in later.checks} == {
        "error rate": "pass",
        "latency p99": "pass",
        "prediction divergence": "pass",
        "accuracy": "skipped",
    }


def test_an_optional_step_without_labels_passes_and_says_accuracy_was_not_checked() -> None:
    # given a healthy canary and not one label on either side
    verdict = analyse(window(2000), window(220), POLICY, 20, accuracy="optional")
    # then the step passes, and the verdict (which the decision record keeps) says how
    assert verdict.action == "advance"
    assert verdict.reason.startswith(
        "every check passed but accuracy, not checked (optional at this step): "
        "0 canary and 0 stable labels so far; 100 each are needed"
    )
    (accuracy,) = [c for c in verdict.checks if c.name == "accuracy"]
    assert accuracy.status == "skipped" and accuracy.detail.startswith("not checked")


def test_accuracy_off_by_policy_is_never_judged_and_every_verdict_says_so() -> None:
    # given labels that show the canary far worse, under `rollout.accuracy: off`
    worse = window(220, labelled=200, correct=60)
    verdict = analyse(window(2000, labelled=2000, correct=1600), worse, POLICY, 20, "off")
    # then the step passes on its other checks, and says accuracy was off by policy
    assert verdict.action == "advance", verdict.reason
    assert (
        verdict.reason
        == "every check passed; accuracy not checked: off by policy (rollout.accuracy: off)"
    )
    (accuracy,) = [c for c in verdict.checks if c.name == "accuracy"]
    assert accuracy.status == "skipped"
    # while the same labels with accuracy judged roll the canary back
    assert (
        analyse(window(2000, labelled=2000, correct=1600), worse, POLICY, 20).action == "rollback"
    )


def test_a_required_step_waits_for_labels_then_judges_them() -> None:
    stable = window(2000, labelled=600, correct=480)  # 80%
    # given a healthy canary with too few labels yet
    few = analyse(stable, window(300, labelled=40, correct=33), POLICY, 20, accuracy="required")
    # then the step waits for them, and says so
    assert few.action == "wait"
    assert few.reason.startswith("accuracy is required at this step: canary 82.50% on 40 labels")
    assert few.reason.endswith("100 each are needed")
    # when enough of them have arrived and agree with stable, it passes
    enough = analyse(
        stable, window(400, labelled=300, correct=245), POLICY, 30, accuracy="required"
    )
    assert enough.action == "advance" and enough.reason == "every check passed"
    # and when they show a canary well below the floor, it rolls back
    worse = analyse(stable, window(400, labelled=200, correct=110), POLICY, 30, accuracy="required")
    assert worse.action == "rollback"
    assert worse.reason.startswith("accuracy: canary 55.00% on 200 labels, stable 80.00% on 600")
    assert "shown a breach" in worse.reason


def test_a_required_step_without_labels_rolls_back_at_its_timeout() -> None:
    verdict = analyse(window(9000), window(900), POLICY, 61, accuracy="required")
    assert verdict.action == "rollback"
    assert verdict.reason == (
        "accuracy is required at this step and was not checked in 61s: "
        "0 canary and 0 stable labels so far; 100 each are needed"
    )


def test_errors_roll_back_early_on_little_traffic() -> None:
    verdict = analyse(window(300), window(25, errors=6), POLICY, 3)
    assert verdict.action == "rollback"
    assert verdict.reason.startswith("error rate: canary 6/25 failed (24.00%)")


def test_a_few_errors_below_the_evidence_bar_do_not_roll_back() -> None:
    assert analyse(window(300), window(10, errors=2), POLICY, 3).action == "wait"
    # 3 errors in 400 against none of stable's: shown within the pass margin
    passed = analyse(window(3000), window(400, errors=3), POLICY, 30)
    (errors,) = [c for c in passed.checks if c.name == "error rate"]
    assert errors.status == "pass" and passed.action == "advance"
    # 8 in 250 (3.2%) against an allowed 1%: not enough evidence either way yet
    pending = analyse(window(3000), window(250, errors=8), POLICY, 30)
    (errors,) = [c for c in pending.checks if c.name == "error rate"]
    assert errors.status == "pending" and pending.action == "wait"
    assert pending.reason == "error rate: not decided yet"


def test_a_slow_canary_rolls_back_against_the_stable_p99() -> None:
    verdict = analyse(window(3000, latency_ms=12), window(30, latency_ms=300), POLICY, 4)
    assert verdict.action == "rollback"
    assert "latency p99: canary p99" in verdict.reason
    assert "30 of 30 canary requests above 50 ms" in verdict.reason
    # Below the floor, a ratio breach is no breach.
    fast = analyse(window(3000, latency_ms=2), window(220, latency_ms=7), POLICY, 4)
    assert fast.action == "advance"


def test_latency_is_not_judged_before_stables_p99_is_bounded() -> None:
    # 500 stable requests cannot show that fewer than 1% of them are slow
    early = analyse(window(500, latency_ms=12), window(220, latency_ms=300), POLICY, 4)
    (latency,) = [c for c in early.checks if c.name == "latency p99"]
    assert latency.status == "pending" and "not bounded yet (500 requests)" in latency.detail


def test_diverging_predictions_roll_back_as_soon_as_the_evidence_is_clear() -> None:
    skewed = (0, 0, 0, 0, 0, 0, 0, 0, 0, 220)
    assert js_distance(skewed, window(220).scores) > 0.9
    # 20 predictions all in a bucket where stable puts 1%: no chance, even on the first look
    verdict = analyse(window(1000), window(20, scores=(0,) * 9 + (20,)), POLICY, 5)
    assert verdict.action == "rollback" and verdict.reason.startswith("prediction divergence")
    # but a small sample that is merely noisy is no evidence
    noisy = (8, 3, 2, 2, 1, 1, 1, 1, 1, 0)
    assert analyse(window(1000), window(20, scores=noisy), POLICY, 5).action == "wait"


def test_too_little_traffic_for_too_long_rolls_back() -> None:
    verdict = analyse(window(100), window(10), POLICY, 61)
    assert verdict.action == "rollback" and "only 10 canary requests in 61s" in verdict.reason


def test_quantiles_interpolate_like_prometheus() -> None:
    w = Window(latency_bounds_ms=(10.0, 20.0, float("inf")), latency_counts=(50, 50, 0))
    assert w.quantile_ms(0.5) == pytest.approx(10.0)
    assert w.quantile_ms(0.99) == pytest.approx(19.8)
    assert Window().quantile_ms(0.99) is None


def test_the_checks_share_the_budget_equally_and_add_up_to_it() -> None:
    # given the checks of every step of a policy
    for steps, accuracy, budget in (
        ((10, 25, {"weight": 50, "accuracy": "required"}, 100), "on", 0.02),
        ((100,), "off", 0.1),
    ):
        policy = RolloutSettings(
            steps=steps, accuracy=accuracy, checks=RolloutChecks(false_rollback_rate=budget)
        )
        # then each (check, step) pair's level, summed over all of them, is the budget;
        # with accuracy off, the other three checks share it
        checks = len(CHECKS) - (accuracy == "off")
        assert check_level(policy) * checks * len(policy.steps) == pytest.approx(budget)
    # and the checks analyse judges are those the budget is shared by
    verdict = analyse(window(2000), window(220), POLICY, 20)
    assert tuple(c.name for c in verdict.checks) == CHECKS


def _latency_false_alarms(ratio: float, runs: int) -> float:
    """The share of runs in which a canary whose latency is `ratio` times stable's (every
    request) fails the latency check at some look, with a one-step policy whose latency
    check has level 0.05, stable 9 times the canary's traffic."""
    policy = RolloutSettings(
        steps=(100,),
        accuracy="off",
        min_requests=10_000,
        checks=RolloutChecks(false_rollback_rate=0.15),
    )
    # Stable: 30 ms to 50 ms, 1% of it above 45 ms; the canary all of it `ratio` times that.
    rng = np.random.default_rng(17)
    bounds = np.array([b for b in LATENCY_BOUNDS_MS if b != float("inf")])
    alarms = 0
    for _ in range(runs):
        stable_counts = np.zeros(len(LATENCY_BOUNDS_MS), dtype=int)
        canary_counts = np.zeros(len(LATENCY_BOUNDS_MS), dtype=int)
        for _ in range(40):
            stable_ms = rng.uniform(30, 45, size=450)
            stable_ms[rng.random(450) < 0.01] = 47.5
            canary_ms = rng.uniform(30, 45, size=50) * ratio
            canary_ms[rng.random(50) < 0.01] = 47.5 * ratio
            stable_counts += np.bincount(
                np.searchsorted(bounds, stable_ms), minlength=len(stable_counts)
            )
            canary_counts += np.bincount(
                np.searchsorted(bounds, canary_ms), minlength=len(canary_counts)
            )
            stable = Window(
                requests=int(stable_counts.sum()), latency_counts=tuple(map(int, stable_counts))
            )
            canary = Window(
                requests=int(canary_counts.sum()), latency_counts=tuple(map(int, canary_counts))
            )
            if analysis._latency(stable, canary, policy, check_level(policy)).status == "fail":
                alarms += 1
                break
    return alarms / runs


def test_a_canary_at_the_tolerated_p99_is_rolled_back_at_most_at_the_checks_level() -> None:
    # given a canary whose p99 is exactly 1.5 times stable's (and above the 50 ms floor),
    # stable's p99 itself estimated from its histogram, a look every 50 canary requests
    # then it is rolled back in at most the check's level (0.05) of the runs
    assert _latency_false_alarms(1.5, runs=100) <= 0.05
    # while one three times slower is caught in nearly every run
    assert _latency_false_alarms(3.0, runs=40) >= 0.95


def test_the_divergence_bound_is_below_the_true_distance_but_with_chance_alpha() -> None:
    # given two score distributions at a Jensen-Shannon distance of about 0.3
    near = np.array([0.35, 0.19, 0.12, 0.09, 0.07, 0.06, 0.04, 0.04, 0.03, 0.01])
    far = 0.55 * near + 0.45 * near[::-1]
    truth = js_distance(list(near * 1e6), list(far * 1e6))
    rng = np.random.default_rng(23)
    over = 0
    for _ in range(100):
        stable, canary = np.zeros(10, dtype=int), np.zeros(10, dtype=int)
        for _ in range(10):  # a look every 100 canary predictions
            stable += rng.multinomial(900, near)
            canary += rng.multinomial(100, far)
            # (the bound is never above the measured distance: only then is it worth computing)
            measured = js_distance(tuple(stable), tuple(canary))
            if measured > truth and js_lower_bound(tuple(stable), tuple(canary), 0.05) > truth:
                over += 1
                break
    # then the lower bound passes the true distance in at most alpha of the runs
    assert over / 100 <= 0.05
    # and with plenty of data it is close below it
    plenty = js_lower_bound(tuple(near * 10**6), tuple(far * 10**5), 0.05)
    assert truth - 0.02 < plenty <= truth


# Per task: The canary's analysis per task, on windows of real answers: wine's and diabetes' models

FAST = 5  # a latency bucket: a few milliseconds
TASK_POLICY = RolloutSettings(min_requests=200, min_requests_to_fail=20, step_timeout_seconds=60)


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


Windows = Callable[..., tuple[Window, Window]]


@pytest.fixture(scope="module")
def windows(stores: dict[str, Path]) -> Windows:
    """`windows(name, canary, requests=300)`: stable's window and the canary's. Stable's,
    the same for each test of a dataset, is counted once for the module."""
    stable: dict[str, Window] = {}

    def make(name: Dataset, canary: str, requests: int = 300) -> tuple[Window, Window]:
        store = stores[name]
        edges = prediction_edges(Registry(LocalStore(store), name), "v1")
        if name not in stable:
            # stable's p99 is bounded, as the latency check needs, on about 2000 requests
            stable[name] = _window(store, name, "v1", 2000, seed=1, edges=edges)
        return stable[name], _window(store, name, canary, requests, seed=2, edges=edges)

    return make


def test_a_healthy_multiclass_candidate_passes_on_every_class_and_its_accuracy(
    windows: Windows,
) -> None:
    stable, canary = windows("wine", "v2")
    # the windows hold every class's probability histogram
    assert sorted(canary.class_scores) == ["class_0", "class_1", "class_2"]
    assert all(sum(h) == 300 for h in canary.class_scores.values()) and canary.scored == 300
    verdict = analyse(stable, canary, TASK_POLICY, 30, accuracy="required", task="multiclass")
    assert verdict.action == "advance", verdict.reason
    checks = {c.name: c for c in verdict.checks}
    assert checks["accuracy"].status == "pass"
    assert (
        "class probability distributions (largest: class_" in checks["prediction divergence"].detail
    )


def test_a_multiclass_candidate_that_learned_shuffled_labels_is_rolled_back(
    windows: Windows,
) -> None:
    stable, canary = windows("wine", "v3")
    verdict = analyse(stable, canary, TASK_POLICY, 30, accuracy="required", task="multiclass")
    assert verdict.action == "rollback"
    failed = {c.name for c in verdict.checks if c.status == "fail"}
    assert "accuracy" in failed


def test_a_healthy_regression_candidate_passes_on_its_predictions_and_error(
    stores: dict[str, Path], windows: Windows
) -> None:
    # (a mean's confidence sequence narrows more slowly than a proportion's: a step passes
    # on a few hundred labels more than accuracy takes)
    stable, canary = windows("diabetes", "v2", 1000)
    # predictions are counted in stable's label bins; labels in the error histogram
    contract_bins = prediction_edges(Registry(LocalStore(stores["diabetes"]), "diabetes"), "v1")
    assert contract_bins is not None and len(canary.scores) <= len(contract_bins) + 1
    assert canary.labelled == sum(canary.label_errors) == 1000 and canary.correct == 0
    assert canary.mean_absolute_error is not None and 10 < canary.mean_absolute_error < 60
    verdict = analyse(stable, canary, TASK_POLICY, 30, accuracy="required", task="regression")
    assert verdict.action == "advance", verdict.reason
    checks = {c.name: c for c in verdict.checks}
    assert LABEL_CHECKS["regression"] == "mean absolute error"
    assert checks["mean absolute error"].status == "pass"
    assert checks["mean absolute error"].threshold == pytest.approx(
        stable.mean_absolute_error * 1.1  # type: ignore[operator]
    )
    assert "prediction distributions on the label's bins" in checks["prediction divergence"].detail


def test_a_regression_candidate_that_learned_shuffled_labels_is_rolled_back(
    windows: Windows,
) -> None:
    stable, canary = windows("diabetes", "v3")
    assert canary.mean_absolute_error > 1.3 * stable.mean_absolute_error  # type: ignore[operator]
    verdict = analyse(stable, canary, TASK_POLICY, 30, accuracy="required", task="regression")
    assert verdict.action == "rollback"
    failed = {c.name for c in verdict.checks if c.status == "fail"}
    assert "mean absolute error" in failed, verdict.reason


def test_a_required_regression_step_without_labels_fails_closed_at_its_timeout() -> None:
    # given windows with answers but no labels
    fast = tuple(2000 if i == FAST else 0 for i in range(len(LATENCY_BOUNDS_MS)))
    answers = Window(requests=2000, scores=(200,) * 10, latency_counts=fast)
    waiting = analyse(answers, answers, TASK_POLICY, 30, accuracy="required", task="regression")
    assert waiting.action == "wait"
    assert waiting.reason.startswith("mean absolute error is required at this step")
    timed_out = analyse(answers, answers, TASK_POLICY, 61, accuracy="required", task="regression")
    assert timed_out.action == "rollback"
    # and with too few labels to judge, an optional step says it was not checked
    few = answers.model_copy(
        update={"labelled": 5, "abs_error_sum": 50.0, "squared_error_sum": 600.0}
    )
    optional = analyse(few, few, TASK_POLICY, 30, accuracy="optional", task="regression")
    assert optional.action == "advance"
    assert "but mean absolute error, not checked (optional at this step)" in optional.reason


def test_a_regression_breach_counts_only_on_enough_labels_each() -> None:
    # given a canary whose errors are ten times stable's on 10 labels each
    stable = Window(requests=400, labelled=10, abs_error_sum=100.0, squared_error_sum=1100.0)
    canary = stable.model_copy(update={"abs_error_sum": 1000.0, "squared_error_sum": 110_000.0})
    # then it is not yet a breach (fewer than min_requests_to_fail labels each) ...
    checks = {c.name: c for c in analyse(stable, canary, TASK_POLICY, 30, task="regression").checks}
    assert checks["mean absolute error"].status == "pending"
    # ... and is once each side has them
    more = {"labelled": 40, "abs_error_sum": 400.0, "squared_error_sum": 4400.0}
    stable = stable.model_copy(update=more)
    canary = canary.model_copy(
        update={"labelled": 40, "abs_error_sum": 4000.0, "squared_error_sum": 440_000.0}
    )
    checks = {c.name: c for c in analyse(stable, canary, TASK_POLICY, 30, task="regression").checks}
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
