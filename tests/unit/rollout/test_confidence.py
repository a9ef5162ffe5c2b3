"""The confidence sequences and two-sample tests the canary analysis rests on, against known
distributions: each holds its level at every look, by simulation with fixed seeds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.special import betaln

from flywheel.rollout import confidence
from flywheel.rollout.confidence import JEFFREYS, RARE, bounds, exceeds, log_mixture


def _ever_excluded(p: float, n: int, runs: int, alpha: float, prior: confidence.Prior) -> float:
    """The share of `runs` Bernoulli(p) paths whose confidence sequence misses `p` at some
    look, looking after every one of `n` trials (numpy, so that it is quick)."""
    rng = np.random.default_rng(11)
    hits = np.cumsum(rng.random((runs, n)) < p, axis=1)
    trials = np.arange(1, n + 1)
    a, b = prior
    log_m = (
        betaln(a + hits, b + trials - hits)
        - betaln(a, b)
        - hits * math.log(p)
        - (trials - hits) * math.log1p(-p)
    )
    return float(np.mean((log_m >= math.log(1 / alpha)).any(axis=1)))


@pytest.mark.parametrize("prior", [JEFFREYS, RARE])
@pytest.mark.parametrize("p", [0.01, 0.2, 0.8])
def test_a_confidence_sequence_covers_at_every_look_but_with_chance_alpha(
    p: float, prior: confidence.Prior
) -> None:
    # given 2000 paths of 2000 trials each, looked at after every trial
    # then the share of paths whose sequence ever misses the truth is at most alpha
    assert _ever_excluded(p, 2000, 2000, 0.05, prior) <= 0.05
    # (a fixed-sample 95% interval looked at as often misses it in most paths)


def test_the_numpy_and_the_package_mixture_agree() -> None:
    for successes, n, p in ((0, 10, 0.1), (3, 40, 0.2), (39, 40, 0.9)):
        by_hand = betaln(0.5 + successes, 0.5 + n - successes) - betaln(0.5, 0.5)
        by_hand -= successes * math.log(p) + (n - successes) * math.log1p(-p)
        assert log_mixture(successes, n, p) == pytest.approx(by_hand)


def test_the_interval_holds_exactly_the_proportions_not_excluded() -> None:
    alpha = 0.01
    for successes, n in ((0, 50), (4, 50), (50, 50), (190, 200)):
        low, high = bounds(successes, n, alpha)
        assert 0 <= low <= successes / n <= high <= 1
        for inside in (low + 1e-6, high - 1e-6):
            if 0 < inside < 1:
                assert log_mixture(successes, n, inside) < math.log(1 / alpha)
        for outside in (low - 1e-6, high + 1e-6):
            if 0 < outside < 1:
                assert log_mixture(successes, n, outside) >= math.log(1 / alpha)
    assert bounds(0, 0, alpha) == (0.0, 1.0)


@pytest.mark.parametrize("prior", [JEFFREYS, RARE])
def test_each_end_moves_up_with_the_successes(prior: confidence.Prior) -> None:
    # The latency check rests on it: a lower count above a higher bound never shows more.
    for n in (20, 200, 2000):
        ends = [bounds(k, n, 0.001, prior) for k in range(0, n + 1, max(1, n // 100))]
        assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(ends))


def test_surely_above_and_below_agree_with_the_interval() -> None:
    for successes, n in ((5, 100), (0, 900), (30, 100)):
        low, high = bounds(successes, n, 0.01, RARE)
        for p in (0.001, 0.01, 0.05, 0.2, 0.5):
            assert confidence.surely_above(successes, n, p, 0.01, RARE) == (low > p)
            assert confidence.surely_below(successes, n, p, 0.01, RARE) == (high <= p)


def _two_sample_false_alarms(
    p_first: float, p_second: float, margin: float, alpha: float, runs: int, seed: int
) -> float:
    """The share of runs in which `exceeds` ever shows first > second + margin, looking
    every 10 trials of the first sample, the second growing 9 times as fast."""
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(runs):
        k1 = n1 = k2 = n2 = 0
        for _ in range(60):
            k1 += int(rng.binomial(10, p_first))
            k2 += int(rng.binomial(90, p_second))
            n1, n2 = n1 + 10, n2 + 90
            if exceeds((k1, n1), (k2, n2), margin, alpha):
                alarms += 1
                break
    return alarms / runs


def test_the_two_sample_accuracy_test_at_the_floor_keeps_its_level() -> None:
    # given a canary exactly at the floor (stable's accuracy less the tolerated 5 points),
    # misses counted as the proportion, and stable's accuracy itself estimated from its counts
    alarms = _two_sample_false_alarms(0.25, 0.20, 0.05, 0.05, runs=200, seed=3)
    # then it is shown worse in at most alpha of the runs
    assert alarms <= 0.05


def test_the_two_sample_error_rate_test_at_the_tolerance_keeps_its_level() -> None:
    # a canary one point above a stable model that fails 0.5% of its requests
    assert _two_sample_false_alarms(0.015, 0.005, 0.01, 0.05, runs=200, seed=5) <= 0.05


def test_the_two_sample_test_catches_a_gross_breach_on_little_traffic() -> None:
    # a fifth of the canary's requests failing against none of stable's: 35 of them suffice
    assert exceeds((7, 35), (0, 315), 0.01, 0.00125)
    assert not exceeds((6, 30), (0, 270), 0.01, 0.00125)
    # and the mirror (served requests) passes a healthy canary on 200 requests
    assert exceeds((200, 200), (1800, 1800), -0.06, 0.00125)


def test_the_two_sample_test_at_its_edges() -> None:
    assert not exceeds((0, 0), (0, 0), 0.01, 0.05)  # nothing seen: nothing shown
    assert not exceeds((5, 10), (5, 10), 0.0, 0.05)
    assert exceeds((1, 1), (0, 1), -1.0, 0.05)  # nothing can be at or below -100%
    assert not exceeds((10, 10), (0, 10), 1.0, 0.05)  # everything is within +100%
