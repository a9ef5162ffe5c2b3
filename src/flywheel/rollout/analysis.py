"""Canary analysis: compare the canary with the stable model over one traffic step.

Pure functions over measurements, so that recorded metric sequences can be
replayed in tests. A check can fail early, on little traffic, when the evidence
is already clear (errors, latency); a step can only pass on `min_requests`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.config import RolloutSettings
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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Frozen):
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


def homogeneity_p_value(a: Sequence[int], b: Sequence[int]) -> float:
    """Chi-square test that two histograms come from one distribution (1.0 when untestable)."""
    from scipy.stats import chi2_contingency

    columns = [(x, y) for x, y in zip(a, b, strict=True) if x + y > 0]
    if len(columns) < 2 or not sum(a) or not sum(b):
        return 1.0
    table = [[x for x, _ in columns], [y for _, y in columns]]
    return float(chi2_contingency(table).pvalue)


def shortfall_p_value(canary: Window, stable: Window, margin: float) -> float:
    """One-sided two-proportion z-test that the canary's accuracy is below the stable
    model's minus `margin` (small p: it really is)."""
    from scipy.stats import norm

    if not canary.labelled or not stable.labelled:
        return 1.0
    pc, ps = canary.correct / canary.labelled, stable.correct / stable.labelled
    se = math.sqrt(pc * (1 - pc) / canary.labelled + ps * (1 - ps) / stable.labelled)
    if se == 0:
        return 0.0 if pc < ps - margin else 1.0
    return float(norm.sf(((ps - margin) - pc) / se))


class Check(_Frozen):
    """One comparison of the canary with the stable model."""

    name: str
    measured: float | None
    threshold: float
    status: Literal["pass", "fail", "pending"]
    detail: str


class Verdict(_Frozen):
    """What to do after this look at the step."""

    action: Literal["advance", "rollback", "wait"]
    reason: str
    checks: tuple[Check, ...]


def analyse(
    stable: Window, canary: Window, policy: RolloutSettings, step_seconds: float
) -> Verdict:
    """Compare the canary with the stable model over the current step."""
    c = policy.checks
    enough_to_fail = canary.requests >= policy.min_requests_to_fail
    enough_to_pass = canary.requests >= policy.min_requests
    checks: list[Check] = []

    allowed = stable.error_rate + c.max_error_rate_increase
    breach = canary.error_rate > allowed and canary.errors >= c.min_errors
    checks.append(
        Check(
            name="error rate",
            measured=canary.error_rate,
            threshold=allowed,
            status="fail"
            if breach and enough_to_fail
            else ("pass" if enough_to_pass else "pending"),
            detail=f"canary {canary.errors}/{canary.requests} failed ({canary.error_rate:.2%}); "
            f"stable {stable.error_rate:.2%}; allowed {allowed:.2%}",
        )
    )

    canary_p99, stable_p99 = canary.quantile_ms(0.99), stable.quantile_ms(0.99)
    canary_p50, stable_p50 = canary.quantile_ms(0.5), stable.quantile_ms(0.5)
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
    checks.append(
        Check(
            name="latency p99",
            measured=canary_p99,
            threshold=limit,
            status=status,
            detail=f"canary p99 {_ms(canary_p99)} (p50 {_ms(canary_p50)}), stable p99 {_ms(stable_p99)} "
            f"(p50 {_ms(stable_p50)}), limit {limit:.1f} ms ({c.max_p99_ratio}x stable, at least {c.p99_floor_ms:g} ms)",
        )
    )

    divergence = js_distance(stable.scores, canary.scores)
    scored = min(sum(stable.scores), sum(canary.scores))
    p_value = homogeneity_p_value(stable.scores, canary.scores)
    if scored < policy.min_requests:
        status = "pending"
    else:
        # Both an effect (the distance) and evidence that it is not sampling noise.
        status = (
            "fail"
            if divergence > c.max_divergence and p_value < c.divergence_significance
            else "pass"
        )
    checks.append(
        Check(
            name="prediction divergence",
            measured=divergence,
            threshold=c.max_divergence,
            status=status,
            detail=f"Jensen-Shannon distance {divergence:.3f} between score distributions "
            f"({sum(canary.scores)} canary, {sum(stable.scores)} stable predictions, "
            f"chi-square p={p_value:.2g})",
        )
    )

    if min(canary.labelled, stable.labelled) < c.min_labelled:
        checks.append(
            Check(
                name="accuracy",
                measured=canary.accuracy,
                threshold=c.max_accuracy_drop,
                status="pending",
                detail=f"{canary.labelled} canary and {stable.labelled} stable labels so far; "
                f"{c.min_labelled} each are needed",
            )
        )
    else:
        floor = (stable.accuracy or 0.0) - c.max_accuracy_drop
        p_value = shortfall_p_value(canary, stable, c.max_accuracy_drop)
        # Below the floor by chance is common with a few hundred labels: the shortfall
        # must also be significant, or the step goes on collecting labels.
        below = (canary.accuracy or 0.0) < floor
        status = "pass" if not below else "fail" if p_value < c.accuracy_significance else "pending"
        checks.append(
            Check(
                name="accuracy",
                measured=canary.accuracy,
                threshold=floor,
                status=status,
                detail=f"canary {canary.accuracy:.2%} on {canary.labelled} labels, stable "
                f"{stable.accuracy:.2%} on {stable.labelled}; floor {floor:.2%}"
                + (f", one-sided p={p_value:.2g}" if below else ""),
            )
        )

    failed = [ch for ch in checks if ch.status == "fail"]
    if failed:
        return Verdict(
            action="rollback",
            reason="; ".join(f"{ch.name}: {ch.detail}" for ch in failed),
            checks=tuple(checks),
        )
    if not enough_to_pass or any(ch.status == "pending" for ch in checks if ch.name != "accuracy"):
        if step_seconds > policy.step_timeout_seconds:
            return Verdict(
                action="rollback",
                reason=f"only {canary.requests} canary requests in {step_seconds:.0f}s; "
                f"{policy.min_requests} are needed to judge the step",
                checks=tuple(checks),
            )
        return Verdict(
            action="wait",
            reason=f"{canary.requests}/{policy.min_requests} canary requests so far",
            checks=tuple(checks),
        )
    return Verdict(action="advance", reason="every check passed", checks=tuple(checks))


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"
