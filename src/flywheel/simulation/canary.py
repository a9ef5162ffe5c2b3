"""The canary of a simulated day: the real RolloutController on a simulated clock, judging
windows drawn look by look from how each version answered that day's requests.

`SimulatedDriver` is the rollout Driver's side of any such simulation (the windows, the routes,
the clock); what happened between two looks is drawn by a subclass: `DayDriver` from the day's
answers here, `benchmarks/rollout.py` from the real local loop's measured distributions.
"""

from __future__ import annotations

import math
import time as clock
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from flywheel.config import Settings
from flywheel.registry import PRODUCTION, Registry, stamped_by
from flywheel.rollout.analysis import LATENCY_BOUNDS_MS, Window
from flywheel.rollout.controller import RolloutController
from flywheel.serving.metrics import SCORE_BUCKETS, score_bucket
from flywheel.serving.model import FlywheelModel
from flywheel.serving.requests import BadRequest
from flywheel.simulation.traffic import _records
from flywheel.simulation.world import _World

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CANARY_RPS = 40.0  # the simulated request rate the canary analysis sees (bench-rollout's)
# Each request of the day is timed this many times and keeps its fastest: one request's
# latency is replayed many times in a canary, so a single scheduler hiccup on a busy machine
# would otherwise become the canary's p99 (a healthy candidate was rolled back on it).
TIMINGS = 3
ROLES = ("stable", "canary")


@dataclass
class Side:
    """One predictor's window, grown look by look."""

    latency: np.ndarray[Any, Any]  # counts per latency bucket
    scores: np.ndarray[Any, Any]  # counts per score bucket
    requests: int = 0
    errors: int = 0
    labelled: int = 0
    correct: int = 0

    def window(self, bounds: tuple[float, ...]) -> Window:
        return Window(
            requests=self.requests,
            errors=self.errors,
            latency_bounds_ms=bounds,
            latency_counts=tuple(int(v) for v in self.latency),
            scores=tuple(int(v) for v in self.scores),
            labelled=self.labelled,
            correct=self.correct,
        )


class SimulatedDriver:
    """The rollout Driver on a simulated clock: the controller's `sleep` moves `now`, and at
    each look what happened since the last one is drawn into both sides' windows (`_draw`,
    from `rng`); new routes start new windows, as the gateway does."""

    def __init__(
        self,
        rng: np.random.Generator,
        start: float = 0.0,
        bounds: tuple[float, ...] = LATENCY_BOUNDS_MS,
    ) -> None:
        self.rng = rng
        self.bounds = bounds
        self.now = self.last = start
        self.weight = 0
        self.routes: tuple[str, str, int] | None = None
        self.sides: dict[str, Side] = {}

    def set_traffic(self, stable: str, canary: str, canary_weight: int, *, slot: str = "a") -> None:
        if self.routes != (stable, canary, canary_weight):
            self._advance()
            self.routes, self.weight = (stable, canary, canary_weight), canary_weight
            self._new_window()

    def finish(self, serving: str, *, slot: str = "a") -> None:
        self.weight = 0

    def measure(self, since: float) -> tuple[Window, Window]:
        self._advance()
        return self.sides["stable"].window(self.bounds), self.sides["canary"].window(self.bounds)

    def _new_window(self) -> None:
        import numpy as np

        self.sides = {
            role: Side(
                latency=np.zeros(len(self.bounds), dtype=int),
                scores=np.zeros(SCORE_BUCKETS, dtype=int),
            )
            for role in ROLES
        }

    def _advance(self) -> None:
        dt = self.now - self.last
        if dt > 0 and self.sides:
            self._draw(dt)
        self.last = self.now

    def _draw(self, dt: float) -> None:
        """Add to `sides` what happened in the `dt` seconds from `last` to `now`."""
        raise NotImplementedError


@dataclass(frozen=True)
class _Answers:
    """How one version answered each of the day's requests."""

    errors: np.ndarray[Any, Any]  # server error (bool)
    latency: np.ndarray[Any, Any]  # latency bucket index
    scores: np.ndarray[Any, Any]  # (requests, buckets) counts
    labelled: np.ndarray[Any, Any]
    correct: np.ndarray[Any, Any]


def _answers(
    settings: Settings, registry: Registry, version: str, parts: list[tuple[str, pd.DataFrame]]
) -> _Answers:
    """Send every request of the day to `version` through the real serving class (not logged)."""
    import numpy as np

    model = FlywheelModel(
        model_name=settings.model_name,
        model_version=version,
        store_uri=settings.storage.uri,
        store_endpoint=settings.storage.endpoint or "",
        store_secure=settings.storage.secure,
        log_predictions=False,
        registry=registry,
    )
    n = len(parts)
    errors = np.zeros(n, dtype=bool)
    latency = np.zeros(n, dtype=int)
    scores = np.zeros((n, SCORE_BUCKETS), dtype=int)
    labelled = np.zeros(n, dtype=int)
    correct = np.zeros(n, dtype=int)
    with threadpool_limits(limits=1, user_api="openmp"):
        model.load()
        for i, (rid, part) in enumerate(parts):
            payload = {"jsonData": _records(settings, part), "meta": {"puid": rid}}
            response: dict[str, Any] | None = None
            timings: list[float] = []
            for _ in range(TIMINGS):
                started = clock.perf_counter()
                try:
                    response = model.score(payload)
                except BadRequest:
                    break  # the client's fault: the same on both sides, and not answered
                except Exception:  # a server error, as Seldon answers 500
                    errors[i] = True
                    break
                finally:
                    timings.append((clock.perf_counter() - started) * 1000)
            latency[i] = next(
                (b for b, bound in enumerate(LATENCY_BOUNDS_MS) if min(timings) <= bound),
                len(LATENCY_BOUNDS_MS) - 1,
            )
            if response is None or errors[i]:
                continue
            answered = [row[1] for row in response["data"]["ndarray"]]
            for score in answered:
                if math.isfinite(score):
                    scores[i, score_bucket(score)] += 1
            labels = part[settings.features.label].to_numpy()
            labelled[i] = len(labels)
            correct[i] = int(((np.asarray(answered) >= 0.5).astype(int) == labels).sum())
    return _Answers(errors, latency, scores, labelled, correct)


class DayDriver(SimulatedDriver):
    """The rollout Driver over one day's requests: at each look, requests drawn at
    `CANARY_RPS` from the day's, routed by the step's weight, each side answering as the real
    serving class answered that request (every answered request labelled: the day's labels
    are known)."""

    def __init__(self, stable: _Answers, canary: _Answers, seed: int, start: float) -> None:
        import numpy as np

        super().__init__(np.random.default_rng(seed), start)
        self.answers = {"stable": stable, "canary": canary}

    def _draw(self, dt: float) -> None:
        import numpy as np

        n = int(self.rng.poisson(CANARY_RPS * dt))
        total = len(self.answers["stable"].errors)
        if not n or not total:
            return
        drawn = self.rng.integers(0, total, size=n)
        to_canary = self.rng.random(n) < self.weight / 100
        for role, chosen in (("stable", drawn[~to_canary]), ("canary", drawn[to_canary])):
            a, side = self.answers[role], self.sides[role]
            ok = chosen[~a.errors[chosen]]
            side.requests += len(chosen)
            side.errors += int(a.errors[chosen].sum())
            side.latency += np.bincount(a.latency[chosen], minlength=len(self.bounds))
            side.scores += a.scores[ok].sum(axis=0)
            side.labelled += int(a.labelled[ok].sum())
            side.correct += int(a.correct[ok].sum())


def _canary(
    world: _World,
    registry: Registry,
    version: str,
    parts: list[tuple[str, pd.DataFrame]],
    end: datetime,
) -> dict[str, Any]:
    """Roll `version` out against production on the day's requests; how it ended."""
    settings = world.settings
    stable = registry.resolve(PRODUCTION)
    if stable is None:
        return {"version": version, "phase": "direct", "reason": "nothing was in production"}
    driver = DayDriver(
        _answers(settings, registry, stable, parts),
        _answers(settings, registry, version, parts),
        seed=world.seed * 100_003 + (end.date().toordinal()),
        start=end.timestamp(),
    )

    def sleep(seconds: float) -> None:
        driver.now += seconds

    controller = RolloutController(
        registry, driver, settings.rollout, clock=lambda: driver.now, sleep=sleep
    )
    with stamped_by(lambda: end):
        controller.resume_or_start(version)
        state = controller.run()
    return {"version": version, "phase": state.phase, "reason": state.reason}
