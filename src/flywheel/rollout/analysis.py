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

What is compared follows the task: the score distributions of a binary classifier (P of
the positive class), every class's probability of a multiclass one (the largest distance
over the classes), the predicted values of a regression on the fixed bins of the
contract's label profile; and on labels, a classifier's accuracy, a regression's mean
absolute error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field

from flywheel.config import AccuracyPolicy, RolloutSettings, Task
from flywheel.records import Record
from flywheel.rollout import confidence
from flywheel.serving.metrics import SCORE_BUCKETS

# The checks of every step, which share the rollout's false-rollback budget; the last is the
# task's check on labels (LABEL_CHECKS).
CHECKS = ("error rate", "latency p99", "prediction divergence", "accuracy")
LABEL_CHECKS: dict[Task, str] = {
    "binary": "accuracy",
    "multiclass": "accuracy",
    "regression": "mean absolute error",
}
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
    # Answered rows by bucket: a binary classifier's P(positive), a regression's predicted
    # value in the label profile's bins; a multiclass one's P(class) under each class name.
    scores: tuple[int, ...] = Field(default=(0,) * SCORE_BUCKETS)
    class_scores: dict[str, tuple[int, ...]] = Field(default={})
    labelled: int = 0
    correct: int = 0
    # A regression's labelled rows by absolute error (serving.metrics.ERROR_BOUNDS), and the
    # sums of their absolute and squared errors.
    label_errors: tuple[int, ...] = ()
    abs_error_sum: float = 0.0
    squared_error_sum: float = 0.0

    @property
    def error_rate(self) -> float:
        """Share of requests that failed on the server side."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def accuracy(self) -> float | None:
        """Share of labelled predictions that were right."""
        return self.correct / self.labelled if self.labelled else None

    @property
    def mean_absolute_error(self) -> float | None:
        """A regression's mean absolute error on its labelled predictions."""
        return self.abs_error_sum / self.labelled if self.labelled else None

    def histograms(self) -> dict[str, tuple[int, ...]]:
        """The answer histograms: each class's for multiclass, else the one of `scores`."""
        return dict(self.class_scores) if self.class_scores else {"": self.scores}

    @property
    def scored(self) -> int:
        """Answered rows in the histograms (a multiclass row is in each class's)."""
        return max((sum(h) for h in self.histograms().values()), default=0)

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
    (the check on labels takes none under `rollout.accuracy: off`)."""
    checks = len(CHECKS) - (1 if policy.accuracy == "off" else 0)
    return policy.checks.false_rollback_rate / (checks * len(policy.steps))


def analyse(
    stable: Window,
    canary: Window,
    policy: RolloutSettings,
    step_seconds: float,
    accuracy: AccuracyPolicy = "optional",
    task: Task = "binary",
) -> Verdict:
    """Compare the canary with the stable model over the current step.

    `accuracy` is the step's policy for the task's check on labels (accuracy, or a
    regression's mean absolute error): `required` waits for labels (until the step's
    timeout), `optional` lets the step pass without them, and says so; `off`
    (`rollout.accuracy: off`) never judges it, and every verdict says so.
    """
    level = check_level(policy)
    name = LABEL_CHECKS[task]
    if accuracy == "off":
        on_labels = _label_check_off(name)
    elif task == "regression":
        on_labels = _mean_absolute_error(stable, canary, policy, level)
    else:
        on_labels = _accuracy(stable, canary, policy, level)
    checks = [
        _error_rate(stable, canary, policy, level),
        _latency(stable, canary, policy, level),
        _divergence(stable, canary, policy, level, task),
        on_labels,
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
    pending = [ch for ch in checks if ch.status == "pending" and ch is not on_labels]
    if pending:
        names = ", ".join(ch.name for ch in pending)
        return _undecided(
            timed_out,
            checks,
            rollback=f"{names} still undecided after {step_seconds:.0f}s: "
            + "; ".join(ch.detail for ch in pending),
            wait=f"{names}: not decided yet",
        )
    acc = on_labels
    if accuracy == "off":
        return Verdict(
            action="advance",
            reason=f"every check passed; {name} {acc.detail}",
            checks=tuple(checks),
        )
    if acc.status == "pending":
        if accuracy == "required":
            return _undecided(
                timed_out,
                checks,
                rollback=f"{name} is required at this step and was not checked in "
                f"{step_seconds:.0f}s: {acc.detail}",
                wait=f"{name} is required at this step: {acc.detail}",
            )
        unchecked = min(canary.labelled, stable.labelled) < policy.checks.min_labelled
        why = f"{'not checked' if unchecked else 'not decided'} (optional at this step)"
        skipped = acc.model_copy(update={"status": "skipped", "detail": f"{why}: {acc.detail}"})
        return Verdict(
            action="advance",
            reason=f"every check passed but {name}, {why}: {acc.detail}",
            checks=tuple(skipped if ch is acc else ch for ch in checks),
        )
    return Verdict(action="advance", reason="every check passed", checks=tuple(checks))


def _label_check_off(name: str) -> Check:
    return Check(
        name=name,
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


def _divergence(
    stable: Window, canary: Window, policy: RolloutSettings, alpha: float, task: Task = "binary"
) -> Check:
    """A lower confidence bound on the Jensen-Shannon distance between the two answer
    distributions, against the tolerated distance: for multiclass, the largest over the
    classes, each class's bound at an equal share of `alpha`."""
    c = policy.checks
    pairs = paired_histograms(stable, canary)
    each = alpha / len(pairs)
    distances = {name: js_distance(a, b) for name, (a, b) in pairs.items()}
    widest = max(distances, key=distances.__getitem__)
    divergence = distances[widest]
    scored_canary, scored_stable = canary.scored, stable.scored
    # The bound is below the measured distance: only a measured breach can be a sure one.
    least = max(
        (
            js_lower_bound(a, b, each)
            for name, (a, b) in pairs.items()
            if distances[name] > c.max_divergence
        ),
        default=0.0,
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
    what = {
        "binary": "score distributions",
        "multiclass": f"class probability distributions (largest: {widest})",
        "regression": "prediction distributions on the label's bins",
    }[task]
    return Check(
        name="prediction divergence",
        measured=divergence,
        threshold=c.max_divergence,
        status=status,
        detail=f"Jensen-Shannon distance {divergence:.3f} between {what}, "
        f"surely at least {least:.3f} ({scored_canary} canary, {scored_stable} stable "
        f"predictions); rollback once surely above {c.max_divergence:g}",
    )


def paired_histograms(
    stable: Window, canary: Window
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each answer histogram of both sides, of one length. A class one side never answers
    (a class set changed between versions) is a probability of 0 on each of its rows."""
    mine, theirs = stable.histograms(), canary.histograms()
    if stable.class_scores or canary.class_scores:
        # multiclass: a side with no answers yet has no class histograms, not a binary one
        mine, theirs = dict(stable.class_scores), dict(canary.class_scores)
    width = max(len(h) for h in (*mine.values(), *theirs.values()))

    def padded(histograms: dict[str, tuple[int, ...]], name: str, rows: int) -> tuple[int, ...]:
        found = histograms.get(name)
        if found is None:
            return (rows, *(0,) * (width - 1))
        return (*found, *(0,) * (width - len(found)))

    names = dict.fromkeys([*mine, *theirs])
    return {
        name: (padded(mine, name, stable.scored), padded(theirs, name, canary.scored))
        for name in names
    }


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
    return _judged(
        "accuracy",
        canary.accuracy,
        (stable.accuracy or 0.0) - c.max_accuracy_drop,
        fails,
        passes,
        detail if labelled else f"{detail}; {counts}",
    )


def _mean_absolute_error(
    stable: Window, canary: Window, policy: RolloutSettings, alpha: float
) -> Check:
    """A regression's mean absolute error on labelled requests against stable's times
    1 + `max_mae_increase`: each side's confidence sequence at `alpha` / 2
    (confidence.mean_bounds), from the sums its error histogram carries. Passing takes
    `min_labelled` labels each; as the sequences are asymptotic, a breach counts on
    `min_requests_to_fail` labels each."""
    c = policy.checks
    name = LABEL_CHECKS["regression"]
    counts = (
        f"{canary.labelled} canary and {stable.labelled} stable labels so far; "
        f"{c.min_labelled} each are needed"
    )
    limit = 1 + c.max_mae_increase
    stable_mae, canary_mae = stable.mean_absolute_error, canary.mean_absolute_error
    if canary_mae is None or stable_mae is None:
        return Check(
            name=name,
            measured=canary_mae,
            threshold=None if stable_mae is None else stable_mae * limit,
            status="pending",
            detail=counts,
        )
    half = alpha / 2
    low, high = confidence.mean_bounds(
        canary.abs_error_sum, canary.squared_error_sum, canary.labelled, half, c.min_labelled
    )
    stable_low, stable_high = confidence.mean_bounds(
        stable.abs_error_sum, stable.squared_error_sum, stable.labelled, half, c.min_labelled
    )
    fewest = min(canary.labelled, stable.labelled)
    fails = low > limit * stable_high and fewest >= policy.min_requests_to_fail
    labelled = fewest >= c.min_labelled
    passes = labelled and high <= (limit + c.detect_mae_increase) * max(stable_low, 0.0)
    detail = (
        f"canary {canary_mae:.4g} on {canary.labelled} labels (within {max(low, 0.0):.4g}.."
        f"{high:.4g}), stable {stable_mae:.4g} on {stable.labelled} (within "
        f"{max(stable_low, 0.0):.4g}..{stable_high:.4g}); rollback once shown more than "
        f"{c.max_mae_increase:.0%} above stable's, pass once shown less than "
        f"{c.max_mae_increase + c.detect_mae_increase:.0%} above: "
        + _two_sample(fails, passes, alpha)
    )
    return _judged(
        name,
        canary_mae,
        stable_mae * limit,
        fails,
        passes,
        detail if labelled else f"{detail}; {counts}",
    )


def _judged(
    name: str, measured: float | None, threshold: float, fails: bool, passes: bool, detail: str
) -> Check:
    """A check on labels once both sides have some: failed, passed or still pending."""
    return Check(
        name=name,
        measured=measured,
        threshold=threshold,
        status="fail" if fails else "pass" if passes else "pending",
        detail=detail,
    )


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"
