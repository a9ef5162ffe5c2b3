"""The most exceedances a healthy batch may have: the binomial bounds of the contract's range,
null-rate, category and label-balance checks.

Each of those checks counts the rows of a batch that exceed the reference (a value outside
its range, a null, a category it never saw) and blocks the batch only when so many are
improbable for a healthy batch of its size: when a batch of `rows` rows, each exceeding with
probability `rate`, has more with probability below `level`. A fraction alone would block
one stray value in 81 rows as readily as a thousand in 100,000.

`rate` also answers for the reference's size. A range profiled from m values is exceeded by
a new value of the same distribution with probability 2/(m+1) before its slack; a null rate
or a share of unseen categories estimated from m rows is taken at the upper end of what those
rows allow, at half the check's level (the other half is the batch's). A class's share of
the label is bounded the same way, on each side. A batch's `false_block_rate` is split evenly
over its checks (Bonferroni), so a healthy batch is blocked by any of them with probability at
most that rate.
"""

from __future__ import annotations

import functools
import math

from flywheel.records import Record


class Bound(Record):
    """At most `limit` of `rows` may exceed: a healthy batch, each of its rows exceeding with
    probability `rate`, has more with probability below `level`."""

    rows: int
    rate: float
    level: float
    limit: int

    def blocks(self, count: int) -> bool:
        """True when `count` exceedances are too many for a healthy batch."""
        return count > self.limit

    def describe(self, what: str) -> str:
        """The bound in words: `at most 5 of 81 outside [0, 1] (at 1.00% a row, more has p <
        0.00056)`."""
        return (
            f"at most {self.limit} of {self.rows} {what} "
            f"(at {self.rate:.2%} a row, more has p < {self.level:.2g})"
        )


def check_level(false_block_rate: float, features: int, balance: bool = False) -> float:
    """Each check's share of a batch's false-block rate: two bounded checks per feature (its
    null rate, and its range or its unseen categories), and one more for the label's balance
    when it blocks (`balance`)."""
    return false_block_rate / (2 * max(features, 1) + balance)


# A check_batch over many features, or a simulation, asks for the same few bounds again.
@functools.lru_cache(maxsize=4096)
def exceedance_bound(rows: int, rate: float, level: float) -> Bound:
    """The fewest exceedances `limit` such that a batch of `rows` rows, each exceeding with
    probability `rate`, has more than `limit` with probability below `level`."""
    from scipy.special import bdtrc  # binom.sf, without scipy.stats's second of import

    rate = min(max(rate, 0.0), 1.0)
    if rows <= 0 or rate >= 1.0:
        limit = max(rows, 0)
    elif rate <= 0.0:
        limit = 0
    else:
        # The smallest limit whose chance of being exceeded, P(X > limit), is below level:
        # that chance falls as the limit rises, and is 0 at `rows`.
        low, limit = 0, rows
        while low < limit:
            middle = (low + limit) // 2
            if bdtrc(middle, rows, rate) < level:
                limit = middle
            else:
                low = middle + 1
    return Bound(rows=max(rows, 0), rate=rate, level=level, limit=limit)


def range_bound(rows: int, reference_rows: int, allowed: float, level: float) -> Bound:
    """How many of `rows` non-null values may fall outside a range profiled from
    `reference_rows` values: rows exceed at the `allowed` rate, or at 2/(m+1), the chance that
    a new value falls outside the min..max of m exchangeable ones, when that is higher."""
    floor = 2.0 / (reference_rows + 1) if reference_rows > 0 else 1.0
    return exceedance_bound(rows, max(allowed, floor), level)


def share_bound(
    rows: int, reference_count: int, reference_rows: int, allowed: float, level: float
) -> Bound:
    """How many of `rows` may have a trait that `reference_count` of `reference_rows` had:
    rows have it at the reference's rate at the upper end of its one-sided Clopper-Pearson
    interval at level/2, plus the `allowed` rise, and the batch is held to the other half."""
    from scipy.special import betainccinv  # beta.isf

    half = level / 2
    upper = (
        float(betainccinv(reference_count + 1, reference_rows - reference_count, half))
        if reference_count < reference_rows
        else 1.0
    )
    return exceedance_bound(rows, upper + allowed, half)


def null_bound(
    rows: int, reference_nulls: int, reference_rows: int, allowed: float, level: float
) -> Bound:
    """How many of `rows` values may be null when `reference_nulls` of `reference_rows` were,
    with the `allowed` rise (`share_bound`)."""
    return share_bound(rows, reference_nulls, reference_rows, allowed, level)


def balance_bounds(
    rows: int, reference_count: int, reference_rows: int, level: float
) -> tuple[Bound, Bound]:
    """How many of `rows` labels may be of a class that `reference_count` of `reference_rows`
    were, and how many may be of the others: a two-sided test of the class's share, each side
    at level/2 (`share_bound`, nothing allowed: the tolerance is the check's effect size)."""
    return (
        share_bound(rows, reference_count, reference_rows, 0.0, level / 2),
        share_bound(rows, reference_rows - reference_count, reference_rows, 0.0, level / 2),
    )


def unseen_bound(
    rows: int, singletons: int, doubletons: int, reference_rows: int, level: float
) -> Bound:
    """How many of `rows` non-null values may be categories that `reference_rows` values never
    showed, of which `singletons` categories were seen once and `doubletons` twice.

    Rows are unseen at Good-Turing's estimate of the unseen share, N1/m, plus a Bernstein-type
    deviation (sqrt(2t(N1 + 2 N2)) + t)/m, t = ln(m / (d ln(1/d))) with d = level/2. With
    N1 = 0 that is t/m: there are at most m/t categories with a share of t/m or more, each
    unseen in m rows with probability at most exp(-t), so one of them is with probability
    about d. The batch is held to the other half of the level.
    """
    half = level / 2
    if reference_rows <= 0:
        return exceedance_bound(rows, 1.0, half)
    t = math.log(reference_rows / (half * math.log(1 / half)))
    deviation = math.sqrt(2 * t * (singletons + 2 * doubletons)) + t
    return exceedance_bound(rows, (singletons + deviation) / reference_rows, half)
