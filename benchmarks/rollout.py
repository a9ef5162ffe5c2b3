"""`make bench-rollout`: how often the canary analysis is wrong, and how fast it is right.

A SIMULATION OF THE ANALYSIS, not of the servers: the real `RolloutController`
and `analyse` judge windows drawn, look by look, from what real canaries did at
40 req/s. Each rollout walks flywheel.yaml's steps, a look every
`interval_seconds` of simulated time. Requests come at the step's share of 40
req/s (Poisson), then their server errors, latency buckets and score buckets;
half of the answered requests come back labelled one second later
(`SyntheticTraffic`'s defaults), right with the side's accuracy. A look sees only
what Prometheus had scraped by then: the counts move in jumps, once a scrape
interval (the chart's 30 s, and 5 s), at a phase drawn per rollout. New routes
start new windows, as the gateway does.

The distributions were measured with the real local loop (real seldon-core
microservices behind the gateway, SyntheticTraffic at 40 req/s, labels through
Seldon feedback) by `python -m benchmarks.rollout --calibrate`, which rewrites
benchmarks/rollout_calibration.json; a plain run only reads it. Stable is the
production model's measured distribution. The canaries:

- healthy: drawn from a second, independent run, in which production's own model
  was registered again and served as the canary by its own processes;
- at tolerance: stable's distribution moved to every tolerance of the policy at
  once (one point more errors; a slow tail that puts its p99 at the tolerated one,
  1.5x stable's and at least 50 ms; scores at a Jensen-Shannon distance of 0.3;
  five points less accuracy): a healthy canary, as bad as allowed;
- errors, slow, shuffled (gross): what the faulty versions of `flywheel demo
  bad-candidate` (flywheel.rollout.faults) did, at 10%;
- subtle: stable's distribution moved past one tolerance each, by 1.5 to 2 times
  it: two points more errors, a p99 at 1.5x the tolerated one, scores at a
  distance of 0.45, eight points less accuracy.

Figures per kind and scrape interval: the share rolled back with its exact
(Clopper-Pearson) 95% bound (upper where a rollback is wrong, lower where it is
right), and the median and p90 time from the first canary request to the
rollback. Goals: healthy and at-tolerance canaries rolled back <= 2%, each gross
fault >= 98%, both certified by the bound; the median time to roll back a gross
fault <= 15 s plus one scrape interval. The run ends with one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.rollout.analysis import js_distance
from flywheel.simulation.canary import SimulatedDriver

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = Path(__file__).with_name("rollout_calibration.json")
RPS = 40.0
LABEL_FRACTION, LABEL_DELAY = 0.5, 1.0  # SyntheticTraffic's defaults
HEALTHY_CANARY, HEALTHY_WEIGHT = "healthy canary", 50  # the independent healthy run
SCRAPES = (30.0, 5.0)  # the chart's ServiceMonitor interval, and a short one
HEALTHY = ("healthy", "at tolerance")  # a rollback of these is a false one
GROSS = ("errors", "slow", "shuffled")
SUBTLE = ("+2 points errors", "p99 1.5x tolerated", "scores at 0.45", "-8 points accuracy")
KINDS = (*HEALTHY, *GROSS, *SUBTLE)
FALSE_ROLLBACKS, DETECTION, CONFIDENCE = 0.02, 0.98, 0.95
QUICK_SECONDS = 15.0  # the median time to roll back a gross fault, plus one scrape interval
POOLED = "gross, pooled"


# --- calibration: the real local loop, once ---------------------------------------


def calibrate(seconds: float, weight: int) -> dict[str, Any]:
    """Measure the stable model and each faulty version as canaries in the real local loop."""
    from flywheel.config import load_settings
    from flywheel.rollout.faults import register_faulty
    from flywheel.rollout.local import LocalDriver, newest_batch
    from flywheel.rollout.traffic import SyntheticTraffic
    from flywheel.stores import Stores

    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    shutil.copy(REPO / "flywheel.yaml", work / "flywheel.yaml")
    flywheel = [str(REPO / ".venv" / "bin" / "flywheel"), "-c", str(work / "flywheel.yaml")]
    print(f">> registering a model in {work}", flush=True)
    for args in (["data", "generate", "--next", "7"], ["run"]):
        subprocess.run([*flywheel, *args], cwd=work, check=True, capture_output=True)
    settings = load_settings(
        work / "flywheel.yaml",
        env={},
        overrides=[
            f"storage.uri={work / '.flywheel/store'}",
            f"data.source={work / 'data/batches'}",
            f"pipeline.root={work / '.flywheel/pipeline-root'}",
        ],
    )
    stores = Stores(settings)
    frame = newest_batch(stores.source)
    measured: dict[str, Any] = {"weight": weight, "seconds": seconds, "rps": RPS}

    def measure(version: str, weight: int) -> tuple[Any, Any]:
        """Stable (v1) and `version` at `weight`% under SyntheticTraffic for `seconds`."""
        (work / f"serve-{version}").mkdir()
        with LocalDriver(settings, workdir=work / f"serve-{version}") as driver:
            driver.serve("v1")
            driver.set_traffic("v1", version, weight)
            load = SyntheticTraffic(driver.gateway_url, frame, settings.features, rps=RPS)
            load.start()
            time.sleep(seconds)
            stats = load.stop()
            time.sleep(LABEL_DELAY + 1)  # the last labels
            windows = driver.measure(0)
        print(f"   traffic {dict(stats)}", flush=True)
        return windows

    for kind in ("errors", "slow", "shuffled"):
        version = register_faulty(settings, stores.registry, stores.source, kind)  # type: ignore[arg-type]
        print(f">> {kind} ({version}) at {weight}% for {seconds:.0f}s", flush=True)
        stable, canary = measure(version, weight)
        measured[kind] = _distribution(canary)
        measured.setdefault("healthy", _distribution(stable))
    # A second, independent healthy run: production's own model registered again and
    # served as a canary by its own processes, at a weight that gives it about as many
    # requests as stable had. The bench's healthy canaries are drawn from it, not from stable.
    version = _register_copy(stores.registry)
    print(f">> healthy ({version}, production's model again) at {HEALTHY_WEIGHT}%", flush=True)
    _, canary = measure(version, HEALTHY_WEIGHT)
    measured[HEALTHY_CANARY] = {**_distribution(canary), "weight": HEALTHY_WEIGHT}
    shutil.rmtree(work, ignore_errors=True)
    return measured


def _register_copy(registry: Any) -> str:
    """Register production's model again under a new version (a healthy canary)."""
    from flywheel.registry import PRODUCTION

    production = registry.resolve(PRODUCTION)
    assert production is not None
    files = {name: registry.read(production, name) for name in registry.manifest(production).files}
    return registry.register(
        files, run_id="healthy-copy", fingerprint=f"healthy-copy-of-{production}"
    ).version


def _distribution(window: Any) -> dict[str, Any]:
    answered = window.requests - window.errors
    return {
        "requests": window.requests,
        "error_rate": window.errors / max(1, window.requests),
        "latency_bounds_ms": list(window.latency_bounds_ms),
        "latency": [n / max(1, window.requests) for n in window.latency_counts],
        "scores": [n / max(1, answered) for n in window.scores],
        "labelled": window.labelled,
        "accuracy": window.correct / max(1, window.labelled),
    }


# --- the canaries: measured, and moved to (or past) the policy's tolerances --------


def canaries(calibration: dict[str, Any], checks: Any) -> dict[str, dict[str, Any]]:
    """Each kind's distribution; stable is `calibration["healthy"]`."""
    stable = calibration["healthy"]
    tolerated = {
        "error_rate": stable["error_rate"] + checks.max_error_rate_increase,
        "latency": slow_tail(stable, tolerated_p99(stable, checks)),
        "scores": scores_at(stable["scores"], checks.max_divergence),
        "accuracy": stable["accuracy"] - checks.max_accuracy_drop,
    }
    return {
        "healthy": calibration[HEALTHY_CANARY],
        "at tolerance": {**stable, **tolerated},
        **{kind: calibration[kind] for kind in GROSS},
        "+2 points errors": {**stable, "error_rate": stable["error_rate"] + 0.02},
        "p99 1.5x tolerated": {
            **stable,
            "latency": slow_tail(stable, 1.5 * tolerated_p99(stable, checks)),
        },
        "scores at 0.45": {**stable, "scores": scores_at(stable["scores"], 0.45)},
        "-8 points accuracy": {**stable, "accuracy": stable["accuracy"] - 0.08},
    }


def _cdf(d: dict[str, Any]) -> list[tuple[float, float]]:
    """The latency CDF at each finite bucket bound, linear within a bucket (as
    Prometheus' histogram_quantile reads a histogram)."""
    points, seen = [(0.0, 0.0)], 0.0
    for bound, share in zip(d["latency_bounds_ms"], d["latency"], strict=True):
        seen += share
        if math.isfinite(bound):
            points.append((float(bound), seen))
    return points


def _cdf_at(points: list[tuple[float, float]], x: float) -> float:
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def slow_tail(d: dict[str, Any], p99_ms: float, stretched: float = 0.03) -> list[float]:
    """Bucket shares of the latency `d` describes with its slowest `stretched` share of
    requests stretched, further the slower, so that its p99 is `p99_ms`: a slow tail,
    the body untouched."""
    start = 1 - stretched
    extra = p99_ms - quantile(d, 0.99)

    def slowed(u: float) -> float:  # the quantile function, stretched
        return quantile(d, u) + max(0.0, u - start) / (0.99 - start) * extra

    shares, below = [], 0.0
    for bound in d["latency_bounds_ms"]:
        if math.isfinite(bound):
            low, high = 0.0, 1.0  # the share of requests at or below the bound
            for _ in range(50):
                middle = (low + high) / 2
                low, high = (middle, high) if slowed(middle) <= bound else (low, middle)
            at_or_below = low
        else:
            at_or_below = 1.0
        shares.append(max(0.0, at_or_below - below))
        below = max(below, at_or_below)
    return shares


def tolerated_p99(stable: dict[str, Any], checks: Any) -> float:
    """The slowest p99 the policy tolerates of a canary against `stable`."""
    return float(max(checks.p99_floor_ms, checks.max_p99_ratio * quantile(stable, 0.99)))


def quantile(d: dict[str, Any], q: float) -> float:
    """A latency quantile of a distribution, interpolated within its bucket."""
    points = _cdf(d)
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if y1 >= q and y1 > y0:
            return x0 + (x1 - x0) * (q - y0) / (y1 - y0)
    return points[-1][0]


def scores_at(shares: list[float], distance: float) -> list[float]:
    """Score shares at a Jensen-Shannon distance `distance` from `shares`: mixed towards
    their mirror image (high scores where low ones were)."""
    far = shares[::-1]

    def mix(t: float) -> list[float]:
        return [(1 - t) * a + t * b for a, b in zip(shares, far, strict=True)]

    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if js_distance(shares, mix(middle)) < distance:
            low = middle
        else:
            high = middle
    return mix((low + high) / 2)


# --- simulation: the real controller and analysis on drawn, scraped windows --------


class CalibratedDriver(SimulatedDriver):
    """The simulated Driver over drawn traffic at `RPS`, in the current step's proportion,
    as Prometheus scraped it: a look sees the windows as they were at the last scrape."""

    def __init__(
        self,
        stable: dict[str, Any],
        canary: dict[str, Any],
        rng: np.random.Generator,
        scrape: float,
    ) -> None:
        super().__init__(rng, bounds=tuple(stable["latency_bounds_ms"]))
        self.dist = {"stable": stable, "canary": canary}
        self.scrape = scrape
        self.phase = float(rng.uniform(0, scrape))  # scrapes at phase + k * scrape
        self.pending: list[tuple[float, str, int]] = []  # (when, side, answers) to label
        self.first_canary_request: float | None = None

    def set_traffic(self, stable: str, canary: str, canary_weight: int, *, slot: str = "a") -> None:
        if self.routes != (stable, canary, canary_weight):
            self.routes, self.weight = (stable, canary, canary_weight), canary_weight
            self._new_window()
            self.last = self.now  # the new window starts now, between two scrapes

    def _advance(self) -> None:
        scraped = self.phase + math.floor((self.now - self.phase) / self.scrape) * self.scrape
        if scraped > self.last and self.sides:
            self._draw_until(scraped)
        self.last = max(self.last, scraped)

    def _draw_until(self, until: float) -> None:
        """Draw what happened from `last` to `until`, the last scrape."""
        rng, dt = self.rng, until - self.last
        for role, share in (("stable", 100 - self.weight), ("canary", self.weight)):
            d, side = self.dist[role], self.sides[role]
            n = int(rng.poisson(RPS * share / 100 * dt))
            if not n:
                continue
            if role == "canary" and self.first_canary_request is None:
                self.first_canary_request = self.last + float(rng.exponential(dt / n))
            errors = int(rng.binomial(n, d["error_rate"]))
            side.requests += n
            side.errors += errors
            side.latency += rng.multinomial(n, d["latency"])
            answered = n - errors
            side.scores += rng.multinomial(answered, d["scores"])
            # Answers spread over the interval; each labelled one second after it.
            ready = int(rng.binomial(answered, max(0.0, (dt - LABEL_DELAY) / dt)))
            self.pending.append((until, role, ready))
            self.pending.append((until + LABEL_DELAY, role, answered - ready))
        still = []
        for when, role, answers in self.pending:
            if when > until:
                still.append((when, role, answers))
                continue
            labelled = int(rng.binomial(answers, LABEL_FRACTION))
            side = self.sides[role]
            side.labelled += labelled
            side.correct += int(rng.binomial(labelled, self.dist[role]["accuracy"]))
        self.pending = still


@functools.cache
def _inputs() -> tuple[dict[str, Any], Any, dict[str, dict[str, Any]]]:
    """The calibration, the shipped policy and every kind's distribution, read once a process."""
    from flywheel.config import load_settings

    calibration = json.loads(CALIBRATION.read_text())
    policy = load_settings(REPO / "flywheel.yaml", env={}).rollout
    return calibration, policy, canaries(calibration, policy.checks)


def simulate(kind: str, scrape: float, seed: int) -> dict[str, Any]:
    """One rollout of a canary of `kind`; what was decided, by which check, and when."""
    from flywheel.registry import Registry
    from flywheel.rollout.controller import RolloutController
    from flywheel.storage import LocalStore

    calibration, policy, kinds = _inputs()
    # Each decision is fsynced to the store: on tmpfs where there is one.
    shm = Path("/dev/shm")
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-sim-", dir=shm if shm.is_dir() else None))
    try:
        registry = Registry(LocalStore(work), "m")
        for tag in "ab":
            registry.register({"model.joblib": tag.encode()}, run_id=tag)
        registry.move_alias("production", "v1", expected=None, reason="first", actor="test")
        rng = np.random.default_rng([seed, KINDS.index(kind), int(scrape)])
        driver = CalibratedDriver(calibration["healthy"], kinds[kind], rng, scrape)
        # Rollouts start anywhere between two scrapes.
        driver.now = driver.last = float(rng.uniform(0, scrape))

        def sleep(seconds: float) -> None:
            driver.now += seconds

        controller = RolloutController(
            registry, driver, policy, clock=lambda: driver.now, sleep=sleep
        )
        started = driver.now
        controller.start("v2")
        state = controller.run()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    first = driver.first_canary_request if driver.first_canary_request is not None else started
    return {
        "kind": kind,
        "scrape": scrape,
        "seed": seed,
        "phase": state.phase,
        "check": state.reason.split(":", 1)[0] if state.phase == "rolled_back" else None,
        "seconds": round(driver.now - first, 2),
    }


def _simulate_all(tasks: list[tuple[str, float, int]]) -> list[dict[str, Any]]:
    return [simulate(*task) for task in tasks]


def run(rollouts: int, workers: int) -> list[dict[str, Any]]:
    """Every kind at every scrape interval, `rollouts` each, over `workers` processes."""
    tasks = [
        (kind, scrape, seed) for scrape in SCRAPES for kind in KINDS for seed in range(rollouts)
    ]
    if workers <= 1:
        return _simulate_all(tasks)
    chunks = [tasks[i :: workers * 8] for i in range(workers * 8)]
    with ProcessPoolExecutor(workers) as pool:
        return [r for part in pool.map(_simulate_all, chunks) for r in part]


# --- figures: rates, exact bounds, times --------------------------------------------


def clopper_pearson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided exact (Clopper-Pearson) bounds on a proportion, (lower, upper), each at
    `confidence`: the proportions at which the binomial tail of what was seen is 1 - confidence."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"{successes} of {n}")
    tail = 1 - confidence
    upper = 1.0 if successes == n else _bisect(lambda p: _at_most(successes, n, p) - tail)
    lower = 0.0 if successes == 0 else _bisect(lambda p: tail - _at_least(successes, n, p))
    return lower, upper


def _at_most(k: int, n: int, p: float) -> float:
    return sum(_pmf(i, n, p) for i in range(k + 1))


def _at_least(k: int, n: int, p: float) -> float:
    return sum(_pmf(i, n, p) for i in range(k, n + 1))


def _pmf(i: int, n: int, p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return float(i == (0 if p <= 0.0 else n))
    log = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
    return math.exp(log + i * math.log(p) + (n - i) * math.log1p(-p))


def _bisect(falling: Any) -> float:
    """Where a function that falls from positive to negative on [0, 1] crosses zero."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if falling(middle) > 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1)


def figures(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per scrape interval and kind (and the gross faults pooled): rollbacks, their rate
    and exact bound, and times."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scrape in sorted({r["scrape"] for r in results}, reverse=True):
        at = [r for r in results if r["scrape"] == scrape]
        rows = {
            kind: _row([r for r in at if r["kind"] == kind], wrong=kind in HEALTHY)
            for kind in KINDS
            if any(r["kind"] == kind for r in at)
        }
        gross = [r for r in at if r["kind"] in GROSS]
        if gross:
            rows[POOLED] = _row(gross, wrong=False)
        out[f"{scrape:g}s"] = rows
    return out


def _row(runs: list[dict[str, Any]], *, wrong: bool) -> dict[str, Any]:
    back = [r for r in runs if r["phase"] == "rolled_back"]
    low, high = clopper_pearson(len(back), len(runs))
    checks = [r["check"] for r in back]
    return {
        "rollouts": len(runs),
        "rolled_back": len(back),
        "rate": len(back) / len(runs),
        # A rollback of a healthy canary is wrong: bound it from above; of a fault, right:
        # bound it from below.
        "bound": high if wrong else low,
        "median_s": _percentile([r["seconds"] for r in back], 0.5),
        "p90_s": _percentile([r["seconds"] for r in back], 0.9),
        "caught_by": max(set(checks), key=checks.count) if checks else None,
        "median_promoted_s": _percentile(
            [r["seconds"] for r in runs if r["phase"] == "promoted"], 0.5
        ),
    }


def goals(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, bool]:
    """Each goal, per scrape interval: met or not."""
    met: dict[str, bool] = {}
    for scrape, rows in table.items():
        for kind in HEALTHY:
            if kind in rows:
                met[f"{scrape} {kind} rolled back <= 2% (certified)"] = (
                    rows[kind]["bound"] <= FALSE_ROLLBACKS
                )
        for kind in GROSS:
            if kind in rows:
                met[f"{scrape} {kind} detected >= 98% (certified)"] = (
                    rows[kind]["bound"] >= DETECTION
                )
        median = rows.get(POOLED, {}).get("median_s")
        if median is not None:
            limit = QUICK_SECONDS + float(scrape.rstrip("s"))
            met[f"{scrape} median time to roll back a gross fault <= {limit:g} s"] = median <= limit
    return met


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(
    table: dict[str, dict[str, dict[str, Any]]],
    dists: dict[str, dict[str, Any]],
    stable: dict[str, Any],
) -> None:
    print(
        f"\n{'scrape':>6} {'canary':18} {'measured as':40} {'rollouts':>8} {'back':>5} "
        f"{'rate':>7} {'95% bound':>10} {'median s':>8} {'p90 s':>6}  {'goal':8} caught by"
    )
    for scrape, rows in table.items():
        for kind, f in rows.items():
            if kind == POOLED:
                what = ", ".join(GROSS) + " together"
            else:
                d = dists[kind]
                what = (
                    f"err {d['error_rate']:.1%}, p99 {quantile(d, 0.99):.0f} ms, acc "
                    f"{d['accuracy']:.0%}, JS {js_distance(stable['scores'], d['scores']):.2f}"
                )
            if kind in HEALTHY:
                bound, goal = f"<= {f['bound']:.1%}", "<= 2%"
            else:
                bound = f">= {f['bound']:.1%}"
                goal = ">= 98%" if kind in GROSS else "time" if kind == POOLED else "reported"
            print(
                f"{scrape:>6} {kind:18} {what:40} {f['rollouts']:>8} {f['rolled_back']:>5} "
                f"{f['rate']:>7.1%} {bound:>10} {_cell(f['median_s']):>8} {_cell(f['p90_s']):>6}"
                f"  {goal:8} {f['caught_by'] or '-'}"
            )


def summarise(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The figures of the JSON line, per scrape interval and kind."""
    keys = ("rollouts", "rolled_back", "rate", "bound", "median_s", "p90_s")
    return {
        scrape: {
            kind: {k: round(f[k], 4) if isinstance(f[k], float) else f[k] for k in keys}
            | ({"median_promoted_s": f["median_promoted_s"]} if kind in HEALTHY else {})
            for kind, f in rows.items()
        }
        for scrape, rows in table.items()
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rollouts", type=int, default=300, help="simulated rollouts per kind and scrape interval"
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="measure the canaries in the real local loop and rewrite the calibration first",
    )
    parser.add_argument("--calibrate-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = parser.parse_args(argv)
    if args.calibrate:
        CALIBRATION.write_text(json.dumps(calibrate(args.calibrate_seconds, 10), indent=2) + "\n")
        print(f"wrote {CALIBRATION}")
    calibration = json.loads(CALIBRATION.read_text())
    from flywheel.config import load_settings
    from flywheel.rollout.analysis import check_level

    policy = load_settings(REPO / "flywheel.yaml", env={}).rollout
    dists = canaries(calibration, policy.checks)
    print(
        "SIMULATION of the canary analysis (the real controller and analyse on drawn, "
        f"scraped windows), not of the servers: {args.rollouts} rollouts per kind and scrape "
        f"interval at {RPS:g} req/s, steps {list(policy.weights)} (accuracy required at "
        f"{[s.weight for s in policy.steps if s.accuracy == 'required']}), a look every "
        f"{policy.interval_seconds:g}s, scrapes every {' and '.join(f'{s:g}' for s in SCRAPES)}s; "
        f"false-rollback budget {policy.checks.false_rollback_rate:g} "
        f"({check_level(policy):.5f} per check and step); canaries from the real local loop "
        f"({CALIBRATION.name})",
        flush=True,
    )
    started = time.monotonic()
    results = run(args.rollouts, args.workers)
    elapsed = time.monotonic() - started
    table = figures(results)
    print_table(table, dists, calibration["healthy"])
    met = goals(table)
    print(
        f"\n{len(results)} rollouts simulated in {elapsed:.0f}s on {args.workers} processes; "
        "goals: " + ", ".join(f"{g} {'met' if ok else 'MISSED'}" for g, ok in met.items())
    )
    summary = {
        "simulation": "analysis only: the real controller and analyse on drawn, scraped windows",
        "rollouts_per_kind": args.rollouts,
        "rps": RPS,
        "false_rollback_budget": policy.checks.false_rollback_rate,
        "scrapes": summarise(table),
        "goals_met": all(met.values()),
        "seconds": round(elapsed),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rollout.json").write_text(
        json.dumps({"summary": summary, "runs": results}, indent=2)
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
