"""The canary of a simulated day: the real RolloutController on a simulated clock, judging
windows drawn look by look from how each version answered that day's requests.

`SimulatedDriver` is the rollout Driver's side of any such simulation (the windows, the routes,
the clock); what happened between two looks is drawn by a subclass: `DayDriver` from the day's
answers here, `benchmarks/rollout.py` from the real local loop's measured distributions.
"""

from __future__ import annotations

import math
import time as clock
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from flywheel.config import Settings
from flywheel.contract import Contract
from flywheel.registry import PRODUCTION, Registry, stamped_by
from flywheel.rollout.analysis import LATENCY_BOUNDS_MS, Window
from flywheel.rollout.controller import RolloutController
from flywheel.serving.judgement import judge
from flywheel.serving.messages import true_labels
from flywheel.serving.metrics import (
    ERROR_BOUNDS,
    SCORE_BUCKETS,
    WHOLE,
    answer_buckets,
    error_bucket,
)
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
    scores: np.ndarray[Any, Any]  # counts per score bucket (a regression's: per label bin)
    requests: int = 0
    errors: int = 0
    labelled: int = 0
    correct: int = 0
    # a multiclass model's counts per score bucket, by class
    class_scores: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    # a regression's labelled rows per absolute-error bucket, and the sums of its errors
    label_errors: np.ndarray[Any, Any] | None = None
    abs_error_sum: float = 0.0
    squared_error_sum: float = 0.0

    def window(self, bounds: tuple[float, ...]) -> Window:
        errors = () if self.label_errors is None else tuple(int(v) for v in self.label_errors)
        return Window(
            requests=self.requests,
            errors=self.errors,
            latency_bounds_ms=bounds,
            latency_counts=tuple(int(v) for v in self.latency),
            scores=tuple(int(v) for v in self.scores),
            class_scores={k: tuple(int(v) for v in h) for k, h in self.class_scores.items()},
            labelled=self.labelled,
            correct=self.correct,
            label_errors=errors if any(errors) else (),
            abs_error_sum=self.abs_error_sum,
            squared_error_sum=self.squared_error_sum,
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
        # Buckets of a side's `scores`: a regression's are its prediction bins.
        self.score_width = SCORE_BUCKETS

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
                scores=np.zeros(self.score_width, dtype=int),
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
    # a multiclass model's (requests, buckets) counts by class
    class_scores: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    # a regression's (requests, error buckets) labelled rows, and per request its sums
    label_errors: np.ndarray[Any, Any] | None = None
    abs_errors: np.ndarray[Any, Any] | None = None
    squared_errors: np.ndarray[Any, Any] | None = None


def prediction_edges(registry: Registry, version: str) -> tuple[float, ...] | None:
    """A regression version's prediction bins (its contract's label profile), else None."""
    raw = registry.read_optional(version, "contract.json")
    contract = Contract.from_json(raw) if raw is not None else None
    if contract is None or contract.task != "regression":
        return None
    return contract.label_profile.edges if contract.label_profile else ()


def _answers(
    settings: Settings,
    registry: Registry,
    version: str,
    parts: list[tuple[str, pd.DataFrame]],
    edges: tuple[float, ...] | None = None,
) -> _Answers:
    """Send every request of the day to `version` through the real serving class (not logged);
    a regression's predicted values are counted in `edges`, stable's bins, as the gateway
    counts both sides'."""
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
    scores = np.zeros((n, SCORE_BUCKETS if edges is None else len(edges) + 1), dtype=int)
    class_scores: dict[str, np.ndarray[Any, Any]] = {}
    labelled = np.zeros(n, dtype=int)
    correct = np.zeros(n, dtype=int)
    label_errors = np.zeros((n, len(ERROR_BOUNDS) + 1), dtype=int)
    abs_errors, squared_errors = np.zeros(n), np.zeros(n)
    with threadpool_limits(limits=1, user_api="openmp"):
        model.load()
        problem = model.problem
        assert problem is not None
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
            rows = response["data"]["ndarray"]
            names = response["data"]["names"]
            for (name, bucket), count in answer_buckets(rows, names, edges).items():
                if name == WHOLE:
                    scores[i, bucket] += count
                else:
                    class_scores.setdefault(name, np.zeros((n, SCORE_BUCKETS), dtype=int))
                    class_scores[name][i, bucket] += count
            truth = {"data": {"ndarray": part[settings.features.label].tolist()}}
            judged = judge(rows, true_labels(truth, problem), problem)
            labelled[i] = len(rows)
            correct[i] = judged.right
            finite = [e for e in judged.errors or () if math.isfinite(e)]
            for e in finite:
                label_errors[i, error_bucket(e)] += 1
            abs_errors[i] = sum(abs(e) for e in finite)
            squared_errors[i] = sum(e * e for e in finite)
    if problem.is_classifier:
        return _Answers(errors, latency, scores, labelled, correct, class_scores)
    return _Answers(
        errors, latency, scores, labelled, correct, {}, label_errors, abs_errors, squared_errors
    )


class DayDriver(SimulatedDriver):
    """The rollout Driver over one day's requests: at each look, requests drawn at
    `CANARY_RPS` from the day's, routed by the step's weight, each side answering as the real
    serving class answered that request (every answered request labelled: the day's labels
    are known)."""

    def __init__(self, stable: _Answers, canary: _Answers, seed: int, start: float) -> None:
        import numpy as np

        super().__init__(np.random.default_rng(seed), start)
        self.answers = {"stable": stable, "canary": canary}
        self.score_width = stable.scores.shape[1]

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
            for name, counts in a.class_scores.items():
                side.class_scores[name] = side.class_scores.get(name, 0) + counts[ok].sum(axis=0)
            side.labelled += int(a.labelled[ok].sum())
            side.correct += int(a.correct[ok].sum())
            if a.label_errors is not None and a.abs_errors is not None:
                assert a.squared_errors is not None
                side.label_errors = (
                    a.label_errors[ok].sum(axis=0)
                    if side.label_errors is None
                    else side.label_errors + a.label_errors[ok].sum(axis=0)
                )
                side.abs_error_sum += float(a.abs_errors[ok].sum())
                side.squared_error_sum += float(a.squared_errors[ok].sum())


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
    edges = prediction_edges(registry, stable)
    driver = DayDriver(
        _answers(settings, registry, stable, parts, edges),
        _answers(settings, registry, version, parts, edges),
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
