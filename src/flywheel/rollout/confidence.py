"""Anytime-valid tests and confidence sequences for proportions, from counts alone.

A look at a canary step sees counts aggregated over the step so far (requests and
errors, labels and right answers, requests per latency or score bucket), never the
order they came in. Everything here rests on the beta-binomial mixture martingale,
which depends on the counts alone: under the true proportion it is a non-negative
martingale with mean 1, so by Ville's inequality the chance that it ever reaches
1/alpha is at most alpha, however many looks there are and whenever they come.
docs/serving.md, "What each check guarantees", says how the checks use them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Prior = tuple[float, float]
# Beta(1/2, 1/2) (Jeffreys, the Krichevsky-Trofimov estimator): for proportions anywhere.
JEFFREYS: Prior = (0.5, 0.5)
# Beta(1/20, 1): for shares of a percent or so (requests above a latency bound), where
# it proves a share small on a third fewer requests than Jeffreys'.
RARE: Prior = (0.05, 1.0)
_ITERATIONS = 50  # bisection steps: to within 2**-50


class _Mixture:
    """The log mixture martingale of fixed counts, as a function of the proportion."""

    def __init__(self, successes: int, n: int, prior: Prior) -> None:
        if not 0 <= successes <= n:
            raise ValueError(f"{successes} successes in {n} trials")
        a, b = prior
        self.successes, self.failures = successes, n - successes
        self.mixture = _log_beta(a + successes, b + self.failures) - _log_beta(a, b)

    def at(self, p: float) -> float:
        if p <= 0.0:
            return self.mixture if self.successes == 0 else math.inf
        if p >= 1.0:
            return self.mixture if self.failures == 0 else math.inf
        return self.mixture - self.successes * math.log(p) - self.failures * math.log1p(-p)


def log_mixture(successes: int, n: int, p: float, prior: Prior = JEFFREYS) -> float:
    """Log of the beta-binomial mixture martingale at `p` after `successes` in `n` trials:
    the mixture's probability of the counts (in any one order) over `p`'s."""
    return _Mixture(successes, n, prior).at(p)


def surely_above(successes: int, n: int, p: float, alpha: float, prior: Prior = JEFFREYS) -> bool:
    """Whether the proportion is shown above `p`: the (1 - alpha) confidence sequence lies
    wholly above it. A true proportion of `p` or less is shown above it with chance alpha."""
    return successes > p * n and log_mixture(successes, n, p, prior) >= math.log(1 / alpha)


def surely_below(successes: int, n: int, p: float, alpha: float, prior: Prior = JEFFREYS) -> bool:
    """Whether the proportion is shown below `p` (the mirror of `surely_above`)."""
    return successes < p * n and log_mixture(successes, n, p, prior) >= math.log(1 / alpha)


def bounds(successes: int, n: int, alpha: float, prior: Prior = JEFFREYS) -> tuple[float, float]:
    """The (1 - alpha) confidence sequence's interval after `successes` in `n` trials:
    every proportion whose mixture martingale is below 1/alpha.

    The log mixture is convex in p, least at successes / n where it is at most 0 (a
    mixture never beats the best fit): each end is the one root on its side. For a
    fixed n each end moves up with `successes` (for priors with a, b <= 1, as here).
    """
    if n == 0:
        return 0.0, 1.0
    mixture, level = _Mixture(successes, n, prior), math.log(1 / alpha)
    centre = successes / n
    lower = 0.0 if successes == 0 else _edge(mixture, level, 0.0, centre)
    upper = 1.0 if successes == n else _edge(mixture, level, 1.0, centre)
    return lower, upper


def _edge(mixture: _Mixture, level: float, outside: float, inside: float) -> float:
    """Bisect between a point outside the sequence and one inside it; return the last
    point found outside, so that the interval is never narrower than the sequence's."""
    for _ in range(_ITERATIONS):
        middle = (outside + inside) / 2
        if mixture.at(middle) >= level:
            outside = middle
        else:
            inside = middle
    return outside


def exceeds(first: tuple[int, int], second: tuple[int, int], margin: float, alpha: float) -> bool:
    """Whether the first sample's proportion is shown above the second's plus `margin`,
    from the (successes, trials) of two independent samples, neither proportion known.

    Three confidence sets, each at alpha / 3, for the second proportion t: the second
    sample's own sequence; the values of t at which the first sample is not shown above
    t + margin; and the same for both samples' mixtures together (the product of two
    mixture martingales is one). The first is shown above when no t is in all three.
    If it is not above (first <= second + margin), the true second proportion is in all
    three but with chance alpha at most, at every look at once (Ville's inequality).
    The joint set decides soonest on little traffic, the separate ones on much: a
    mixture's cost grows, slowly, with its sample.
    """
    if margin >= 1.0 or margin <= -1.0:
        return margin <= -1.0  # the hypothesis always holds, or never can
    (k1, n1), (k2, n2) = first, second
    one, two = _Mixture(k1, n1, JEFFREYS), _Mixture(k2, n2, JEFFREYS)
    fit1, fit2 = k1 / n1 if n1 else 0.0, k2 / n2 if n2 else 0.0
    low, high = max(0.0, -margin), min(1.0, 1.0 - margin)
    level = math.log(3 / alpha)

    def against(t: float) -> float:
        # The first sample's evidence against first <= t + margin: its least mixture
        # value over that range (flat once the range holds its best fit).
        return one.at(min(t + margin, fit1))

    def joint_slope(t: float) -> float:
        return _slope(k2, n2, t) + (_slope(k1, n1, t + margin) if t + margin < fit1 else 0.0)

    own = _sublevel(two.at, (min(max(fit2, low), high),) * 2, low, high, level)
    shifted = _sublevel(against, (high, high), low, high, level)
    joint = _sublevel(
        lambda t: two.at(t) + against(t),
        _argmin(joint_slope, low, high),
        low,
        high,
        level,
        joint_slope,
    )
    if own is None or shifted is None or joint is None:
        return True
    return max(own[0], shifted[0], joint[0]) >= min(own[1], shifted[1], joint[1])


def mean_bounds(
    total: float, squares: float, n: int, alpha: float, planned: int
) -> tuple[float, float]:
    """A (1 - alpha) confidence sequence for the mean of values (absolute errors), from
    their sum, their sum of squares and their count: Robbins' normal mixture with the
    sample's variance, tuned to be tightest at `planned` values.

    Unlike the proportions' sequences it is asymptotic (Waudby-Smith et al., "Time-uniform
    central limit theory", 2021): it holds its level as the count grows, not exactly on a
    few values, so a check on it counts a breach only on enough of them.
    """
    if n == 0:
        return -math.inf, math.inf
    mean = total / n
    variance = max(squares / n - mean * mean, 0.0)
    level = -2 * math.log(alpha)
    tuning = (level + math.log(level + 1)) / max(planned, 1)  # rho^2 * variance
    grown = n * tuning + 1
    width = math.sqrt(variance * 2 * grown / tuning * math.log(math.sqrt(grown) / alpha)) / n
    return mean - width, mean + width


def _argmin(slope: Callable[[float], float], low: float, high: float) -> tuple[float, float]:
    """A bracket of the least point of a convex function on [low, high], from its slope."""
    for _ in range(_ITERATIONS):
        middle = (low + high) / 2
        if slope(middle) < 0:
            low = middle
        else:
            high = middle
    return low, high


def _sublevel(
    f: Callable[[float], float],
    least: tuple[float, float],
    low: float,
    high: float,
    level: float,
    slope: Callable[[float], float] | None = None,
) -> tuple[float, float] | None:
    """Where a convex function is below `level` on [low, high], given a bracket of its
    least point: an interval, never narrower than the true one, or None if empty."""
    a, b = least
    value = min(f(a), f(b))
    if value >= level and slope is not None:
        # The least may sit between the bracket's ends: bound it by the tangents there.
        width = b - a
        ends = (f(a) + min(0.0, slope(a)) * width, f(b) - max(0.0, slope(b)) * width)
        value = max((end for end in ends if not math.isnan(end)), default=-math.inf)
    if value >= level:
        return None
    inside = a if f(a) < level else b if f(b) < level else a
    return _crossing(f, low, inside, level), _crossing(f, high, inside, level)


def _crossing(f: Callable[[float], float], end: float, inside: float, level: float) -> float:
    """Between an end of the range and a point inside the set, the set's edge: the last
    point found outside it (or the end itself, if it is inside)."""
    if f(end) < level:
        return end
    outside = end
    for _ in range(_ITERATIONS):
        middle = (outside + inside) / 2
        if f(middle) >= level:
            outside = middle
        else:
            inside = middle
    return outside


def _slope(successes: int, n: int, p: float) -> float:
    """The derivative in p of the log mixture martingale (of minus the log likelihood)."""
    failures = n - successes
    if p <= 0.0:
        return -math.inf if successes else float(failures)
    if p >= 1.0:
        return math.inf if failures else -float(successes)
    return -successes / p + failures / (1 - p)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
