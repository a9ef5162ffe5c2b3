"""`make bench-rollout`: how often the canary analysis is right, and how fast, in one run.

A SIMULATION OF THE ANALYSIS, not of the servers: the real `RolloutController`
and `analyse` judge windows drawn, look by look, from what real canaries do at
40 req/s. Each rollout walks flywheel.yaml's steps; at every look (every
`interval_seconds` of simulated time) the requests of the interval since the
last one are drawn per side (Poisson at the step's share of 40 req/s), then
their server errors, latency buckets and score buckets, and half of the answered
requests come back labelled one second later (`SyntheticTraffic`'s defaults),
right with the side's accuracy. New routes start new windows, as the gateway does.

Four kinds of canary, 50 rollouts each:

- healthy: drawn from the stable model's own distributions;
- errors, slow, shuffled: drawn from what the faulty versions of
  `flywheel demo bad-candidate` (flywheel.rollout.faults) did.

Those distributions were measured once with the real local loop (real
seldon-core microservices behind the gateway, SyntheticTraffic at 40 req/s,
the canary at 10%, labels through Seldon feedback) by
`python -m benchmarks.rollout --calibrate`, which rewrites
benchmarks/rollout_calibration.json; a plain run only reads that file.

Two analyses side by side, on the same draws (the same seeds):

1. now: the sequential tests (Wald's SPRT, a mixture ratio), and accuracy
   required at the steps flywheel.yaml says;
2. before: the analysis this replaced, the same checks as fixed-sample tests
   repeated at every look (error rate over its bar, chi-square and z-tests at
   their levels), and accuracy never holding a step.

Figures: the share of healthy canaries rolled back (goal <= 2%), the share of
each faulty kind rolled back (goal >= 98%), and the median time from the first
canary request to the rollback (goal <= 15 s). The run ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.simulation.canary import SimulatedDriver

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = Path(__file__).with_name("rollout_calibration.json")
KINDS = ("healthy", "errors", "slow", "shuffled")
EDGE = "at tolerance"  # healthy, but as bad as the policy tolerates
RPS = 40.0
LABEL_FRACTION, LABEL_DELAY = 0.5, 1.0  # SyntheticTraffic's defaults


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
    for kind in ("errors", "slow", "shuffled"):
        version = register_faulty(settings, stores.registry, stores.source, kind)  # type: ignore[arg-type]
        print(f">> {kind} ({version}) at {weight}% for {seconds:.0f}s", flush=True)
        (work / f"serve-{kind}").mkdir()
        with LocalDriver(settings, workdir=work / f"serve-{kind}") as driver:
            driver.serve("v1")
            driver.set_traffic("v1", version, weight)
            load = SyntheticTraffic(driver.gateway_url, frame, settings.features, rps=RPS)
            load.start()
            time.sleep(seconds)
            stats = load.stop()
            time.sleep(LABEL_DELAY + 1)  # the last labels
            stable, canary = driver.measure(0)
        print(f"   traffic {dict(stats)}", flush=True)
        measured[kind] = _distribution(canary)
        measured.setdefault("healthy", _distribution(stable))
    shutil.rmtree(work, ignore_errors=True)
    return measured


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


# --- simulation: the real controller and analysis on drawn windows -----------------


class CalibratedDriver(SimulatedDriver):
    """The simulated Driver over drawn traffic: stable from the healthy distribution,
    the canary from its kind's, at `RPS` in the proportion of the current step."""

    def __init__(self, calibration: dict[str, Any], kind: str, rng: np.random.Generator) -> None:
        super().__init__(rng, bounds=tuple(calibration["healthy"]["latency_bounds_ms"]))
        self.dist = {"stable": calibration["healthy"], "canary": _canary(calibration, kind)}
        self.pending: list[tuple[float, str, int]] = []  # (when, side, answers) to label
        self.first_canary_request: float | None = None

    def _draw(self, dt: float) -> None:
        """Draw what happened between the last look and now."""
        rng = self.rng
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
            ready_now = int(rng.binomial(answered, max(0.0, (dt - LABEL_DELAY) / dt)))
            self.pending.append((self.now, role, ready_now))
            self.pending.append((self.now + LABEL_DELAY, role, answered - ready_now))
        still = []
        for when, role, answers in self.pending:
            if when > self.now:
                still.append((when, role, answers))
                continue
            labelled = int(rng.binomial(answers, LABEL_FRACTION))
            side = self.sides[role]
            side.labelled += labelled
            side.correct += int(rng.binomial(labelled, self.dist[role]["accuracy"]))
        self.pending = still


def previous_analyse(
    stable: Any, canary: Any, policy: Any, step_seconds: float, accuracy: str = "optional"
) -> Any:
    """The analysis before the sequential tests: fixed-sample tests at every look, and
    accuracy never holding a step (`accuracy` is ignored, as it was)."""
    from scipy.stats import chi2_contingency, norm

    from flywheel.rollout import analysis

    c, failed = policy.checks, []
    allowed = stable.error_rate + c.max_error_rate_increase
    if (
        canary.requests >= policy.min_requests_to_fail
        and canary.errors >= c.min_errors
        and canary.error_rate > allowed
    ):
        failed.append("error rate")
    latency = analysis._latency(stable, canary, policy)
    if latency.status == "fail":
        failed.append("latency p99")
    scored = min(sum(stable.scores), sum(canary.scores))
    if scored >= policy.min_requests:
        columns = [(x, y) for x, y in zip(stable.scores, canary.scores, strict=True) if x + y]
        p = float(chi2_contingency([[x for x, _ in columns], [y for _, y in columns]]).pvalue)
        if (
            analysis.js_distance(stable.scores, canary.scores) > c.max_divergence
            and p < c.divergence_significance
        ):
            failed.append("prediction divergence")
    if min(canary.labelled, stable.labelled) >= c.min_labelled:
        pc, ps = canary.correct / canary.labelled, stable.correct / stable.labelled
        se = math.sqrt(pc * (1 - pc) / canary.labelled + ps * (1 - ps) / stable.labelled)
        floor = ps - c.max_accuracy_drop
        p = float(norm.sf((floor - pc) / se)) if se else float(pc >= floor)
        if pc < floor and p < c.accuracy_significance:
            failed.append("accuracy")
    if failed:
        return analysis.Verdict(action="rollback", reason=f"{failed[0]}: breach", checks=())
    if (
        canary.requests < policy.min_requests
        or latency.status == "pending"
        or scored < policy.min_requests
    ):
        action = "rollback" if step_seconds > policy.step_timeout_seconds else "wait"
        return analysis.Verdict(action=action, reason="too little traffic: timeout", checks=())
    return analysis.Verdict(action="advance", reason="every check passed", checks=())


ANALYSES = {"now": "sequential", "before": "fixed-sample at every look"}


def _canary(calibration: dict[str, Any], kind: str) -> dict[str, Any]:
    """A kind's measured distribution; `EDGE` is the healthy one moved to the policy's
    tolerances (one more error in a hundred, five points less accuracy)."""
    if kind != EDGE:
        return dict(calibration[kind])
    from flywheel.config import load_settings

    checks = load_settings(REPO / "flywheel.yaml", env={}).rollout.checks
    healthy = calibration["healthy"]
    return {
        **healthy,
        "error_rate": healthy["error_rate"] + checks.max_error_rate_increase,
        "accuracy": healthy["accuracy"] - checks.max_accuracy_drop,
    }


def simulate(
    calibration: dict[str, Any], kind: str, seed: int, work: Path, peer: str
) -> dict[str, Any]:
    """One rollout of a canary of `kind`; what was decided, why, and when."""
    from flywheel.config import load_settings
    from flywheel.registry import Registry
    from flywheel.rollout import controller as controller_module
    from flywheel.rollout.analysis import analyse
    from flywheel.rollout.controller import RolloutController
    from flywheel.storage import LocalStore

    policy = load_settings(REPO / "flywheel.yaml", env={}).rollout
    registry = Registry(LocalStore(work / f"{peer}-{kind}-{seed}"), "m")
    for tag in "ab":
        registry.register({"model.joblib": tag.encode()}, run_id=tag)
    registry.move_alias("production", "v1", expected=None, reason="first")
    driver = CalibratedDriver(calibration, kind, np.random.default_rng(seed))

    def sleep(seconds: float) -> None:
        driver.now += seconds

    controller = RolloutController(registry, driver, policy, clock=lambda: driver.now, sleep=sleep)
    controller_module.analyse = analyse if peer == "now" else previous_analyse  # type: ignore[assignment]
    try:
        controller.start("v2")
        state = controller.run()
    finally:
        controller_module.analyse = analyse
    first = driver.first_canary_request or 0.0
    return {
        "phase": state.phase,
        "reason": state.reason,
        "seconds": driver.now - first,
        "check": state.reason.split(":", 1)[0],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=50, help="simulated rollouts per kind")
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

    policy = load_settings(REPO / "flywheel.yaml", env={}).rollout
    print(
        "SIMULATION of the canary analysis (the real controller and analyse on drawn "
        f"windows), not of the servers: {args.rollouts} rollouts per kind at {RPS:g} req/s, "
        f"steps {[s.weight for s in policy.steps]} (accuracy required at "
        f"{[s.weight for s in policy.steps if s.accuracy == 'required']}), a look every "
        f"{policy.interval_seconds:g}s; canaries drawn from the real local loop's measurements "
        f"at {calibration['weight']}% ({CALIBRATION.name})",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-sim-"))
    started = time.monotonic()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        for peer in ANALYSES:
            results[peer] = {
                kind: [
                    simulate(calibration, kind, seed, work, peer) for seed in range(args.rollouts)
                ]
                for kind in (*KINDS, EDGE)
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started

    figures = {peer: _figures(runs) for peer, runs in results.items()}
    print(
        f"\n{'canary':12} {'measured as (at ' + str(calibration['weight']) + '%)':35} {'goal':>7}"
        + "".join(f" | {ANALYSES[p][:26]:>26} {'median s':>8}" for p in ANALYSES)
        + f" | {'now: caught by':>22}"
    )
    for kind in (*KINDS, EDGE):
        d = _canary(calibration, kind)
        what = f"err {d['error_rate']:.1%}, p50 {_quantile(d, 0.5):.0f} ms, acc {d['accuracy']:.0%}"
        goal = {"healthy": "<= 2%", EDGE: "-"}.get(kind, ">= 98%")
        row = f"{kind:12} {what:35} {goal:>7}"
        for peer in ANALYSES:
            f = figures[peer][kind]
            median = "-" if f["median_s"] is None else f"{f['median_s']:.1f}"
            row += f" | {f['rolled_back']:>20.0%} back {median:>8}"
        row += f" | {figures['now'][kind]['caught_by']:>22}"
        print(row)
    now, before = figures["now"], figures["before"]
    summary: dict[str, Any] = {
        "simulation": "analysis only: the real controller and analyse on drawn windows",
        "rollouts_per_kind": args.rollouts,
        "rps": RPS,
        "false_rollback_rate": now["healthy"]["rolled_back"],
        **{f"detection_rate_{k}": now[k]["rolled_back"] for k in KINDS[1:]},
        **{f"median_seconds_to_rollback_{k}": now[k]["median_s"] for k in KINDS[1:]},
        "median_seconds_to_rollback": _median_faulty(results["now"]),
        "median_seconds_to_promote_healthy": now["healthy"]["median_promoted_s"],
        "rollback_rate_at_tolerance": now[EDGE]["rolled_back"],
        "before": {
            "false_rollback_rate": before["healthy"]["rolled_back"],
            "rollback_rate_at_tolerance": before[EDGE]["rolled_back"],
            **{f"detection_rate_{k}": before[k]["rolled_back"] for k in KINDS[1:]},
            "median_seconds_to_rollback": _median_faulty(results["before"]),
        },
    }
    print(
        f"\nfaulty canaries, every kind: median {summary['median_seconds_to_rollback']:.1f}s "
        f"from the first canary request to the rollback (before: "
        f"{summary['before']['median_seconds_to_rollback']:.1f}s; goal <= 15 s); healthy ones "
        f"promoted in a median {summary['median_seconds_to_promote_healthy']:.0f}s; "
        f"{len(ANALYSES) * (len(KINDS) + 1) * args.rollouts} rollouts simulated in {elapsed:.0f}s"
    )
    goals = {
        "false rollbacks <= 2%": summary["false_rollback_rate"] <= 0.02,
        **{f"{k} detected >= 98%": summary[f"detection_rate_{k}"] >= 0.98 for k in KINDS[1:]},
        "median time to rollback <= 15 s": summary["median_seconds_to_rollback"] <= 15,
    }
    print(
        "goals (now): " + ", ".join(f"{g} {'met' if ok else 'MISSED'}" for g, ok in goals.items())
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rollout.json").write_text(
        json.dumps({"summary": summary, "runs": results}, indent=2)
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def _figures(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out = {}
    for kind, rollouts in runs.items():
        back = [r for r in rollouts if r["phase"] == "rolled_back"]
        checks = [r["check"] for r in back]
        promoted = [r["seconds"] for r in rollouts if r["phase"] == "promoted"]
        out[kind] = {
            "rolled_back": round(len(back) / len(rollouts), 4),
            "median_s": round(statistics.median(r["seconds"] for r in back), 1) if back else None,
            "caught_by": max(set(checks), key=checks.count) if checks else "-",
            "median_promoted_s": round(statistics.median(promoted), 1) if promoted else None,
        }
    return out


def _median_faulty(runs: dict[str, list[dict[str, Any]]]) -> float:
    times = [r["seconds"] for k in KINDS[1:] for r in runs[k] if r["phase"] == "rolled_back"]
    return round(statistics.median(times), 1) if times else math.inf


def _quantile(d: dict[str, Any], q: float) -> float:
    seen, bounds = 0.0, d["latency_bounds_ms"]
    for bound, share in zip(bounds, d["latency"], strict=True):
        seen += share
        if seen >= q:
            return float(bound)
    return float(bounds[-2])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
