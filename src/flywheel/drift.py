"""Drift and skew statistics: PSI against a stored profile, KS between two samples."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Floor for empty bins, so that PSI stays finite (the usual choice in the literature).
_EPSILON = 1e-4


def quantile_edges(values: pd.Series, bins: int) -> list[float]:
    """Inner bin edges at the reference quantiles (duplicates dropped for discrete data)."""
    import pandas as pd

    clean = pd.to_numeric(values, errors="coerce").dropna()
    if clean.empty:
        return []
    qs = np.quantile(clean.to_numpy(dtype=float), np.linspace(0, 1, bins + 1)[1:-1])
    return sorted({float(q) for q in qs})


def bin_fractions(values: pd.Series, edges: Sequence[float]) -> list[float]:
    """Share of non-null values in each bin: (-inf, e0], (e0, e1], ..., (en, inf)."""
    import pandas as pd

    clean = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    counts = np.bincount(np.searchsorted(edges, clean, side="left"), minlength=len(edges) + 1)
    total = counts.sum()
    return [float(c) / total for c in counts] if total else [0.0] * (len(edges) + 1)


def category_fractions(values: pd.Series) -> dict[str, float]:
    """Share of each non-null category."""
    return {
        str(k): float(v)
        for k, v in values.dropna().astype(str).value_counts(normalize=True).items()
    }


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index between two distributions over the same bins."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, _EPSILON), max(a, _EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def categorical_psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """PSI over the union of categories; unseen ones count against the epsilon floor."""
    keys = sorted(set(expected) | set(actual))
    return psi([expected.get(k, 0.0) for k in keys], [actual.get(k, 0.0) for k in keys])


def ks_statistic(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    import pandas as pd
    from scipy.stats import ks_2samp

    a = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(dtype=float)
    b = pd.to_numeric(current, errors="coerce").dropna().to_numpy(dtype=float)
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)
