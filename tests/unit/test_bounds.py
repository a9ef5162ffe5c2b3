"""The binomial bounds of the contract's checks, against known distributions: healthy batches
drawn from the reference's own distribution are blocked at most at the stated rate, at every
batch size, and a broken batch is blocked at every size."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import beta, binom

from flywheel.bounds import (
    Bound,
    balance_bounds,
    check_level,
    exceedance_bound,
    null_bound,
    range_bound,
    share_bound,
    unseen_bound,
)
from flywheel.config import ContractSettings

DEFAULTS = ContractSettings()
SIZES = (20, 81, 300, 1_000, 10_000, 1_000_000)
BATCHES = 2_000
# The default per-check level with the shipped configuration's 9 features, and a loose one
# at which a miscalibrated bound would show in 2,000 batches.
LEVELS = (check_level(DEFAULTS.false_block_rate, 9), 0.1)


def at_most(level: float) -> float:
    """The highest false-block rate 2,000 batches may show when the true one is `level`:
    three binomial standard errors above it."""
    return level + 3 * math.sqrt(level * (1 - level) / BATCHES)


@pytest.mark.parametrize("rows", SIZES)
@pytest.mark.parametrize("rate", [1e-4, 0.01, 0.2])
def test_the_limit_is_the_binomial_quantile_that_keeps_a_healthy_batch_under_the_level(
    rows: int, rate: float
) -> None:
    level = 0.001
    bound = exceedance_bound(rows, rate, level)
    # more than the limit is rarer than the level; more than one fewer is not
    assert binom.sf(bound.limit, rows, rate) < level
    assert bound.limit == 0 or binom.sf(bound.limit - 1, rows, rate) >= level
    assert not bound.blocks(bound.limit) and bound.blocks(bound.limit + 1)


@pytest.mark.parametrize(("count", "rows"), [(0, 20), (3, 81), (500, 10_000), (9_999, 10_000)])
def test_a_shares_rate_is_the_upper_end_of_its_clopper_pearson_interval(
    count: int, rows: int
) -> None:
    level = 0.002
    bound = share_bound(1_000, count, rows, 0.0, level)
    assert bound.rate == float(beta.isf(level / 2, count + 1, rows - count))
    assert bound.level == level / 2


def test_a_rate_of_zero_allows_nothing_and_a_rate_of_one_everything() -> None:
    assert exceedance_bound(81, 0.0, 0.01).limit == 0
    assert exceedance_bound(81, 1.0, 0.01).limit == 81
    assert exceedance_bound(0, 0.5, 0.01).limit == 0


def test_the_batch_rate_is_split_evenly_over_two_checks_a_feature() -> None:
    assert check_level(0.01, 30) * 2 * 30 == pytest.approx(0.01)


def test_the_issues_small_batch_passes_and_a_broken_one_fails_at_any_size() -> None:
    # given the issue's dataset: 30 features, a range profiled from 486 rows, 1% allowed
    level = check_level(DEFAULTS.false_block_rate, 30)
    allowed = DEFAULTS.max_out_of_range_fraction
    # then one value outside in 81 rows (1.2%) passes
    assert not range_bound(81, 486, allowed, level).blocks(1)
    # and a tenth of the values outside fails at 81 rows and at 100,000
    assert range_bound(81, 486, allowed, level).blocks(8)
    assert range_bound(100_000, 486, allowed, level).blocks(10_000)
    # and at 100,000 rows 1.2% outside a 1% allowance is no noise: it still fails
    assert range_bound(100_000, 486, allowed, level).blocks(1_200)


def test_a_small_reference_allows_what_its_size_cannot_rule_out() -> None:
    # a range from 50 values is left by a new one 2/51 of the time, above a 1% allowance
    assert range_bound(1_000, 50, 0.01, 0.01).rate == pytest.approx(2 / 51)
    # no nulls in 100 rows cannot rule out a few percent; in 100,000 it can
    assert null_bound(1_000, 0, 100, 0.0, 0.01).rate > 0.05
    assert null_bound(1_000, 0, 100_000, 0.0, 0.01).rate < 1e-4


@pytest.mark.parametrize("level", LEVELS)
def test_healthy_batches_of_a_heavy_tailed_feature_stay_in_range_at_the_stated_rate(
    level: float,
) -> None:
    # given a Pareto(1.5) feature (the tail that made one value in 81 rows leave a range
    # profiled from 486), a reference redrawn for every batch, and the default slack
    rng = np.random.default_rng(22)
    m, alpha = 486, 1.5
    references = rng.pareto(alpha, (BATCHES, m)) + 1
    low, high = references.min(axis=1), references.max(axis=1)
    slack = DEFAULTS.range_tolerance * (high - low)
    # a healthy value leaves the widened range with probability P(X > high + slack)
    outside = (high + slack) ** -alpha
    for rows in SIZES:
        counts = rng.binomial(rows, outside)
        bound = range_bound(rows, m, DEFAULTS.max_out_of_range_fraction, level)
        blocked = np.mean([bound.blocks(int(k)) for k in counts])
        # then the range check blocks them at most at the level, at every size
        assert blocked <= at_most(level), (rows, blocked)
        if rows == 81:
            # where the fraction alone blocked about one batch in ten, on this feature alone
            fraction = np.mean(counts / rows > DEFAULTS.max_out_of_range_fraction)
            assert fraction > 0.05


def _blocked(
    reference: np.ndarray, counts: np.ndarray, blocks: dict[int, Callable[[int], bool]]
) -> float:
    """The share of batches blocked, each batch's count judged by its own reference's bound."""
    pairs = zip(reference.tolist(), counts.tolist(), strict=True)
    return float(np.mean([blocks[x](k) for x, k in pairs]))


def _either(bounds: tuple[Bound, Bound], rows: int) -> Callable[[int], bool]:
    """Whether a count of a class in `rows` labels is too many or too few for its bounds."""
    more, fewer = bounds
    return lambda k: more.blocks(k) or fewer.blocks(rows - k)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("null_rate", [0.0, 0.002, 0.1, 0.5])
def test_healthy_batches_keep_the_references_null_rate_at_the_stated_rate(
    level: float, null_rate: float
) -> None:
    # given a reference of 486 rows redrawn for every batch, and no rise allowed at all (the
    # bound's own margin for the reference's size is all that is left)
    rng = np.random.default_rng(22)
    m = 486
    reference = rng.binomial(m, null_rate, BATCHES)
    for rows in SIZES:
        counts = rng.binomial(rows, null_rate, BATCHES)
        bounds = {x: null_bound(rows, x, m, 0.0, level).blocks for x in set(reference.tolist())}
        blocked = _blocked(reference, counts, bounds)
        # then the null-rate check blocks them at most at the level, at every size
        assert blocked <= at_most(level), (rows, blocked)


def test_a_null_rate_above_the_allowed_rise_fails_at_81_rows_and_at_100000() -> None:
    level = check_level(DEFAULTS.false_block_rate, 9)
    allowed = DEFAULTS.null_rate_tolerance
    # a reference of 4,000 rows without nulls, batches with 30% of them
    assert null_bound(81, 0, 4_000, allowed, level).blocks(24)
    assert null_bound(100_000, 0, 4_000, allowed, level).blocks(30_000)
    # a stray null or two in 81 rows passes
    assert not null_bound(81, 0, 4_000, allowed, level).blocks(2)


def _categories(kind: str) -> np.ndarray:
    if kind == "geometric":  # a long tail of ever rarer categories
        weights = 0.7 ** np.arange(60)
    elif kind == "uniform":  # 50 equally common ones
        weights = np.ones(50)
    else:  # one category just rare enough to go unseen in 486 rows now and then
        weights = np.array([1 - 6 / 486, 6 / 486])
    return np.asarray(weights / weights.sum(), dtype=np.float64)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", ["geometric", "uniform", "one rare"])
def test_healthy_batches_show_few_enough_unseen_categories_at_the_stated_rate(
    level: float, kind: str
) -> None:
    # given a reference of 486 rows redrawn for every batch
    rng = np.random.default_rng(22)
    m, shares = 486, _categories(kind)
    references = rng.multinomial(m, shares, BATCHES)
    unseen = ((references == 0) * shares).sum(axis=1)
    singletons, doubletons = (references == 1).sum(axis=1), (references == 2).sum(axis=1)
    for rows in SIZES:
        # a healthy batch's values are unseen with the probability the reference missed
        counts = rng.binomial(rows, unseen)
        tails = list(zip(singletons.tolist(), doubletons.tolist(), strict=True))
        bounds = {tail: unseen_bound(rows, *tail, m, level) for tail in set(tails)}
        blocked = np.mean(
            [bounds[tail].blocks(k) for tail, k in zip(tails, counts.tolist(), strict=True)]
        )
        # then the category check blocks them at most at the level, at every size
        assert blocked <= at_most(level), (rows, blocked)


def test_a_new_category_fails_at_81_rows_and_a_stray_value_passes() -> None:
    # given a reference of 4,000 rows whose categories are all common
    level = check_level(DEFAULTS.false_block_rate, 9)
    # then a new channel in 15% of the rows fails at 81 rows and at 100,000
    assert unseen_bound(81, 0, 0, 4_000, level).blocks(12)
    assert unseen_bound(100_000, 0, 0, 4_000, level).blocks(15_000)
    # and one stray value does not
    assert not unseen_bound(81, 0, 0, 4_000, level).blocks(1)


def test_a_blocking_label_balance_takes_one_more_share_of_the_rate() -> None:
    assert check_level(0.01, 9, balance=True) * (2 * 9 + 1) == pytest.approx(0.01)
    assert check_level(0.01, 9, balance=False) == check_level(0.01, 9)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("share", [0.02, 0.3, 0.5])
def test_healthy_batches_keep_a_class_share_within_both_bounds_at_the_stated_rate(
    level: float, share: float
) -> None:
    # given a reference of 486 rows redrawn for every batch, the class `share` of its labels
    rng = np.random.default_rng(22)
    reference = rng.binomial(486, share, BATCHES)
    for rows in SIZES:
        counts = rng.binomial(rows, share, BATCHES)
        seen = set(reference.tolist())
        bounds = {x: _either(balance_bounds(rows, x, 486, level), rows) for x in seen}
        blocked = _blocked(reference, counts, bounds)
        # then too many or too few of the class are found at most at the level, at every size
        assert blocked <= at_most(level), (rows, blocked)


def test_a_class_share_that_moved_fails_on_either_side_and_noise_passes() -> None:
    level = check_level(DEFAULTS.false_block_rate, 9, balance=True)
    more, fewer = balance_bounds(300, 1_200, 4_000, level)  # 30% of 4,000 reference labels
    assert more.blocks(180) and fewer.blocks(300 - 30)  # 60% and 10% of 300
    assert not more.blocks(105) and not fewer.blocks(300 - 75)  # 35% and 25%
    # each side holds the batch to half of its half of the level; the reference's to the rest
    assert more.level == fewer.level == pytest.approx(level / 4)
    assert more == share_bound(300, 1_200, 4_000, 0.0, level / 2)
