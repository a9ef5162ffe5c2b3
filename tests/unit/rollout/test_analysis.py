"""Canary analysis on recorded measurements: early failure, patience, and each check."""

from __future__ import annotations

import bisect
import math
import random

import pytest

from flywheel.config import RolloutSettings
from flywheel.rollout.analysis import (
    LATENCY_BOUNDS_MS,
    Window,
    analyse,
    homogeneity_log_ratio,
    js_distance,
    sprt_bounds,
    sprt_log_ratio,
)

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


def test_a_required_step_waits_for_labels_then_judges_them() -> None:
    stable = window(2000, labelled=600, correct=480)  # 80%
    # given a healthy canary with too few labels yet
    few = analyse(stable, window(300, labelled=40, correct=33), POLICY, 20, accuracy="required")
    # then the step waits for them, and says so
    assert few.action == "wait"
    assert few.reason.startswith("accuracy is required at this step: canary 82.50% on 40 labels")
    assert few.reason.endswith("100 canary labels are needed to pass")
    # when min_labelled of them have arrived and agree with stable, it passes
    enough = analyse(stable, window(400, labelled=120, correct=98), POLICY, 30, accuracy="required")
    assert enough.action == "advance" and enough.reason == "every check passed"
    # and when they show a canary well below the floor, it rolls back
    worse = analyse(stable, window(400, labelled=120, correct=70), POLICY, 30, accuracy="required")
    assert worse.action == "rollback"
    assert worse.reason.startswith("accuracy: canary 58.33% on 120 labels, stable 80.00% on 600")


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
    # 3 errors in 150 (2%) against an allowed 1%: not enough evidence either way yet
    unsure = analyse(window(3000), window(250, errors=3), POLICY, 30)
    (errors,) = [c for c in unsure.checks if c.name == "error rate"]
    assert errors.status == "pass" and unsure.action == "advance"
    pending = analyse(window(3000), window(250, errors=8), POLICY, 30)
    (errors,) = [c for c in pending.checks if c.name == "error rate"]
    assert errors.status == "pending" and pending.action == "wait"
    assert pending.reason == "error rate: not decided yet"


def test_a_slow_canary_rolls_back_against_the_stable_p99() -> None:
    verdict = analyse(window(500, latency_ms=12), window(30, latency_ms=300), POLICY, 4)
    assert verdict.action == "rollback"
    assert "latency p99: canary p99" in verdict.reason
    # Below the floor, a ratio breach is noise.
    fast = analyse(window(500, latency_ms=2), window(220, latency_ms=7), POLICY, 4)
    assert fast.action == "advance"


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


def test_wald_boundaries_and_log_likelihood_ratios_have_their_closed_forms() -> None:
    # log((1 - alpha)^-1 * beta) and log(1 / alpha)
    assert sprt_bounds(0.05, 0.2) == (pytest.approx(-1.5581446), pytest.approx(2.9957323))
    assert sprt_bounds(0.01) == (pytest.approx(math.log(0.2 / 0.99)), pytest.approx(4.6051702))
    # 3 failures in 20 trials, 5% against 1%: 3 ln 5 + 17 ln(0.95 / 0.99)
    assert sprt_log_ratio(3, 20, 0.01, 0.05) == pytest.approx(4.1272, abs=1e-4)
    # Wald's acceptance and rejection lines for p0=0.01, p1=0.05, alpha=0.01, beta=0.2:
    # reject once failures >= h1 + s n, accept while failures <= s n - h0, with
    # s = 0.024985, h1 = 2.78986 and h0 = 0.96894
    accept, reject = sprt_bounds(0.01)
    for n in (20, 100, 400):
        first = next(d for d in range(n + 1) if sprt_log_ratio(d, n, 0.01, 0.05) >= reject)
        assert first == math.ceil(2.78986 + 0.024985 * n)
        passing = [d for d in range(n + 1) if sprt_log_ratio(d, n, 0.01, 0.05) <= accept]
        assert max(passing, default=-1) == math.floor(0.024985 * n - 0.96894)
    # nothing worse than allowed can exist: no evidence of harm, ever
    assert sprt_log_ratio(5, 5, 1.0, 1.1) == -math.inf


def test_the_divergence_bayes_factor_matches_the_krichevsky_trofimov_probabilities() -> None:
    # KT probabilities of a coin's tosses in order: one toss 1/2; two different 1/8; two
    # equal 3/8. One toss each side: two distributions 1/2 x 1/2 against one shared 1/8
    # (different tosses) or 3/8 (equal ones).
    assert homogeneity_log_ratio((1, 0), (0, 1)) == pytest.approx(math.log(2))
    assert homogeneity_log_ratio((1, 0), (1, 0)) == pytest.approx(math.log(2 / 3))
    assert homogeneity_log_ratio((0, 0), (3, 1)) == 0.0


def test_looking_at_two_samples_of_one_distribution_rarely_finds_a_divergence() -> None:
    # given canary and stable scores drawn from one distribution, a look every 5 canary
    # predictions up to 200, the stable side no bigger than the canary's
    rng = random.Random(7)
    shares = (0.35, 0.19, 0.12, 0.09, 0.07, 0.06, 0.04, 0.04, 0.03, 0.01)
    reject = math.log(1 / 0.01)
    alarms = 0
    for _ in range(300):
        canary, stable = [0] * 10, [0] * 10
        for _ in range(40):
            for counts in (canary, stable):
                for bucket in rng.choices(range(10), weights=shares, k=5):
                    counts[bucket] += 1
            if homogeneity_log_ratio(stable, canary) >= reject:
                alarms += 1
                break
    # then it crosses at level 1% in fewer than 1% of the rollouts
    assert alarms / 300 < 0.01


def _ever_crosses(n_max: int, p: float, reject: float, p0: float, p1: float) -> float:
    """The exact chance that the log-likelihood ratio reaches `reject` at some look,
    looking after every one of `n_max` trials whose true bad rate is `p`."""
    alive = {0: 1.0}  # failures so far -> probability of not having crossed yet
    crossed = 0.0
    for n in range(1, n_max + 1):
        nxt: dict[int, float] = {}
        for bad, mass in alive.items():
            for b, q in ((bad + 1, p), (bad, 1 - p)):
                if sprt_log_ratio(b, n, p0, p1) >= reject:
                    crossed += mass * q
                else:
                    nxt[b] = nxt.get(b, 0.0) + mass * q
        alive = nxt
    return crossed


def test_looking_after_every_request_keeps_false_rollbacks_below_alpha() -> None:
    # given a canary exactly at the allowed error rate, the worst healthy case
    _, reject = sprt_bounds(0.01)
    # when the test looks after every one of 2000 requests
    # then the chance of ever rolling it back is still below alpha
    assert _ever_crosses(2000, 0.01, reject, 0.01, 0.05) < 0.01
    # while a canary failing 5% of its requests is caught, nearly always, within 400
    assert _ever_crosses(400, 0.05, reject, 0.01, 0.05) > 0.95
