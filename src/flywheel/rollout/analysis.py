"""Canary analysis: compare the canary with the stable model over one traffic step.

Pure functions over measurements, so that recorded metric sequences can be
replayed in tests. A check can fail early, on little traffic, when the evidence
is already clear; a step can only pass on `min_requests`.

The controller looks every interval and a rollout has several checks and steps, so
one budget, `checks.false_rollback_rate`, bounds the chance that a healthy canary
is rolled back at all: each (check, step) pair gets an equal share, and each check
is a test that holds its share however many looks its step takes (confidence
sequences, `flywheel.rollout.confidence`). The shares add up to the budget
(docs/serving.md, "What each check guarantees").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field

from flywheel.config import AccuracyPolicy, RolloutSettings
from flywheel.records import Record
from flywheel.rollout import confidence
from flywheel.serving.metrics import SCORE_BUCKETS

# The checks of every step, which share the rollout's false-rollback budget.
CHECKS = ("error rate", "latency p99", "prediction divergence", "accuracy")
P99 = 0.01  # the share of requests above a p99

# Upper bounds of the latency histogram, in milliseconds (the last is +inf).
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    0.5,
    1,
    2,
    3,
    4,
    5,
    7.5,
    10,
    15,
    20,
    30,
    50,
    75,
    100,
    150,
    200,
    300,
    500,
    750,
    1000,
    2000,
    5000,
    math.inf,
)


class Window(Record):
    """What one predictor did during the current step."""

    # The last latency bound is +inf: keep it as Infinity in JSON, not null.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    requests: int = 0
    errors: int = 0
    latency_bounds_ms: tuple[float, ...] = LATENCY_BOUNDS_MS
    latency_counts: tuple[int, ...] = Field(default=(0,) * len(LATENCY_BOUNDS_MS))
    scores: tuple[int, ...] = Field(default=(0,) * SCORE_BUCKETS)
    labelled: int = 0
    correct: int = 0

    @property
    def error_rate(self) -> float:
        """Share of requests that failed on the server side."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def accuracy(self) -> float | None:
        """Share of labelled predictions that were right."""
        return self.correct / self.labelled if self.labelled else None

    def quantile_ms(self, q: float) -> float | None:
        """Latency quantile, interpolated within its bucket like Prometheus' histogram_quantile."""
        total = sum(self.latency_counts)
        if total == 0:
            return None
        rank, seen, lower = q * total, 0, 0.0
        for bound, count in zip(self.latency_bounds_ms, self.latency_counts, strict=True):
            if seen + count >= rank and count:
                if math.isinf(bound):
                    return lower
                return lower + (bound - lower) * (rank - seen) / count
            seen += count
            lower = bound if not math.isinf(bound) else lower
        return lower


def js_distance(a: Sequence[int], b: Sequence[int]) -> float:
    """Jensen-Shannon distance (base 2, so within [0, 1]) between two histograms."""
    total_a, total_b = sum(a), sum(b)
    if not total_a or not total_b:
        return 0.0
    divergence = sum(_js_term(x / total_a, y / total_b) for x, y in zip(a, b, strict=True))
    return math.sqrt(max(0.0, divergence))


def _js_term(a: float, b: float) -> float:
    """One bucket's share of the Jensen-Shannon divergence (bits) between two distributions."""
    m = (a + b) / 2
    return sum(x * math.log2(x / m) for x in (a, b) if x > 0) / 2


def js_lower_bound(a: Sequence[int], b: Sequence[int], alpha: float) -> float:
    """A lower confidence bound on the Jensen-Shannon distance between the distributions
    two histograms were drawn from, holding at every look with probability 1 - alpha.

    Each bucket's share on each side has its own confidence sequence (alpha split over
    all of them); the divergence is a sum of per-bucket terms, each jointly convex and
    zero where the shares agree, so its least value over the intervals is the sum of
    each bucket's least term: that of the two facing ends where the intervals are
    apart, else 0. Dropping the constraint that shares sum to 1 only lowers the bound.
    """
    each = alpha / (2 * len(a))
    total_a, total_b = sum(a), sum(b)
    divergence = 0.0
    for x, y in zip(a, b, strict=True):
        low_a, high_a = confidence.bounds(x, total_a, each)
        low_b, high_b = confidence.bounds(y, total_b, each)
        if low_a > high_b:
            divergence += _js_term(low_a, high_b)
        elif low_b > high_a:
            divergence += _js_term(high_a, low_b)
    return math.sqrt(divergence)


class Check(Record):
    """One comparison of the canary with the stable model."""

    name: str
    measured: float | None
    # What `measured` is held to, in its units; None while there is none to state (an
    # accuracy check before stable has labels).
    threshold: float | None
    # skipped: not judged, and the step went on without it (an optional accuracy check)
    status: Literal["pass", "fail", "pending", "skipped"]
    detail: str


class Verdict(Record):
    """What to do after this look at the step."""

    action: Literal["advance", "rollback", "wait"]
    reason: str
    checks: tuple[Check, ...]


def _undecided(timed_out: bool, checks: list[Check], *, rollback: str, wait: str) -> Verdict:
    """A step that cannot be judged yet: rolled back once it has timed out, else waited on."""
    if timed_out:
        return Verdict(action="rollback", reason=rollback, checks=tuple(checks))
    return Verdict(action="wait", reason=wait, checks=tuple(checks))


def check_level(policy: RolloutSettings) -> float:
    """The false-rollback level of one check at one step: an equal share of the budget
    (accuracy takes none under `rollout.accuracy: off`)."""
    checks = len(CHECKS) - (1 if policy.accuracy == "off" else 0)
    return policy.checks.false_rollback_rate / (checks * len(policy.steps))


def analyse(
    stable: Window,
    canary: Window,
    policy: RolloutSettings,
    step_seconds: float,
    accuracy: AccuracyPolicy = "optional",
) -> Verdict:
    """Compare the canary with the stable model over the current step.

    `accuracy` is the step's policy: `required` waits for labels (until the step's
    timeout), `optional` lets the step pass without them, and says so; `off`
    (`rollout.accuracy: off`) never judges it, and every verdict says so.
    """
    level = check_level(policy)
    checks = [
        _error_rate(stable, canary, policy, level),
        _latency(stable, canary, policy, level),
        _divergence(stable, canary, policy, level),
        _accuracy(stable, canary, policy, level) if accuracy != "off" else _ACCURACY_OFF,
    ]
    failed = [ch for ch in checks if ch.status == "fail"]
    if failed:
        return Verdict(
            action="rollback",
            reason="; ".join(f"{ch.name}: {ch.detail}" for ch in failed),
            checks=tuple(checks),
        )
    timed_out = step_seconds > policy.step_timeout_seconds
    if canary.requests < policy.min_requests:
        return _undecided(
            timed_out,
            checks,
            rollback=f"only {canary.requests} canary requests in {step_seconds:.0f}s; "
            f"{policy.min_requests} are needed to judge the step",
            wait=f"{canary.requests}/{policy.min_requests} canary requests so far",
        )
    pending = [ch for ch in checks if ch.status == "pending" and ch.name != "accuracy"]
    if pending:
        names = ", ".join(ch.name for ch in pending)
        return _undecided(
            timed_out,
            checks,
            rollback=f"{names} still undecided after {step_seconds:.0f}s: "
            + "; ".join(ch.detail for ch in pending),
            wait=f"{names}: not decided yet",
        )
    (acc,) = [ch for ch in checks if ch.name == "accuracy"]
    if acc is _ACCURACY_OFF:
        return Verdict(
            action="advance",
            reason=f"every check passed; accuracy {_ACCURACY_OFF.detail}",
            checks=tuple(checks),
        )
    if acc.status == "pending":
        if accuracy == "required":
            return _undecided(
                timed_out,
                checks,
                rollback=f"accuracy is required at this step and was not checked in "
                f"{step_seconds:.0f}s: {acc.detail}",
                wait=f"accuracy is required at this step: {acc.detail}",
            )
        unchecked = min(canary.labelled, stable.labelled) < policy.checks.min_labelled
        why = f"{'not checked' if unchecked else 'not decided'} (optional at this step)"
        skipped = acc.model_copy(update={"status": "skipped", "detail": f"{why}: {acc.detail}"})
        return Verdict(
            action="advance",
            reason=f"every check passed but accuracy, {why}: {acc.detail}",
            checks=tuple(skipped if ch is acc else ch for ch in checks),
        )
    return Verdict(action="advance", reason="every check passed", checks=tuple(checks))


_ACCURACY_OFF = Check(
    name="accuracy",
    measured=None,
    threshold=None,
    status="skipped",
    detail="not checked: off by policy (rollout.accuracy: off)",
)


def _two_sample(fails: bool, passes: bool, alpha: float) -> str:
    shown = (
        "shown a breach"
        if fails
        else "shown within the pass margin"
        if passes
        else "neither shown yet"
    )
    return f"{shown} (each at level {alpha:.3g}, at every look)"


def _error_rate(stable: Window, canary: Window, policy: RolloutSettings, alpha: float) -> Check:
    """The canary's error rate against stable's plus the tolerated increase, both estimated:
    a two-sample sequential test at `alpha` (confidence.exceeds)."""
    c = policy.checks
    breach = confidence.exceeds(
        (canary.errors, canary.requests),
        (stable.errors, stable.requests),
        c.max_error_rate_increase,
        alpha,
    )
    # Within the pass margin: served requests, the other way round.
    within = confidence.exceeds(
        (canary.requests - canary.errors, canary.requests),
        (stable.requests - stable.errors, stable.requests),
        -(c.max_error_rate_increase + c.detect_error_rate_increase),
        alpha,
    )
    fails = (
        breach and canary.requests >= policy.min_requests_to_fail and canary.errors >= c.min_errors
    )
    passes = within and canary.requests >= policy.min_requests
    return Check(
        name="error rate",
        measured=canary.error_rate,
        threshold=stable.error_rate + c.max_error_rate_increase,
        status="fail" if fails else "pass" if passes else "pending",
        detail=f"canary {canary.errors}/{canary.requests} failed ({canary.error_rate:.2%}); "
        f"stable {stable.errors}/{stable.requests} ({stable.error_rate:.2%}); rollback once "
        f"shown more than {c.max_error_rate_increase:.2%} above stable's, pass once shown "
        f"less than {c.max_error_rate_increase + c.detect_error_rate_increase:.2%} above: "
        + _two_sample(fails, passes, alpha),
    )


def _latency(stable: Window, canary: Window, policy: RolloutSettings, alpha: float) -> Check:
    """The share of canary requests above a limit derived from stable's p99, each side
    a confidence sequence at alpha / 2.

    Stable's p99 is at most the first bucket bound above which its share of requests is
    surely at most 1%; a canary within tolerance has its p99 at most `max_p99_ratio`
    times that (or `p99_floor_ms`), so at most 1% of its requests above the first bucket
    bound at or over it. Both rest on one bucket each (the one just below stable's true
    p99, the one at the canary's), since a bound's count only grows as the bound falls.
    """
    c = policy.checks
    half = alpha / 2
    bounds = stable.latency_bounds_ms
    timed_stable, timed_canary = sum(stable.latency_counts), sum(canary.latency_counts)
    canary_p99, stable_p99 = canary.quantile_ms(0.99), stable.quantile_ms(0.99)
    stable_at_most = next(
        (
            bound
            for i, bound in enumerate(bounds[:-1])
            if confidence.surely_below(
                sum(stable.latency_counts[i + 1 :]), timed_stable, P99, half, confidence.RARE
            )
        ),
        None,
    )
    status: Literal["pass", "fail", "pending"] = "pending"
    if stable_at_most is None:
        limit = c.p99_floor_ms
        verdict = f"stable's p99 is not bounded yet ({timed_stable} requests)"
    else:
        wanted = max(c.p99_floor_ms, c.max_p99_ratio * stable_at_most)
        i, limit = next(
            ((i, b) for i, b in enumerate(bounds) if b >= wanted), (len(bounds) - 1, math.inf)
        )
        above = sum(canary.latency_counts[i + 1 :])
        if math.isinf(limit):
            verdict = f"no bucket bound at or above {wanted:g} ms to judge by"
            limit = wanted
        else:
            if (
                confidence.surely_above(above, timed_canary, P99, half, confidence.RARE)
                and canary.requests >= policy.min_requests_to_fail
            ):
                status = "fail"
            verdict = (
                f"{above} of {timed_canary} canary requests above {limit:g} ms "
                f"({c.max_p99_ratio:g}x stable's bound, at least {c.p99_floor_ms:g} ms); "
                "rollback once surely more than 1%"
            )
        if status != "fail" and canary.requests >= policy.min_requests:
            status = "pass"
    return Check(
        name="latency p99",
        measured=canary_p99,
        threshold=limit,
        status=status,
        detail=f"canary p99 {_ms(canary_p99)} (p50 {_ms(canary.quantile_ms(0.5))}), stable p99 "
        f"{_ms(stable_p99)}, surely at most {_ms(stable_at_most)}; {verdict}",
    )


def _divergence(stable: Window, canary: Window, policy: RolloutSettings, alpha: float) -> Check:
    """A lower confidence bound on the Jensen-Shannon distance between the two score
    distributions, against the tolerated distance."""
    c = policy.checks
    divergence = js_distance(stable.scores, canary.scores)
    scored_canary, scored_stable = sum(canary.scores), sum(stable.scores)
    # The bound is below the measured distance: only a measured breach can be a sure one.
    least = (
        js_lower_bound(stable.scores, canary.scores, alpha)
        if divergence > c.max_divergence
        else 0.0
    )
    if (
        least > c.max_divergence
        and min(scored_canary, scored_stable) >= policy.min_requests_to_fail
    ):
        status: Literal["pass", "fail", "pending"] = "fail"
    elif min(scored_canary, scored_stable) >= policy.min_requests:
        status = "pass"
    else:
        status = "pending"
    return Check(
        name="prediction divergence",
        measured=divergence,
        threshold=c.max_divergence,
        status=status,
        detail=f"Jensen-Shannon distance {divergence:.3f} between score distributions, "
        f"surely at least {least:.3f} ({scored_canary} canary, {scored_stable} stable "
        f"predictions); rollback once surely above {c.max_divergence:g}",
    )


def _accuracy(stable: Window, canary: Window, policy: RolloutSettings, alpha: float) -> Check:
    """The canary's accuracy on labelled requests against stable's less the tolerated drop,
    both estimated: a two-sample sequential test at `alpha` (confidence.exceeds). Passing
    takes `min_labelled` labels each."""
    c = policy.checks
    counts = (
        f"{canary.labelled} canary and {stable.labelled} stable labels so far; "
        f"{c.min_labelled} each are needed"
    )
    if not canary.labelled or not stable.labelled:
        return Check(
            name="accuracy",
            measured=canary.accuracy,
            # an accuracy, as once both sides have labels: none before stable has any
            threshold=None if stable.accuracy is None else stable.accuracy - c.max_accuracy_drop,
            status="pending",
            detail=counts,
        )
    fails = confidence.exceeds(
        (canary.labelled - canary.correct, canary.labelled),
        (stable.labelled - stable.correct, stable.labelled),
        c.max_accuracy_drop,
        alpha,
    )
    labelled = min(canary.labelled, stable.labelled) >= c.min_labelled
    passes = labelled and confidence.exceeds(
        (canary.correct, canary.labelled),
        (stable.correct, stable.labelled),
        -(c.max_accuracy_drop + c.detect_accuracy_drop),
        alpha,
    )
    detail = (
        f"canary {canary.accuracy:.2%} on {canary.labelled} labels, stable "
        f"{stable.accuracy:.2%} on {stable.labelled}; rollback once shown more than "
        f"{c.max_accuracy_drop:.2%} below stable's, pass once shown less than "
        f"{c.max_accuracy_drop + c.detect_accuracy_drop:.2%} below: "
        + _two_sample(fails, passes, alpha)
    )
    if not labelled:
        detail += f"; {counts}"
    return Check(
        name="accuracy",
        measured=canary.accuracy,
        threshold=(stable.accuracy or 0.0) - c.max_accuracy_drop,
        status="fail" if fails else "pass" if passes else "pending",
        detail=detail,
    )


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"
