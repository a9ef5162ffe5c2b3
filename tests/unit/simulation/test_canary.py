"""The canary of a simulated day: the driver over a day's answers judged by the real
RolloutController on a simulated clock, and the simulated Driver's windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flywheel.config import load_settings
from flywheel.registry import PRODUCTION, Registry
from flywheel.rollout.analysis import LATENCY_BOUNDS_MS
from flywheel.rollout.controller import RolloutController
from flywheel.serving.metrics import SCORE_BUCKETS
from flywheel.simulation.canary import DayDriver, SimulatedDriver, _Answers
from flywheel.storage import LocalStore
from harness.projects import SMALL


def answers(requests: int, *, error: bool = False, right: float = 0.8) -> _Answers:
    """How a version answered `requests` requests of 25 rows: every score in bucket 2, fast."""
    scores = np.zeros((requests, SCORE_BUCKETS), dtype=int)
    scores[:, 2] = 25
    return _Answers(
        errors=np.full(requests, error),
        latency=np.zeros(requests, dtype=int),
        scores=scores,
        labelled=np.full(requests, 25),
        correct=np.full(requests, int(25 * right)),
    )


@pytest.mark.parametrize(
    ("canary", "phase", "reason"),
    [
        (answers(80), "promoted", "every step passed"),
        (answers(80, error=True), "rolled_back", "error rate"),
        (answers(80, right=0.4), "rolled_back", "accuracy"),
    ],
)
def test_the_real_controller_judges_a_canary_on_the_days_answers(
    tmp_path: Path, canary: _Answers, phase: str, reason: str
) -> None:
    # given v1 in production, a candidate v2, and the day's answers of each
    settings = load_settings(None, env={}, overrides=SMALL)
    registry = Registry(LocalStore(tmp_path), "m")
    for tag in "ab":
        registry.register({"model.joblib": tag.encode()}, run_id=tag)
    registry.move_alias(PRODUCTION, "v1", expected=None, reason="first", actor="test")
    driver = DayDriver(answers(80), canary, seed=1, start=1_000_000.0)

    def sleep(seconds: float) -> None:
        driver.now += seconds

    # when the rollout controller runs on the driver, in simulated time
    controller = RolloutController(
        registry, driver, settings.rollout, clock=lambda: driver.now, sleep=sleep
    )
    controller.start("v2")
    state = controller.run()
    # then it ends as the answers deserve, and production follows
    assert state.phase == phase, state.reason
    assert state.reason.startswith(reason), state.reason
    assert registry.resolve(PRODUCTION) == ("v2" if phase == "promoted" else "v1")
    assert driver.now - 1_000_000.0 < 2 * 3600  # simulated seconds, not waited
    assert len(LATENCY_BOUNDS_MS) == len(driver.measure(0)[0].latency_counts)


class Steady(SimulatedDriver):
    """Ten requests a second, split by the step's weight, all fast and scored low."""

    def __init__(self) -> None:
        super().__init__(np.random.default_rng(0), start=100.0)
        self.draws: list[float] = []

    def _draw(self, dt: float) -> None:
        self.draws.append(dt)
        for role, share in (("stable", 100 - self.weight), ("canary", self.weight)):
            n = round(10 * dt * share / 100)
            side = self.sides[role]
            side.requests += n
            side.latency[0] += n
            side.scores[0] += n


def test_the_simulated_driver_draws_each_interval_once_into_the_windows_of_its_routes() -> None:
    # given time passing before any route is set, then nothing is drawn for it
    driver = Steady()
    driver.now += 5
    driver.set_traffic("v1", "v2", 10)
    assert driver.draws == []
    # when 10 s pass at 10%, then each side's window holds its share of them
    driver.now += 10
    stable, canary = driver.measure(0)
    assert (stable.requests, canary.requests) == (90, 10)
    assert canary.latency_counts[0] == 10 and canary.scores[0] == 10
    assert canary.latency_bounds_ms == LATENCY_BOUNDS_MS
    # and a second look at the same time draws nothing more
    assert driver.measure(0) == (stable, canary)
    # when the routes move, then the interval before is drawn at the old weight, and a new
    # window starts; the same routes again keep it
    driver.now += 2
    driver.set_traffic("v1", "v2", 50)
    driver.now += 4
    driver.set_traffic("v1", "v2", 50)
    stable, canary = driver.measure(0)
    assert (stable.requests, canary.requests) == (20, 20)
    assert driver.draws == [10.0, 2.0, 4.0]
    # and once finished, the canary is sent nothing more
    driver.finish("v2")
    driver.now += 1
    assert [w.requests for w in driver.measure(0)] == [30, 20]
