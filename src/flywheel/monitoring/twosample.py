"""Two-sample statistics a look needs on every window, computed as scipy.stats computes them
but without importing it: `import scipy.stats` builds the docstrings of every distribution
and test, about a second of one core, which was a third of a re-look at a million rows a day.

Each function here gives scipy.stats's answer to rounding (`tests/unit/monitoring/
test_twosample.py` compares them over every branch). Where scipy takes a path not carried
here (an exact Smirnov p-value for samples of at most 10,000 rows, Durbin's matrix for a
KS statistic near zero), scipy.stats is imported and asked.

The Kolmogorov-Smirnov code follows scipy 1.17's `scipy.stats._ksstats` (Simard and
L'Ecuyer, 2011), BSD-3-Clause, Copyright (c) 2001-2002 Enthought, Inc. 2003, SciPy Developers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

# scipy.stats.ks_2samp's method="auto" is exact up to this many rows in the larger sample.
EXACT_MAX_ROWS = 10_000
_SQRT2PI = math.sqrt(2 * math.pi)
_SQRT3 = math.sqrt(3)
_PI_SQUARED = math.pi**2
_PI_FOUR = math.pi**4
_PI_SIX = math.pi**6
_MIN_LOG = -708


def average_ranks(values: npt.ArrayLike) -> Floats:
    """Ranks from 1, ties given their mean rank (scipy.stats.rankdata's default); all NaN
    when a value is NaN, as rankdata propagates it."""
    x = np.asarray(values, dtype=float).ravel()
    if np.isnan(x).any():
        return np.full(len(x), np.nan)
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    bounds = np.r_[starts, len(x)]
    # A run of ties at sorted places start..end-1 shares ranks start+1..end: their mean.
    mean = 0.5 * (bounds[:-1] + 1 + bounds[1:])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean, np.diff(bounds))
    return ranks


def wasserstein(u: npt.ArrayLike, v: npt.ArrayLike) -> float:
    """The Wasserstein-1 distance between two samples' empirical distributions."""
    a, b = np.sort(np.asarray(u, dtype=float)), np.sort(np.asarray(v, dtype=float))
    both = np.concatenate((a, b))
    both.sort(kind="mergesort")
    deltas = np.diff(both)
    u_cdf = a.searchsorted(both[:-1], "right") / a.size
    v_cdf = b.searchsorted(both[:-1], "right") / b.size
    return float(np.abs(u_cdf - v_cdf) @ deltas)


def ks_2samp(data1: npt.ArrayLike, data2: npt.ArrayLike) -> tuple[float, float]:
    """The two-sided two-sample Kolmogorov-Smirnov test (statistic, p-value) of two samples
    without NaN, as scipy.stats.ks_2samp gives it with its defaults."""
    a = np.sort(np.asarray(data1, dtype=float))
    b = np.sort(np.asarray(data2, dtype=float))
    n1, n2 = len(a), len(b)
    if min(n1, n2) == 0:
        raise ValueError("Data passed to ks_2samp must not be empty")
    if max(n1, n2) <= EXACT_MAX_ROWS:  # scipy's exact p-value: ask it for the whole test
        return _scipy_ks_2samp(a, b)
    both = np.concatenate([a, b])
    differences = (
        np.searchsorted(a, both, side="right") / n1 - np.searchsorted(b, both, side="right") / n2
    )
    below = float(np.clip(-differences.min(), 0, 1))
    above = float(differences.max())
    d = below if below > above else above
    m, n = sorted([float(n1), float(n2)], reverse=True)
    p = _kolmogorov_sf(int(np.round(m * n / (m + n))), d)
    if p is None:
        return _scipy_ks_2samp(a, b)
    return d, float(np.clip(p, 0, 1))


def _scipy_ks_2samp(a: Floats, b: Floats) -> tuple[float, float]:
    from scipy import stats

    result: Any = stats.ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def _kolmogorov_sf(n: int, x: float) -> float | None:
    """P(D_n > x) for the one-sample two-sided KS statistic of n rows, as scipy.stats.kstwo.sf
    computes it for n above 140, or None on the branches it takes that are not carried here."""
    if n <= 140:
        return None
    if x <= 0.5 / n:
        return 1.0
    if x >= 1.0:
        return 0.0
    t = n * x
    if t <= 1.0:  # Ruben and Gambino's exact form, not carried here
        return None
    if t >= n - 1:
        return float(np.clip(2 * (1.0 - x) ** n, 0.0, 1.0))
    from scipy.special import smirnov

    if x >= 0.5:
        return float(np.clip(2 * smirnov(n, x), 0.0, 1.0))
    nx_squared = t * x
    if nx_squared >= 370.0:
        return 0.0
    if nx_squared >= 2.2:
        return float(np.clip(2 * smirnov(n, x), 0.0, 1.0))
    if n <= 100_000 and n * x**1.5 <= 1.4:  # Durbin's matrix, not carried here
        return None
    return float(np.clip(1.0 - _pelz_good_cdf(n, x), 0.0, 1.0))


def _pelz_good_cdf(n: int, x: float) -> float:
    """Pelz and Good's (1976) approximation to P(D_n <= x), 0 < x < 1."""
    z = np.sqrt(n) * x
    zsquared, zthree, zfour, zsix = z**2, z**3, z**4, z**6
    qlog = -_PI_SQUARED / 8 / zsquared
    if qlog < _MIN_LOG:
        return 0.0
    q = np.exp(qlog)
    k1a = -zsquared
    k1b = _PI_SQUARED / 4
    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16
    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * z**8
    terms = np.zeros(4)
    # Horner's scheme over the odd integers for the sums c_i q^(i^2).
    maxk = int(np.ceil(16 * z / np.pi))
    for k in range(maxk, 0, -1):
        m = 2 * k - 1
        msquared, mfour, msix = m**2, m**4, m**6
        qpower = np.power(q, 8 * k)
        coefficients = np.array(
            [
                1.0,
                k1a + k1b * msquared,
                k2a + k2b * msquared + k2c * mfour,
                k3a + k3b * msquared + k3c * mfour + k3d * msix,
            ]
        )
        terms *= qpower
        terms += coefficients
    terms *= q
    terms *= _SQRT2PI
    terms /= np.array([z, 6 * zfour, 72 * z**7, 6480 * z**10])
    # The other sums, over every integer k, computed directly.
    q = np.exp(-_PI_SQUARED / 2 / zsquared)
    ks = np.arange(maxk, 0, -1)
    ksquared = ks**2
    sqrt3z = _SQRT3 * z
    kspi = np.pi * ks
    qpowers = q**ksquared
    k2extra = np.sum(ksquared * qpowers)
    k2extra *= _PI_SQUARED * _SQRT2PI / (-36 * zthree)
    terms[2] += k2extra
    k3extra = np.sum((sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpowers)
    k3extra *= _PI_SQUARED * _SQRT2PI / (216 * zsix)
    terms[3] += k3extra
    terms /= np.power(n * 1.0, np.arange(len(terms)) / 2.0)
    return float(sum(terms))
