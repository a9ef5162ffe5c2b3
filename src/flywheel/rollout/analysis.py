"""Canary analysis: compare the canary with the stable model over one traffic step.

Pure functions over measurements, so that recorded metric sequences can be
replayed in tests. A check can fail early, on little traffic, when the evidence
is already clear; a step can only pass on `min_requests`.

The controller looks every interval, so the error-rate, accuracy and divergence
checks are sequential tests: a likelihood ratio that is a martingale when the
canary is fine, against the bound 1/alpha. By Ville's inequality the chance that
it ever crosses is at most alpha, however many looks there are (docs/serving.md,
"Sequential tests").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field

from flywheel.config import AccuracyPolicy, RolloutSettings
from flywheel.records import Record
from flywheel.serving.metrics import SCORE_BUCKETS

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
    p = [x / total_a for x in a]
    q = [x / total_b for x in b]
    m = [(x + y) / 2 for x, y in zip(p, q, strict=True)]

    def kl(x: list[float], y: list[float]) -> float:
        return sum(xi * math.log2(xi / yi) for xi, yi in zip(x, y, strict=True) if xi > 0)

    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


# Wald's type II error at the alternative: a check passes on evidence, with 80% power.
BETA = 0.2
_TINY = 1e-9


def sprt_log_ratio(bad: int, n: int, p0: float, p1: float) -> float:
    """Wald's log likelihood ratio of a bad-event rate p1 against p0 after `bad` of `n` trials."""
    p0 = min(max(p0, _TINY), 1 - _TINY)
    p1 = min(max(p1, _TINY), 1 - _TINY)
    if p1 <= p0:
        return -math.inf  # nothing worse than allowed is possible: never evidence of harm
    return bad * math.log(p1 / p0) + (n - bad) * math.log((1 - p1) / (1 - p0))


def sprt_bounds(alpha: float, beta: float = BETA) -> tuple[float, float]:
    """(pass, fail) thresholds of a log likelihood ratio.

    Fail at log(1/alpha): Ville's inequality bounds the false alarms of any number
    of looks by alpha (Wald's (1-beta)/alpha is an approximation, and smaller).
    Pass at Wald's log(beta/(1-alpha)).
    """
    return math.log(beta / (1 - alpha)), math.log(1 / alpha)


def _log_kt(counts: Sequence[int]) -> float:
    """Log probability of counts in a given order under a Dirichlet(1/2) mixture of
    categorical distributions (the Krichevsky-Trofimov estimator)."""
    k = len(counts)
    return (
        math.lgamma(k / 2)
        - k * math.lgamma(0.5)
        + sum(math.lgamma(x + 0.5) for x in counts)
        - math.lgamma(sum(counts) + k / 2)
    )


def homogeneity_log_ratio(a: Sequence[int], b: Sequence[int]) -> float:
    """Log Bayes factor of two histograms drawn from two distributions against one shared
    distribution, each a Dirichlet(1/2) mixture: both samples' noise is accounted for."""
    if not sum(a) or not sum(b):
        return 0.0
    return _log_kt(a) + _log_kt(b) - _log_kt([x + y for x, y in zip(a, b, strict=True)])


class Check(Record):
    """One comparison of the canary with the stable model."""

    name: str
    measured: float | None
    threshold: float
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
    checks = [
        _error_rate(stable, canary, policy),
        _latency(stable, canary, policy),
        _divergence(stable, canary, policy),
        _accuracy(stable, canary, policy) if accuracy != "off" else _ACCURACY_OFF,
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
    threshold=0.0,
    status="skipped",
    detail="not checked: off by policy (rollout.accuracy: off)",
)


def _sprt_detail(llr: float, alpha: float) -> str:
    accept, reject = sprt_bounds(alpha)
    value = "-inf" if math.isinf(llr) else f"{llr:.2f}"
    return f"log-likelihood ratio {value} (rollback at {reject:.2f}, pass at {accept:.2f})"


def _error_rate(stable: Window, canary: Window, policy: RolloutSettings) -> Check:
    """Wald's SPRT of the canary's error rate: allowed (stable's plus the margin) or worse."""
    c = policy.checks
    allowed = stable.error_rate + c.max_error_rate_increase
    llr = sprt_log_ratio(
        canary.errors, canary.requests, allowed, allowed + c.detect_error_rate_increase
    )
    accept, reject = sprt_bounds(c.error_significance)
    if (
        llr >= reject
        and canary.requests >= policy.min_requests_to_fail
        and canary.errors >= c.min_errors
    ):
        status = "fail"
    elif canary.requests >= policy.min_requests and llr <= accept:
        status = "pass"
    else:
        status = "pending"
    return Check(
        name="error rate",
        measured=canary.error_rate,
        threshold=allowed,
        status=status,
        detail=f"canary {canary.errors}/{canary.requests} failed ({canary.error_rate:.2%}); "
        f"stable {stable.error_rate:.2%}; allowed {allowed:.2%}; "
        + _sprt_detail(llr, c.error_significance),
    )


def _latency(stable: Window, canary: Window, policy: RolloutSettings) -> Check:
    """The canary's p99 against stable's, corroborated by the median on little traffic."""
    c = policy.checks
    enough_to_fail = canary.requests >= policy.min_requests_to_fail
    enough_to_pass = canary.requests >= policy.min_requests
    canary_p99, stable_p99 = canary.quantile_ms(0.99), stable.quantile_ms(0.99)
    canary_p50, stable_p50 = canary.quantile_ms(0.5), stable.quantile_ms(0.5)
    status: Literal["pass", "fail", "pending"]
    if canary_p99 is None:
        status, limit = "pending", c.p99_floor_ms
    else:
        limit = max(c.p99_floor_ms, (stable_p99 or 0.0) * c.max_p99_ratio)
        # A p99 of a few dozen requests is mostly its slowest one: on so
        # little traffic a breach must show in the median too before it counts.
        median_too = (canary_p50 or 0.0) > max(
            c.p99_floor_ms, (stable_p50 or 0.0) * c.max_p99_ratio
        )
        if canary_p99 > limit and (canary.requests >= c.min_requests_for_p99 or median_too):
            status = "fail" if enough_to_fail else "pending"
        else:
            status = "pass" if enough_to_pass else "pending"
    return Check(
        name="latency p99",
        measured=canary_p99,
        threshold=limit,
        status=status,
        detail=f"canary p99 {_ms(canary_p99)} (p50 {_ms(canary_p50)}), stable p99 {_ms(stable_p99)} "
        f"(p50 {_ms(stable_p50)}), limit {limit:.1f} ms ({c.max_p99_ratio}x stable, at least {c.p99_floor_ms:g} ms)",
    )


def _divergence(stable: Window, canary: Window, policy: RolloutSettings) -> Check:
    """Both an effect (the Jensen-Shannon distance) and sequential evidence that it is
    not sampling noise (a Bayes factor of two score distributions against one)."""
    c = policy.checks
    divergence = js_distance(stable.scores, canary.scores)
    scored_canary, scored_stable = sum(canary.scores), sum(stable.scores)
    llr = homogeneity_log_ratio(stable.scores, canary.scores)
    reject = math.log(1 / c.divergence_significance)
    if (
        divergence > c.max_divergence
        and llr >= reject
        and min(scored_canary, scored_stable) >= policy.min_requests_to_fail
    ):
        status = "fail"
    elif min(scored_canary, scored_stable) >= policy.min_requests:
        status = "pass"
    else:
        status = "pending"
    return Check(
        name="prediction divergence",
        measured=divergence,
        threshold=c.max_divergence,
        status=status,
        detail=f"Jensen-Shannon distance {divergence:.3f} between score distributions "
        f"({scored_canary} canary, {scored_stable} stable predictions, "
        f"log Bayes factor {llr:.1f}, rollback at {reject:.1f})",
    )


def _accuracy(stable: Window, canary: Window, policy: RolloutSettings) -> Check:
    """Wald's SPRT of the canary's misses on labelled requests: at the floor (stable's
    accuracy minus the margin) or worse. Passing takes `min_labelled` labels each."""
    c = policy.checks
    counts = (
        f"{canary.labelled} canary and {stable.labelled} stable labels so far; "
        f"{c.min_labelled} each are needed"
    )
    if stable.labelled < c.min_labelled or not canary.labelled:
        # Without a well-measured yardstick there is no floor to hold the canary to.
        return Check(
            name="accuracy",
            measured=canary.accuracy,
            threshold=c.max_accuracy_drop,
            status="pending",
            detail=counts,
        )
    floor = (stable.accuracy or 0.0) - c.max_accuracy_drop
    allowed_misses = 1 - floor
    llr = sprt_log_ratio(
        canary.labelled - canary.correct,
        canary.labelled,
        allowed_misses,
        allowed_misses + c.detect_accuracy_drop,
    )
    accept, reject = sprt_bounds(c.accuracy_significance)
    if llr >= reject:
        status: Literal["pass", "fail", "pending"] = "fail"
    elif canary.labelled >= c.min_labelled and llr <= accept:
        status = "pass"
    else:
        status = "pending"
    detail = (
        f"canary {canary.accuracy:.2%} on {canary.labelled} labels, stable "
        f"{stable.accuracy:.2%} on {stable.labelled}; floor {floor:.2%}; "
        + _sprt_detail(llr, c.accuracy_significance)
    )
    if status == "pending" and canary.labelled < c.min_labelled:
        detail += f"; {c.min_labelled} canary labels are needed to pass"
    return Check(
        name="accuracy", measured=canary.accuracy, threshold=floor, status=status, detail=detail
    )


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"
