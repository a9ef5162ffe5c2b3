"""Recorded canary measurements and a driver that replays them: the rollout controller's
tests and its metrics' tests drive the controller with these."""

from __future__ import annotations

from collections.abc import Iterator

from flywheel.config import RolloutSettings
from flywheel.rollout.analysis import Window

# Most tests here drive the steps, not the accuracy check: no step waits for labels.
POLICY = RolloutSettings(
    steps=(10, 50, 100),
    accuracy="off",
    min_requests=100,
    min_requests_to_fail=10,
    interval_seconds=1,
)
GOOD = Window(
    requests=300,
    latency_counts=(0,) * 7 + (300,) + (0,) * 15,
    scores=(100, 80, 60, 40, 20, 0, 0, 0, 0, 0),
)
# Enough stable traffic to bound its p99 at the checks' level.
STABLE = Window(
    requests=3000,
    latency_counts=(0,) * 7 + (3000,) + (0,) * 15,
    scores=(1000, 800, 600, 400, 200, 0, 0, 0, 0, 0),
)
QUIET = Window(
    requests=20, latency_counts=(0,) * 7 + (20,) + (0,) * 15, scores=(7, 5, 4, 3, 1, 0, 0, 0, 0, 0)
)
FAILING = Window(requests=40, errors=12, latency_counts=(0,) * 7 + (40,) + (0,) * 15)


class ReplayDriver:
    """Plays back recorded (stable, canary) measurements and records what it was told.

    The driver is the boundary to real traffic; here it replays measurements so
    that the controller's decisions can be checked step by step.
    """

    def __init__(self, canary_windows: list[Window]) -> None:
        self.windows: Iterator[Window] = iter(canary_windows)
        self.calls: list[tuple[str, ...]] = []

    def set_traffic(self, stable: str, canary: str, canary_weight: int, *, slot: str = "a") -> None:
        if not self.calls or self.calls[-1] != ("traffic", stable, canary, str(canary_weight)):
            self.calls.append(("traffic", stable, canary, str(canary_weight)))

    def measure(self, since: float) -> tuple[Window, Window]:
        return STABLE, next(self.windows)

    def finish(self, serving: str, *, slot: str = "a") -> None:
        self.calls.append(("finish", serving))
