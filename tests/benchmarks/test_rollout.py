"""`make bench-rollout`'s exact bounds, table and goals, on made-up rollouts, and the canaries
it derives from the calibration (the simulations themselves are the benchmark's to run)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import beta

from benchmarks import rollout as bench
from flywheel.rollout.analysis import js_distance


@pytest.mark.parametrize(("successes", "n"), [(0, 149), (1, 300), (3, 300), (150, 300), (300, 300)])
def test_clopper_pearson_matches_the_beta_quantiles(successes: int, n: int) -> None:
    low, high = bench.clopper_pearson(successes, n)
    # one-sided 95%: the Beta(x, n - x + 1) 5% quantile, the Beta(x + 1, n - x) 95% one
    assert low == pytest.approx(beta.ppf(0.05, successes, n - successes + 1) if successes else 0)
    assert high == pytest.approx(
        beta.ppf(0.95, successes + 1, n - successes) if successes < n else 1
    )


def test_149_rollouts_are_the_fewest_that_certify_two_percent() -> None:
    assert bench.clopper_pearson(0, 149)[1] <= 0.02 < bench.clopper_pearson(0, 148)[1]
    assert bench.clopper_pearson(149, 149)[0] >= 0.98 > bench.clopper_pearson(148, 148)[0]
    # and the default 300 still certify it with one wrong decision, not two
    assert bench.clopper_pearson(1, 300)[1] <= 0.02 < bench.clopper_pearson(2, 300)[1]
    assert bench.clopper_pearson(299, 300)[0] >= 0.98 > bench.clopper_pearson(298, 300)[0]


def runs(
    kind: str, scrape: float, back: int, of: int, seconds: float = 10.0
) -> list[dict[str, Any]]:
    """`of` made-up rollouts of a kind, the first `back` rolled back after `seconds` plus 0 to 9."""
    return [
        {
            "kind": kind,
            "scrape": scrape,
            "seed": i,
            "phase": "rolled_back" if i < back else "promoted",
            "check": "error rate" if i < back else None,
            "seconds": seconds + i % 10 if i < back else 100.0,
        }
        for i in range(of)
    ]


def test_the_table_bounds_wrong_rollbacks_from_above_and_right_ones_from_below() -> None:
    results = [
        *runs("healthy", 5.0, 0, 149),
        *runs("at tolerance", 5.0, 1, 200),
        *runs("errors", 5.0, 149, 149),
        *runs("slow", 5.0, 10, 10, seconds=20.0),
    ]
    table = bench.figures(results)["5s"]
    assert table["healthy"]["bound"] == pytest.approx(beta.ppf(0.95, 1, 149), abs=1e-4)
    assert table["at tolerance"]["rate"] == 0.005
    assert table["errors"]["bound"] == pytest.approx(beta.ppf(0.05, 149, 1), abs=1e-4)
    assert table["slow"]["median_s"] == 24.0 and table["slow"]["p90_s"] == 28.0
    assert table["errors"]["caught_by"] == "error rate"
    assert table["healthy"]["median_promoted_s"] == 100.0
    # and the gross faults' times pooled: 149 at 10 to 19 s, 10 at 20 to 29 s
    assert table[bench.POOLED]["rolled_back"] == 159 and table[bench.POOLED]["median_s"] == 15.0


def test_the_goals_are_met_only_when_the_bounds_certify_them() -> None:
    def goals(healthy_back: int, errors_back: int, errors_seconds: float) -> dict[str, bool]:
        results = [
            *runs("healthy", 5.0, healthy_back, 149),
            *runs("at tolerance", 5.0, 0, 149),
            *runs("errors", 5.0, errors_back, 149, seconds=errors_seconds),
            *runs("slow", 5.0, 149, 149, seconds=errors_seconds),
            *runs("shuffled", 5.0, 149, 149, seconds=errors_seconds),
        ]
        return bench.goals(bench.figures(results))

    assert all(goals(0, 149, 5.0).values())
    # one false rollback in 149: 0.7%, yet not certified below 2%
    assert not goals(1, 149, 5.0)["5s healthy rolled back <= 2% (certified)"]
    # nor none in 148, though the bound rounds to 2.0%
    few = bench.goals(bench.figures(runs("healthy", 5.0, 0, 148)))
    assert not few["5s healthy rolled back <= 2% (certified)"]
    # every fault caught, but one missed in 149: not certified above 98%
    assert not goals(0, 148, 5.0)["5s errors detected >= 98% (certified)"]
    # caught, but the median time is over 15 s plus the 5 s scrape interval
    assert not goals(0, 149, 21.0)["5s median time to roll back a gross fault <= 20 s"]


def _share_within(d: dict[str, Any], ms: float) -> float:
    """The share of requests at or below `ms`, bounded by the bucket bounds around it."""
    cdf = bench._cdf(d)
    return max(y for x, y in cdf if x <= ms), min((y for x, y in cdf if x >= ms), default=1.0)


def test_the_derived_canaries_sit_where_they_are_said_to() -> None:
    calibration, policy, kinds = bench._inputs()
    stable = calibration["healthy"]
    at = kinds["at tolerance"]
    assert at["error_rate"] == pytest.approx(stable["error_rate"] + 0.01)
    assert at["accuracy"] == pytest.approx(stable["accuracy"] - 0.05)
    assert js_distance(stable["scores"], at["scores"]) == pytest.approx(0.3, abs=1e-6)
    assert js_distance(stable["scores"], kinds["scores at 0.45"]["scores"]) == pytest.approx(0.45)
    # 1% of the at-tolerance canary's requests are slower than the tolerated p99; of the
    # subtle one's, 1% slower than 1.5 times that
    tolerated = max(50.0, 1.5 * bench.quantile(stable, 0.99))
    assert bench.tolerated_p99(stable, policy.checks) == pytest.approx(tolerated)
    for d, ms in ((at, tolerated), (kinds["p99 1.5x tolerated"], 1.5 * tolerated)):
        below, above = _share_within(d, ms)
        assert below <= 0.99 + 1e-9 and above >= 0.99 - 1e-9
        assert sum(d["latency"]) == pytest.approx(1.0)
    # with the body of stable's latency untouched
    assert at["latency"][:4] == pytest.approx(stable["latency"][:4])
    # and healthy canaries come from the independent run, not from stable's measurements
    assert kinds["healthy"] is calibration[bench.HEALTHY_CANARY]
    assert kinds["healthy"]["requests"] != stable["requests"]


def test_a_look_sees_only_what_was_scraped() -> None:
    calibration, _, kinds = bench._inputs()
    driver = bench.CalibratedDriver(
        calibration["healthy"], kinds["healthy"], np.random.default_rng(0), scrape=30.0
    )
    driver.phase = 0.0  # scrapes at 0, 30, 60...
    driver.now = driver.last = 1.0
    driver.set_traffic("v1", "v2", 10)
    seen = []
    for now in (5.0, 29.0, 31.0, 59.0, 61.0):
        driver.now = now
        stable, canary = driver.measure(0)
        seen.append(stable.requests + canary.requests)
    # nothing before the first scrape after the route; then jumps, once a scrape
    assert seen[0] == seen[1] == 0
    assert seen[2] == seen[3] > 0 and seen[4] > seen[3]


def test_one_simulated_rollout_of_each_side_runs_through_the_real_controller() -> None:
    # given the calibration, a healthy canary and a gross fault at the chart's scrape
    healthy = bench.simulate("healthy", 30.0, seed=0)
    errors = bench.simulate("errors", 30.0, seed=0)
    # then the controller decides each as the bench counts them: the whole path runs
    assert healthy["phase"] == "promoted", healthy
    assert (errors["phase"], errors["check"]) == ("rolled_back", "error rate"), errors
