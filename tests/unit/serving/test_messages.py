"""The Seldon messages beyond a request's rows: the rounded answer."""

from __future__ import annotations

import numpy as np

from flywheel.serving.messages import rounded


def test_a_few_rows_are_rounded_as_numpy_rounds_them() -> None:
    # given probabilities with ties at the sixth decimal, signed zeros, tiny and huge
    # values, infinities and NaN, and many random ones
    edges = [0.0, -0.0, 1.0, 0.5, 2.5e-6, 3.5e-6, 0.1234565, -1e-9, 1e-300, 1e300, 7e9]
    edges += [np.inf, -np.inf, np.nan, np.nextafter(0.5e-6, 1), np.nextafter(0.5e-6, 0)]
    values = np.concatenate([edges, np.random.default_rng(3).random(20_000)])
    # when they are rounded a row of two at a time, then the answer is numpy's, bit for bit
    for pair in values.reshape(-1, 2):
        got = np.array(rounded(pair[None, :]))
        assert np.array_equal(got, pair[None, :].round(6), equal_nan=True), pair
        assert np.array_equal(np.signbit(got), np.signbit(pair[None, :].round(6))), pair
