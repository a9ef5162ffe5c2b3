"""Canary analysis on recorded measurements: early failure, patience, and each check."""

from __future__ import annotations

import bisect

import pytest

from flywheel.config import RolloutSettings
from flywheel.rollout.analysis import LATENCY_BOUNDS_MS, Window, analyse, js_distance

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
    later = analyse(window(2000), window(220), POLICY, 20)
    assert later.action == "advance"
    assert {c.name: c.status for c in later.checks} == {
        "error rate": "pass",
        "latency p99": "pass",
        "prediction divergence": "pass",
        "accuracy": "pending",
    }


def test_errors_roll_back_early_on_little_traffic() -> None:
    verdict = analyse(window(300), window(25, errors=6), POLICY, 3)
    assert verdict.action == "rollback"
    assert verdict.reason.startswith("error rate: canary 6/25 failed (24.00%)")


def test_a_few_errors_below_the_evidence_bar_do_not_roll_back() -> None:
    assert analyse(window(300), window(10, errors=2), POLICY, 3).action == "wait"


def test_a_slow_canary_rolls_back_against_the_stable_p99() -> None:
    verdict = analyse(window(500, latency_ms=12), window(30, latency_ms=300), POLICY, 4)
    assert verdict.action == "rollback"
    assert "latency p99: canary p99" in verdict.reason
    # Below the floor, a ratio breach is noise.
    fast = analyse(window(500, latency_ms=2), window(220, latency_ms=7), POLICY, 4)
    assert fast.action == "advance"


def test_diverging_predictions_roll_back_once_there_are_enough() -> None:
    skewed = (0, 0, 0, 0, 0, 0, 0, 0, 0, 220)
    assert js_distance(skewed, window(220).scores) > 0.9
    assert analyse(window(1000), window(100, scores=(0,) * 9 + (100,)), POLICY, 5).action == "wait"
    verdict = analyse(window(1000), window(220, scores=skewed), POLICY, 10)
    assert verdict.action == "rollback" and verdict.reason.startswith("prediction divergence")


def test_accuracy_counts_only_with_enough_labels() -> None:
    worse = analyse(
        window(2000, labelled=500, correct=400), window(300, labelled=150, correct=90), POLICY, 10
    )
    assert worse.action == "rollback" and "accuracy: canary 60.00% on 150 labels" in worse.reason
    few = analyse(
        window(2000, labelled=500, correct=400), window(300, labelled=20, correct=5), POLICY, 10
    )
    assert few.action == "advance"


def test_an_accuracy_shortfall_must_be_significant_to_roll_back() -> None:
    # 79.7% on 123 labels against 87.1% on 140, with a 5-point margin: chance (p~0.3).
    noisy = analyse(
        window(2000, labelled=140, correct=122), window(300, labelled=123, correct=98), POLICY, 10
    )
    (accuracy,) = [c for c in noisy.checks if c.name == "accuracy"]
    assert accuracy.status == "pending" and "one-sided p=0.3" in accuracy.detail
    assert noisy.action == "advance"
    # 75% against 87% on ten times the labels is no longer chance.
    clear = analyse(
        window(20000, labelled=1400, correct=1220),
        window(3000, labelled=1230, correct=922),
        POLICY,
        10,
    )
    assert clear.action == "rollback" and clear.reason.startswith("accuracy")


def test_too_little_traffic_for_too_long_rolls_back() -> None:
    verdict = analyse(window(100), window(10), POLICY, 61)
    assert verdict.action == "rollback" and "only 10 canary requests in 61s" in verdict.reason


def test_quantiles_interpolate_like_prometheus() -> None:
    w = Window(latency_bounds_ms=(10.0, 20.0, float("inf")), latency_counts=(50, 50, 0))
    assert w.quantile_ms(0.5) == pytest.approx(10.0)
    assert w.quantile_ms(0.99) == pytest.approx(19.8)
    assert Window().quantile_ms(0.99) is None
