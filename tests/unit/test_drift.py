"""Drift statistics: quantile bins, PSI with its epsilon floor, categorical PSI and KS."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flywheel import drift


def test_edges_sit_at_the_reference_quantiles() -> None:
    assert drift.quantile_edges(pd.Series(range(1, 101)), 4) == [25.75, 50.5, 75.25]


def test_edges_of_discrete_data_drop_duplicates_and_empty_data_has_none() -> None:
    # given two values only, ten bins cannot be told apart: the repeated quantiles collapse
    assert drift.quantile_edges(pd.Series([1] * 50 + [2] * 50), 10) == [1.0, 1.5, 2.0]
    assert drift.quantile_edges(pd.Series(["text", None]), 4) == []


def test_bin_fractions_close_each_bin_on_the_right_and_ignore_non_numbers() -> None:
    # given the bins (-inf, 2], (2, 3], (3, inf) and values with text and a null among them
    values = pd.Series([1, 2, 3, 4, "x", None], dtype=object)
    # then the shares are of the four numbers only
    assert drift.bin_fractions(values, [2, 3]) == [0.5, 0.25, 0.25]
    assert drift.bin_fractions(pd.Series([None, None]), [2, 3]) == [0.0, 0.0, 0.0]


def test_category_fractions_leave_nulls_out() -> None:
    fractions = drift.category_fractions(pd.Series(["a", "a", "b", None]))
    assert fractions == pytest.approx({"a": 2 / 3, "b": 1 / 3})


def test_psi_matches_its_definition_and_stays_finite_for_empty_bins() -> None:
    # sum (actual - expected) * ln(actual / expected)
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5)
    )
    # An emptied bin counts as 1e-4, not zero, so the index does not become infinite.
    assert drift.psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * 0.9999 * math.log(1e4))
    with pytest.raises(ValueError, match="zip"):
        drift.psi([0.5, 0.5], [1.0])


def test_psi_is_zero_for_identical_and_grows_with_shift() -> None:
    rng = np.random.default_rng(0)
    a = pd.Series(rng.normal(0, 1, 5000))
    edges = drift.quantile_edges(a, 10)
    same = drift.psi(drift.bin_fractions(a, edges), drift.bin_fractions(a, edges))
    small = drift.psi(drift.bin_fractions(a, edges), drift.bin_fractions(a + 0.1, edges))
    large = drift.psi(drift.bin_fractions(a, edges), drift.bin_fractions(a + 1.0, edges))
    assert same == 0 and 0 < small < 0.1 < large


def test_categorical_psi_counts_unseen_categories_against_the_floor() -> None:
    expected = {"north": 0.5, "south": 0.5}
    assert drift.categorical_psi(expected, dict(expected)) == 0
    # a new category in the batch is compared over the union of categories
    actual = {"north": 0.4, "south": 0.4, "mobile": 0.2}
    assert drift.categorical_psi(expected, actual) == pytest.approx(
        drift.psi([0.0, 0.5, 0.5], [0.2, 0.4, 0.4])
    )
    assert drift.categorical_psi(expected, actual) > 0.5


def test_ks_is_zero_for_the_same_sample_one_for_disjoint_and_nan_for_none() -> None:
    assert drift.ks_statistic(pd.Series([1, 2, 3]), pd.Series([3, 2, 1])) == (0.0, 1.0)
    statistic, p_value = drift.ks_statistic(pd.Series([1, 2, 3]), pd.Series([10, 11, 12]))
    assert statistic == 1.0 and p_value == pytest.approx(0.1)
    empty = drift.ks_statistic(pd.Series([1, 2]), pd.Series(["text", None], dtype=object))
    assert all(math.isnan(v) for v in empty)
