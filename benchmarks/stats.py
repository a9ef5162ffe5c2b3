"""`make bench-stats`: every alarm of monitoring and the trigger engine against its nominal error.

A SIMULATION OF THE STATISTICS, not of the services: worlds whose truth is known by
construction, windows drawn from them, and Flywheel's own functions judging each window.

The worlds (numpy only; nothing here knows how an alarm works):

- numeric features: `age`, normal (mean 40, sd 15), and `income`, lognormal (median
  40,000, sd of the log 0.6); an effect scales the mean by 3%, 10% or 30%;
- a categorical feature, `region`, of five categories; an effect moves 5 or 20 points of
  share from the commonest to the second;
- a binary model calibrated by construction: z ~ N(0, 1), P(y = 1 | z) = score =
  sigmoid(-1 + 1.5 z). A covariate shift of z raises the mean score by 3%, 10% or 30% (for
  prediction drift), or moves z towards the decision boundary (its mean to it, its spread
  down) until the accuracy falls by 3 or 10 points; the labels still follow the scores;
- a regression world (x ~ N(0, 1), y = x + N(0, 1), predicted 0.8 x: R² 0.48) and a
  three-class one (each row's logits standard normal, one higher for its class, answered
  by their softmax; its macro F1 and AUC from 4 million rows), whose labelled rows give
  the intervals of the join of every label (R², macro F1 and macro ROC AUC) on windows of
  up to the summary's sample;
- references drawn again for every window (so a rate includes the reference's own noise):
  a feature's reference rows (2,000 and 20,000), the model's evaluation (2,000 rows, the
  default, for CBPE's calibration and the offline figure; 2,000 and 20,000 for prediction
  drift).

A window of up to the summary's sample (monitoring.sample_rows, 20,000) has every row
drawn. A larger one is what its summary holds: a uniform sample of 20,000 rows, and exact
counts on any bins asked for, the rows beyond the sample drawn multinomially on the world's
probability of each bin, so a million-row window costs what 20,000 rows do.

Each alarm is one small function in the ADAPTERS sections, the only code that calls
Flywheel (the contract's checks in a section of their own). Per alarm, reference, effect and
window size, over --windows windows (twice as many for the model's performance): the rate
it fired (false alarms with no change, power with one), or the share of 95% intervals that covered the truth (CBPE's: the window's
realised metric; the labelled interval's: the world's metric). An effect is "above an
alarm's threshold" when the alarm fires in at least 9 of 10 windows of a million rows
against a 200,000-row reference (the figure "at scale").

Goals: false alarms within 0.5-1.5x the nominal level, or at most it where the alarm is
conservative by design; 95% intervals covering 93-97% from 300 rows up and at least 93%
below (at least 93% at every size for the macro AUC's, conservative by design); power that never falls as the window grows for effects above the threshold; no
cliff between 1,000 and 1,001 rows (a change beyond Monte Carlo noise: 3 standard errors,
which is also what "at most" allows). Beside them the
contract's range, null-rate, category and label-balance checks on healthy batches: their
false-block rate.
The run ends with one JSON line of every figure; it also goes to build/bench/stats.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy import special, stats

# The adapters' imports: nothing outside the ADAPTERS sections uses them.
from flywheel import contract, drift, evaluation, validation
from flywheel.config import (
    ContractSettings,
    EstimatedPerformanceTrigger,
    FeatureSettings,
    MonitoringSettings,
    PerformanceTrigger,
)
from flywheel.monitoring import drifts, intervals, joined, performance, statistics
from flywheel.monitoring.window import CBPE_SIMULATIONS
from flywheel.problem import Problem
from flywheel.triggers import signals

REPO = Path(__file__).resolve().parents[1]
SIZES = (20, 80, 300, 1_000, 1_001, 10_000, 1_000_000)
CONTRACT_SIZES = (20, 80, 300, 1_000, 10_000)
REFERENCES = (2_000, 20_000)
CONTRACT_REFERENCES = (500, 2_000)  # the false block came from a 486-row reference
EVALUATION_ROWS = 2_000  # the default evaluation, CBPE's calibration set
SCALE_REFERENCE, SCALE_ROWS, SCALE_WINDOWS, SCALE_FIRED = 200_000, 1_000_000, 10, 9
PSI_THRESHOLDS = (0.1, 0.2)  # the usual "moderate" and "significant" (the README's income: 0.2)
COVERAGE_FROM, COVERAGE_BAND = 300, 0.02  # 93-97% from 300 rows; at least 93% below
# A run judges about 730 figures, each on a finite number of windows. A figure may exceed an
# "at most" level, or differ from another, by this many standard errors of its windows before
# it misses: one-sided, a figure exactly at its level misses 0.13% of the time (2 standard
# errors: 2.3%, so a run with 40 figures at their level would miss one more often than not).
MONTE_CARLO = 3
# The intervals' coverage has no allowance: its 93-97% band is 2.9 standard errors of 1,000
# windows about 95%, so the performance family's cells are judged on this many times the
# windows (at 2,000, 4.1 standard errors: an interval at 95% misses 1 in 20,000 figures, one
# at 97.5% is caught 92% of the time).
COVERAGE_WINDOWS = 2

Floats = npt.NDArray[np.float64]
Measure = Literal["false alarms", "power", "coverage", "false blocks"]


# --- the worlds (no Flywheel) ------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """A named change of the world: a relative mean shift, share points or accuracy points."""

    name: str
    size: float


NO_CHANGE = Effect("none", 0.0)
MEAN_SHIFTS = (NO_CHANGE, *(Effect(f"mean +{p}%", p / 100) for p in (3, 10, 30)))
SHARE_SHIFTS = (NO_CHANGE, *(Effect(f"{p}-point share shift", p / 100) for p in (5, 20)))
SCORE_SHIFTS = (NO_CHANGE, *(Effect(f"mean score +{p}%", p / 100) for p in (3, 10, 30)))
ACCURACY_DROPS = (NO_CHANGE, *(Effect(f"accuracy -{p} points", p / 100) for p in (3, 10)))
# CBPE, the slowest call (300 simulated label sets per window), skips the drop below the
# estimated-performance trigger's max_drop.
CBPE_EFFECTS = (ACCURACY_DROPS[0], ACCURACY_DROPS[2])


@dataclass(frozen=True)
class Numeric:
    """A numeric feature; a shift scales its mean by 1 + shift."""

    name: str
    kind: Literal["normal", "lognormal"]
    centre: float  # the mean (normal) or the median (lognormal)
    spread: float  # the sd (normal) or the sd of the log (lognormal)

    def draw(self, rng: np.random.Generator, n: int, shift: float = 0.0) -> Floats:
        return self.values(rng.standard_normal(n), shift)

    def values(self, z: Floats, shift: float = 0.0) -> Floats:
        """The feature's values of standard normal draws `z`."""
        if self.kind == "normal":
            return self.centre * (1 + shift) + self.spread * z
        return self.centre * (1 + shift) * np.exp(self.spread * z)

    def cdf(self, x: Floats, shift: float = 0.0) -> Floats:
        if self.kind == "normal":
            return special.ndtr((x - self.centre * (1 + shift)) / self.spread)
        with np.errstate(divide="ignore"):
            return special.ndtr(
                np.log(np.maximum(x, 0.0) / (self.centre * (1 + shift))) / self.spread
            )


@dataclass(frozen=True)
class Categorical:
    """A categorical feature; a shift moves that much share from the first to the second."""

    name: str
    categories: tuple[str, ...]
    shares: tuple[float, ...]

    def probabilities(self, shift: float = 0.0) -> Floats:
        p = np.array(self.shares)
        p[0] -= shift
        p[1] += shift
        return p

    def draw(self, rng: np.random.Generator, n: int, shift: float = 0.0) -> npt.NDArray[Any]:
        return self.values(rng.random(n), shift)

    def values(self, u: Floats, shift: float = 0.0) -> npt.NDArray[Any]:
        """The categories of uniform draws `u` (by the inverse CDF)."""
        which = np.searchsorted(np.cumsum(self.probabilities(shift)), u, side="right")
        return np.asarray(self.categories)[np.minimum(which, len(self.shares) - 1)]


@dataclass(frozen=True)
class Latent:
    """The model's input z ~ N(mean, sd): a covariate shift moves it."""

    mean: float = 0.0
    sd: float = 1.0


@dataclass(frozen=True)
class Truth:
    """A world's true metrics of the model."""

    mean_score: float
    accuracy: float
    roc_auc: float


@dataclass(frozen=True)
class Model:
    """A binary model calibrated by construction: P(y = 1 | z) = score = sigmoid(a + b z)."""

    intercept: float = -1.0
    slope: float = 1.5

    def score(self, z: Floats) -> Floats:
        return np.asarray(special.expit(self.intercept + self.slope * z), dtype=float)

    def draw(self, rng: np.random.Generator, n: int, latent: Latent) -> tuple[Floats, Any]:
        return self.values(rng.standard_normal(n), rng.random(n), latent)

    def values(self, z: Floats, u: Floats, latent: Latent) -> tuple[Floats, Any]:
        """Scores and labels of standard normal draws `z` and uniform draws `u`."""
        scores = self.score(latent.mean + latent.sd * z)
        return scores, (u < scores).astype(np.int64)

    def score_cdf(self, t: Floats, latent: Latent) -> Floats:
        with np.errstate(divide="ignore"):
            z = (special.logit(np.clip(t, 0.0, 1.0)) - self.intercept) / self.slope
        return special.ndtr((z - latent.mean) / latent.sd)

    def truth(self, latent: Latent) -> Truth:
        """Mean score, accuracy at 0.5 and ROC AUC, integrated on a fine grid of z."""
        u = np.linspace(-9, 9, 36_001)
        w = np.exp(-u * u / 2)
        w /= w.sum()
        p = self.score(latent.mean + latent.sd * u)
        positive, negative = w * p, w * (1 - p)
        below = np.cumsum(negative) - negative  # p rises with z: the negatives scored lower
        auc = float(np.sum(positive * (below + negative / 2)) / (positive.sum() * negative.sum()))
        return Truth(float(np.sum(w * p)), float(np.sum(w * np.maximum(p, 1 - p))), auc)


NUMERIC = {
    "age": Numeric("age", "normal", 40.0, 15.0),
    "income": Numeric("income", "lognormal", 40_000.0, 0.6),
}
REGION = Categorical(
    "region", ("north", "south", "east", "west", "islands"), (0.4, 0.3, 0.15, 0.1, 0.05)
)
MODEL = Model()


@dataclass(frozen=True)
class Regression:
    """A regression world: x ~ N(0, 1), y = x + N(0, noise²), and a model predicting
    `slope` x (shrunk, as a regularised fit's): R² = 1 - ((1 - slope)² + noise²) / (1 +
    noise²)."""

    noise: float = 1.0
    slope: float = 0.8

    def draw(self, rng: np.random.Generator, n: int) -> tuple[Floats, Floats]:
        """Predictions and labels."""
        x = rng.standard_normal(n)
        return self.slope * x, x + self.noise * rng.standard_normal(n)

    @property
    def r2(self) -> float:
        return 1 - ((1 - self.slope) ** 2 + self.noise**2) / (1 + self.noise**2)


@dataclass(frozen=True)
class Multiclass:
    """A multiclass world: `classes` equally likely classes, each row's logits standard
    normal and `lift` higher for its own class; the model answers their softmax."""

    classes: int = 3
    lift: float = 1.0

    def draw(self, rng: np.random.Generator, n: int) -> tuple[Floats, npt.NDArray[np.int64]]:
        """Class probabilities and labels."""
        y = rng.integers(0, self.classes, n)
        logits = rng.standard_normal((n, self.classes))
        logits[np.arange(n), y] += self.lift
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True), y

    @cache  # noqa: B019 (two worlds, kept for the process)
    def truth(self, rows: int | None = None) -> tuple[float, float]:
        """Macro F1 at the most probable class and the one-vs-rest macro ROC AUC, on `rows`
        rows (default TRUTH_ROWS) drawn once (their error, about 0.0005 at 4 million, is a
        tenth of a 20,000-row interval's)."""
        p, y = self.draw(np.random.default_rng(2024), rows or TRUTH_ROWS)
        k = self.classes
        cells = np.bincount(y * k + p.argmax(axis=1), minlength=k * k).reshape(k, k)
        hits = np.diag(cells).astype(float)
        f1 = 2 * hits / (cells.sum(axis=0) + cells.sum(axis=1))
        aucs = [rank_auc((y == c).astype(np.int64), p[:, c]) for c in range(k)]
        return float(f1.mean()), float(np.mean([a for a in aucs if a is not None]))


REGRESSION = Regression()
MULTICLASS = Multiclass()
TRUTH_ROWS = 4_000_000


def _solve(f: Callable[[float], float], target: float, low: float, high: float) -> float:
    """x in [low, high] with f(x) = target, f monotone (bisection)."""
    rising = f(high) > f(low)
    for _ in range(60):
        mid = (low + high) / 2
        if (f(mid) < target) == rising:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@cache
def latent(effect: Effect) -> Latent:
    """The covariate shift of an effect on the model: a mean score up by its share, or the
    accuracy down by its points (z's mean towards the boundary, its spread down)."""
    if effect.size == 0:
        return Latent()
    base = MODEL.truth(Latent())
    if effect in SCORE_SHIFTS:
        target = base.mean_score * (1 + effect.size)
        return Latent(_solve(lambda m: MODEL.truth(Latent(m)).mean_score, target, 0.0, 3.0))
    boundary = -MODEL.intercept / MODEL.slope

    def toward(t: float) -> Latent:
        return Latent(t * boundary, 1 - 0.8 * t)

    t = _solve(lambda t: MODEL.truth(toward(t)).accuracy, base.accuracy - effect.size, 0.0, 1.0)
    return toward(t)


@dataclass
class Window:
    """A window of `rows` rows as monitoring holds it: `values`, every row up to the summary's
    sample, else a uniform sample of that many; and exact counts of all rows on any bins."""

    rows: int
    values: npt.NDArray[Any]
    cdf: Callable[[Floats], Floats]  # the world's, for the rows beyond the sample
    rng: np.random.Generator
    _counts: dict[tuple[float, ...], npt.NDArray[np.int64]] = field(default_factory=dict)

    def counts(self, edges: Sequence[float]) -> npt.NDArray[np.int64]:
        """Rows per bin (-inf, e0], (e0, e1], ..., (en, inf); one draw per set of edges."""
        key = tuple(float(e) for e in edges)
        if key not in self._counts:
            inner = np.asarray(key, dtype=float)
            found = np.bincount(
                np.searchsorted(inner, self.values, side="left"), minlength=len(key) + 1
            )
            beyond = self.rows - len(self.values)
            if beyond:
                p = np.clip(np.diff(np.concatenate([[0.0], self.cdf(inner), [1.0]])), 0.0, None)
                found = found + self.rng.multinomial(beyond, p / p.sum())
            self._counts[key] = found
        return self._counts[key]


@dataclass
class Labelled:
    """A window of labelled rows of the regression or multiclass world: the model's answers
    (one value, or class probabilities) and the labels."""

    outputs: Floats
    labels: Floats


@dataclass
class Tally:
    """A categorical window: its sample, and the exact count of every category."""

    rows: int
    values: npt.NDArray[Any]
    counts: dict[str, int]


@dataclass
class Scored:
    """A window of the model's scores, with the labels of its sample and the realised metrics
    of all its rows (a window beyond the sample: its accuracy exact, its AUC the world's)."""

    scores: Window
    labels: npt.NDArray[np.int64]
    accuracy: float
    roc_auc: float | None


def numeric_window(
    rng: np.random.Generator, world: Numeric, rows: int, z: Floats, shift: float
) -> Window:
    """A window of the sample's standard normal draws `z` (shared by the effects)."""
    return Window(rows, world.values(z, shift), lambda x: world.cdf(x, shift), rng)


def categorical_window(
    rng: np.random.Generator, world: Categorical, rows: int, u: Floats, shift: float
) -> Tally:
    """A window of the sample's uniform draws `u` (shared by the effects)."""
    values = world.values(u, shift)
    counts = np.array([np.sum(values == c) for c in world.categories])
    if rows > len(u):
        counts = counts + rng.multinomial(rows - len(u), world.probabilities(shift))
    return Tally(rows, values, {c: int(n) for c, n in zip(world.categories, counts, strict=True)})


@cache
def truth(change: Latent) -> Truth:
    """The model's true metrics under a change (integrated once per change)."""
    return MODEL.truth(change)


def scored_window(
    rng: np.random.Generator, rows: int, z: Floats, u: Floats, change: Latent
) -> Scored:
    """A window of the sample's draws `z` and `u` (shared by the effects)."""
    scores, labels = MODEL.values(z, u, change)
    right = int(np.sum((scores >= 0.5) == labels))
    if rows > len(z):
        right += int(rng.binomial(rows - len(z), truth(change).accuracy))
        auc: float | None = truth(change).roc_auc
    else:
        auc = rank_auc(labels, scores)
    window = Window(rows, scores, lambda t: MODEL.score_cdf(t, change), rng)
    return Scored(window, labels, right / rows, auc)


def rank_auc(labels: npt.NDArray[np.int64], scores: Floats) -> float | None:
    """The realised ROC AUC (Mann-Whitney); None with one class."""
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    if n1 == 0 or n0 == 0:
        return None
    ranks = stats.rankdata(scores)
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def contract_frame(rng: np.random.Generator, rows: int) -> Any:
    """A healthy batch: the features as above, 5% of incomes missing, a 0.1% region, half
    the labels positive."""
    import pandas as pd

    income = NUMERIC["income"].draw(rng, rows)
    income[rng.random(rows) < 0.05] = np.nan
    regions = Categorical(
        "region", (*REGION.categories, "enclave"), (0.4, 0.3, 0.15, 0.1, 0.049, 0.001)
    )
    return pd.DataFrame(
        {
            "event_time": pd.Timestamp("2026-01-01"),
            "defaulted": rng.integers(0, 2, rows),
            "age": NUMERIC["age"].draw(rng, rows),
            "income": income,
            "region": regions.draw(rng, rows),
        }
    )


# =========================================================================================
# ADAPTERS: every call into Flywheel's alarms, one small function each: given a simulated
# reference and window, whether the alarm fired, or an interval (low, high). When the
# library's signatures change, re-point these and the designs below; nothing else here
# calls Flywheel. Each mirrors what monitoring does with a window (analysis.py) or what the
# trigger engine does with its report (triggers/signals.py).
# =========================================================================================

SETTINGS = MonitoringSettings()
SAMPLE_ROWS = SETTINGS.sample_rows  # what a window's summary keeps
CONFIDENCE = SETTINGS.confidence
BINS = ContractSettings().drift.bins
TESTS: dict[str, Any] = {
    "p_value": SETTINGS.p_value,
    "distance": SETTINGS.distance,
    "min_expected": SETTINGS.psi_min_expected,
}
PERFORMANCE = PerformanceTrigger()
ESTIMATED = EstimatedPerformanceTrigger()
Bounds = tuple[float, float] | None


@dataclass(frozen=True)
class Design:
    """What an alarm claims: its nominal rate, and at which window sizes it is conservative
    by design (at most the nominal rate, not about it)."""

    nominal: float
    conservative: Callable[[int], bool]


DESIGNS = {
    # Each fires on a significant test AND an effect above its distance: at most the test's
    # level, at every size.
    "drift test": Design(SETTINGS.p_value, lambda rows: True),
    # PSI above its limit on a window whose bins expect psi_min_expected rows, with the bins'
    # chi-square significant: at most the chi-square's level.
    "PSI": Design(SETTINGS.p_value, lambda rows: True),
    "prediction drift": Design(SETTINGS.p_value, lambda rows: True),
    # Fired when the whole interval is beyond the threshold: one tail, at the threshold.
    "trigger": Design((1 - CONFIDENCE) / 2, lambda rows: True),
    "interval": Design(CONFIDENCE, lambda rows: False),
    # The mean of the classes' bounds: the widest interval their covariances allow, so at
    # least its level.
    "conservative interval": Design(CONFIDENCE, lambda rows: True),
}


def _drifted(found: statistics.DriftTest | None) -> bool:
    return found is not None and found.drifted


def numeric_reference(rows: Floats) -> Any:
    """A numeric feature's reference: its rows, and the contract's profile (bins) of them. The
    rows are kept sorted (their order means nothing to any test): the tests of every size and
    effect sort them again, and sorting sorted rows is quick."""
    import pandas as pd

    return np.sort(rows), contract.numeric_profile(pd.Series(rows), BINS)


def numeric_drift(reference: Any, window: Window) -> bool:
    """Monitoring's test of a numeric feature against its reference rows (on a summary's
    sample above sample_rows, with PSI on its exact counts)."""
    rows, profile = reference
    return _drifted(
        statistics.sample_drift(
            window.values, rows, profile.edges, counts=window.counts(profile.edges), **TESTS
        )
    )


def binned_drift(reference: Any, window: Window) -> statistics.DriftTest | None:
    """The same when the reference rows cannot be read: the contract's bins, counted on the
    rows it was profiled from, against the summary's exact counts. The drift trigger's
    per-feature PSI limit is judged on the same test (`psi_alarms`): PSI, its bins'
    chi-square and its minimum window depend on the bins alone, so sample_drift gives the
    same PSI without its KS and Wasserstein distance."""
    rows, profile = reference
    return statistics.binned_drift(
        window.values,
        profile.edges,
        profile.fractions,
        reference_rows=len(rows),
        counts=window.counts(profile.edges).tolist(),
        **TESTS,
    )


def psi_alarms(found: statistics.DriftTest | None, threshold: float) -> bool:
    """The drift trigger's per-feature limit: PSI on the summary's exact counts above it, on
    a window large enough to trust it (DriftTest.psi_alarms)."""
    return found is not None and found.psi_alarms(threshold)


def categorical_reference(values: npt.NDArray[Any]) -> Any:
    """A categorical feature's reference: the contract's share of each category, and the
    rows it was counted on."""
    import pandas as pd

    return drift.category_fractions(pd.Series(values)), len(values)


def categorical_drift(reference: Any, window: Tally) -> statistics.DriftTest | None:
    """Monitoring's test of a categorical feature, on the summary's exact counts (its PSI
    limit judged on the same test, `psi_alarms`)."""
    shares, rows = reference
    return statistics.counted_drift(window.counts, shares, reference_rows=rows, **TESTS)


def score_reference(scores: Floats, labels: npt.NDArray[np.int64]) -> Any:
    """What prediction drift compares with: the evaluation's stored sample of scores (sorted
    once, as the numeric references are)."""
    return np.sort(scores[: evaluation.SCORE_SAMPLE])


def prediction_drift(reference: Any, window: Scored) -> bool:
    """Monitoring's test of a binary classifier's scores (drifts.prediction_drift)."""
    return _drifted(drifts.sample_drift(window.scores.values, reference, SETTINGS))


def evaluation_reference(scores: Floats, labels: npt.NDArray[np.int64]) -> Any:
    """CBPE's calibrator from the evaluation's reliability curve, the offline accuracy (the
    evaluation's, at 0.5, as evaluation.score reports it), and the calibrators refitted on
    resamples of the stored sample, fitted once per reference as analysis fits them once per
    version (`VersionReference.score_calibrators`, the same seed)."""
    fitted = intervals.calibrator(evaluation.calibration(labels, scores))
    sample = np.column_stack([scores, labels])[: evaluation.SCORE_SAMPLE]
    resampled = intervals.resampled(sample, CBPE_SIMULATIONS)
    return fitted, float(np.mean((scores >= 0.5) == labels)), resampled, len(scores)


def _bounds(interval: intervals.Interval | None) -> Bounds:
    return None if interval is None else (interval.low, interval.high)


def estimate(reference: Any, window: Scored) -> dict[str, Bounds]:
    """CBPE's intervals for accuracy and ROC AUC before labels (analysis._estimate): of the
    whole window's rows when the summary's sample stands for more."""
    fitted, _, resampled, _ = reference
    scores = window.scores.values
    # The same draws as intervals.calibration_draws(sample, scores, 300), a few at a time.
    found = intervals.cbpe(
        scores, fitted(scores), CONFIDENCE, draws=resampled, rows=window.scores.rows
    )
    return {"accuracy": _bounds(found["accuracy"]), "roc_auc": _bounds(found["roc_auc"])}


def estimated_drop(reference: Any, window: Scored, estimated: dict[str, Bounds]) -> bool:
    """One window's verdict of the estimated-performance trigger (it needs `windows` in a
    row): the estimate's whole interval below the offline accuracy minus max_drop."""
    _, offline, _, _ = reference
    bounds = estimated["accuracy"]
    assert ESTIMATED.max_drop is not None
    return (
        len(window.scores.values) >= ESTIMATED.min_labelled
        and bounds is not None
        and bounds[1] < offline - ESTIMATED.max_drop
    )


def measured(window: Scored) -> dict[str, Bounds]:
    """Monitoring's intervals of accuracy and ROC AUC on the labels (analysis._performance)."""
    scores = window.scores.values
    found = performance.measure(
        "binary", window.labels, np.column_stack([1 - scores, scores]), CONFIDENCE
    )
    return {"accuracy": _bounds(found.accuracy), "roc_auc": _bounds(found.roc_auc)}


def performance_drop(reference: Any, window: Scored, labelled: dict[str, Bounds]) -> bool:
    """The performance trigger's verdict: the labelled interval, widened for the offline
    figure's own error, wholly below the offline accuracy minus max_drop (signals.performance)."""
    _, offline, _, rows = reference
    bounds = labelled["accuracy"]
    assert PERFORMANCE.max_drop is not None
    if len(window.labels) < PERFORMANCE.min_labelled or bounds is None:
        return False
    value = float(np.mean((window.scores.values >= 0.5) == window.labels))
    interval = intervals.Interval(value=value, low=bounds[0], high=bounds[1])
    judged = signals.widened(interval, len(window.labels), rows)
    return judged.high < offline - PERFORMANCE.max_drop


# =========================================================================================
LABELLED_PROBLEMS = {
    "regression": Problem(task="regression", label="y"),
    "multiclass": Problem(task="multiclass", label="y", classes=("a", "b", "c")),
}


def joined_labelled(world: str, window: Labelled) -> dict[str, Bounds]:
    """Monitoring's intervals over every labelled row of a window (`label_join: every`),
    from the join's counts and sums (joined.window_figures); R²'s is also the sample's."""
    found = joined.window_figures(
        LABELLED_PROBLEMS[world], window.outputs, window.labels, CONFIDENCE
    )
    return {
        "r2": _bounds(found.r2),
        "macro_f1": _bounds(found.macro_f1),
        "roc_auc": _bounds(found.roc_auc),
    }


# ADAPTERS, the contract: main's public check of a batch (validation.check_batch), kept
# apart from the alarms' as its checks are being rewritten on their own branch.
# =========================================================================================

CONTRACT_CHECKS = ("range", "null rate", "categories", "label balance")
CONTRACT_FEATURES = FeatureSettings(numeric=("age", "income"), categorical=("region",))
# label_balance: error, so that the balance check blocks (and takes its share of the rate).
CONTRACT_POLICY = ContractSettings(label_balance="error")
# The contract's false-block rate of a batch (contract.false_block_rate, split over its
# checks by bounds.check_level): each check, and all of them together, at most that.
CONTRACT_NOMINAL = CONTRACT_POLICY.false_block_rate


def contract_reference(frame: Any) -> Any:
    """The contract inferred from reference rows, as a training run infers it."""
    return contract.infer_contract([("reference", frame)], CONTRACT_FEATURES, BINS, CONTRACT_POLICY)


def contract_blocks(reference: Any, batch: Any) -> dict[str, bool]:
    """Which of the range, null-rate, category and label-balance checks failed the batch (an
    error)."""
    found = validation.check_batch(batch, reference, CONTRACT_POLICY, "batch")
    errors = {f.check for f in found.findings if f.severity == "error"}
    return {
        "range": "range" in errors,
        "null rate": "null rate" in errors,
        "categories": bool(errors & {"allowed values", "allowed categories"}),
        "label balance": "label balance" in errors,
    }


# --- measuring (no Flywheel but through the adapters) ------------------------------------

Family = Literal["numeric", "categorical", "scores", "performance", "labels", "contract"]
CHUNK = 50  # windows per task of a process


@dataclass(frozen=True)
class Task:
    """Windows [first, last) of one family, world and reference size: each window draws its
    reference once, then its rows once per size, shared by every effect (common random
    numbers: a comparison between sizes or effects is paired)."""

    family: Family
    world: str
    reference: int
    effects: tuple[Effect, ...]
    sizes: tuple[int, ...]
    first: int
    last: int
    seed: int

    @property
    def label(self) -> str:
        """The feature or model of its rows in the table."""
        if self.family == "numeric":
            return f"{self.world} ({NUMERIC[self.world].kind})"
        if self.family == "categorical":
            return f"{self.world} (categorical)"
        if self.family == "labels":
            return f"{self.world} model's labels"
        return {"scores": "model's scores", "performance": "model's performance"}.get(
            self.family, "contract"
        )

    @property
    def cost(self) -> float:
        """A guess of its time, to start the slowest first."""
        per = sum(min(n, SAMPLE_ROWS) for n in self.sizes) * len(self.effects)
        return (self.last - self.first) * per * (10 if self.family == "performance" else 1)


Key = tuple[str, str, int, str, int]  # feature or model, alarm, reference, effect, rows
Hits = dict[Key, list[int]]  # -> [fired or covered, windows judged]


def _window_rng(task: Task, i: int) -> np.random.Generator:
    key = f"{task.family}/{task.world}/{task.reference}".encode()
    return np.random.default_rng([task.seed, int.from_bytes(hashlib.sha256(key).digest()[:8]), i])


def _covers(bounds: Bounds, value: float | None) -> bool | None:
    """Whether the interval holds the value (None: no value to cover)."""
    if value is None:
        return None
    return bounds is not None and bounds[0] <= value <= bounds[1]


Count = Callable[[str, bool | None], None]  # an alarm's verdict on one window


def _reference(task: Task, rng: np.random.Generator) -> Any:
    """The task's reference, drawn for one window and prepared by its adapter."""
    if task.family == "numeric":
        return numeric_reference(NUMERIC[task.world].draw(rng, task.reference))
    if task.family == "categorical":
        return categorical_reference(REGION.draw(rng, task.reference))
    if task.family == "scores":
        return score_reference(*MODEL.draw(rng, task.reference, Latent()))
    if task.family == "labels":
        return None
    return evaluation_reference(*MODEL.draw(rng, task.reference, Latent()))


def _judge(
    task: Task, ref: Any, window: Window | Tally | Scored | Labelled, e: Effect, count: Count
) -> None:
    """Every alarm of the task's family on one window."""
    if isinstance(window, Labelled):
        found = joined_labelled(task.world, window)
        if task.world == "regression":
            count("labelled R² interval, from sums", _covers(found["r2"], REGRESSION.r2))
        else:
            f1, auc = MULTICLASS.truth()
            count("labelled macro F1 interval, from counts", _covers(found["macro_f1"], f1))
            count("labelled macro ROC AUC interval, from bins", _covers(found["roc_auc"], auc))
    elif isinstance(window, Window):
        count("drift test, reference rows", numeric_drift(ref, window))
        binned = binned_drift(ref, window)  # one test, judged for each alarm on the bins
        if task.world == "income":  # the bins are quantiles: one world shows them
            count("drift test, contract's bins only", _drifted(binned))
        for t in PSI_THRESHOLDS:
            count(f"PSI > {t:g}", psi_alarms(binned, t))
    elif isinstance(window, Tally):
        counted = categorical_drift(ref, window)
        count("drift test", _drifted(counted))
        for t in PSI_THRESHOLDS:
            count(f"PSI > {t:g}", psi_alarms(counted, t))
    elif task.family == "scores":
        count("prediction drift", prediction_drift(ref, window))
    else:
        if e in CBPE_EFFECTS:
            found = estimate(ref, window)
            count("CBPE accuracy interval", _covers(found["accuracy"], window.accuracy))
            count("CBPE ROC AUC interval", _covers(found["roc_auc"], window.roc_auc))
            count("estimated-performance trigger", estimated_drop(ref, window, found))
        world = truth(latent(e))
        labelled = measured(window)
        count("labelled accuracy interval", _covers(labelled["accuracy"], world.accuracy))
        count("labelled ROC AUC interval", _covers(labelled["roc_auc"], world.roc_auc))
        count("performance-drop trigger", performance_drop(ref, window, labelled))


def run_task(task: Task) -> Hits:
    """Count each alarm's verdicts over the task's windows."""
    hits: Hits = {}

    def counter(effect: Effect, rows: int) -> Count:
        def count(alarm: str, yes: bool | None) -> None:
            # None: not judged (the realised AUC of a window of one class)
            if yes is not None:
                key = (task.label, alarm, task.reference, effect.name, rows)
                found = hits.setdefault(key, [0, 0])
                found[0] += bool(yes)
                found[1] += 1

        return count

    for i in range(task.first, task.last):
        rng = _window_rng(task, i)
        if task.family == "contract":
            ref = contract_reference(contract_frame(rng, task.reference))
            for n in task.sizes:
                count = counter(NO_CHANGE, n)
                blocked = contract_blocks(ref, contract_frame(rng, n))
                for check in CONTRACT_CHECKS:
                    count(check, blocked[check])
                count("any of them", any(blocked.values()))
            continue
        ref = _reference(task, rng)
        for n in task.sizes:
            kept = min(n, SAMPLE_ROWS)
            z, u = rng.standard_normal(kept), rng.random(kept)
            for e in task.effects:
                window: Window | Tally | Scored | Labelled
                if task.family == "labels":
                    world = REGRESSION if task.world == "regression" else MULTICLASS
                    window = Labelled(*world.draw(rng, kept))
                elif task.family == "numeric":
                    window = numeric_window(rng, NUMERIC[task.world], n, z, e.size)
                elif task.family == "categorical":
                    window = categorical_window(rng, REGION, n, u, e.size)
                else:
                    window = scored_window(rng, n, z, u, latent(e))
                _judge(task, ref, window, e, counter(e, n))
    return hits


# Each alarm's kind of figure and its design (DESIGNS).
ALARMS: dict[str, tuple[Literal["fire", "cover"], str]] = {
    "drift test, reference rows": ("fire", "drift test"),
    "drift test, contract's bins only": ("fire", "drift test"),
    "drift test": ("fire", "drift test"),
    **{f"PSI > {t:g}": ("fire", "PSI") for t in PSI_THRESHOLDS},
    "prediction drift": ("fire", "prediction drift"),
    "CBPE accuracy interval": ("cover", "interval"),
    "CBPE ROC AUC interval": ("cover", "interval"),
    "estimated-performance trigger": ("fire", "trigger"),
    "labelled accuracy interval": ("cover", "interval"),
    "labelled ROC AUC interval": ("cover", "interval"),
    "performance-drop trigger": ("fire", "trigger"),
    "labelled R² interval, from sums": ("cover", "interval"),
    "labelled macro F1 interval, from counts": ("cover", "interval"),
    "labelled macro ROC AUC interval, from bins": ("cover", "conservative interval"),
}


def plan(windows: int, sizes: Sequence[int], seed: int) -> list[Task]:
    """Every task of a run, and those of the check at scale (which effects are above each
    alarm's threshold: a million-row window against a 200,000-row reference)."""
    tasks: list[Task] = []

    # Labels beyond the sample are joined whole: the sums at 20,000 rows stand for more.
    labelled_sizes = tuple(n for n in sizes if n <= SAMPLE_ROWS)

    def add(
        family: Family,
        world: str,
        refs: Iterable[int],
        effects: tuple[Effect, ...],
        times: int = 1,
        at: Sequence[int] = sizes,
    ) -> None:
        for ref in refs:
            for first in range(0, windows * times, CHUNK):
                last = min(first + CHUNK, windows * times)
                tasks.append(Task(family, world, ref, effects, tuple(at), first, last, seed))
        if effects[1:]:
            scale = min(windows, SCALE_WINDOWS)
            tasks.append(
                Task(family, world, SCALE_REFERENCE, effects[1:], (SCALE_ROWS,), 0, scale, seed)
            )

    for name in NUMERIC:
        add("numeric", name, REFERENCES, MEAN_SHIFTS)
    add("categorical", REGION.name, REFERENCES, SHARE_SHIFTS)
    add("scores", "model", REFERENCES, SCORE_SHIFTS)
    add("performance", "model", (EVALUATION_ROWS,), ACCURACY_DROPS, COVERAGE_WINDOWS)
    for world in LABELLED_PROBLEMS:
        add("labels", world, (0,), (NO_CHANGE,), COVERAGE_WINDOWS, labelled_sizes)
    contract_sizes = tuple(n for n in sizes if n in CONTRACT_SIZES)
    if contract_sizes:
        for ref in CONTRACT_REFERENCES:
            for first in range(0, windows, CHUNK):
                last = min(first + CHUNK, windows)
                tasks.append(
                    Task("contract", "batch", ref, (NO_CHANGE,), contract_sizes, first, last, seed)
                )
    return tasks


def run(tasks: Sequence[Task], workers: int) -> Hits:
    """Every task, the slowest first, over `workers` processes (one: in this one); the counts
    summed, progress as they finish."""
    started = time.monotonic()
    total: Hits = {}
    step = max(len(tasks) // 20, 1)

    def add(found: Hits, done: int) -> None:
        for key, (hits, judged) in found.items():
            into = total.setdefault(key, [0, 0])
            into[0] += hits
            into[1] += judged
        if done % step == 0 or done == len(tasks):
            print(f"   {done}/{len(tasks)} tasks in {time.monotonic() - started:.0f}s", flush=True)

    ordered = sorted(tasks, key=lambda t: -t.cost)
    if workers <= 1:
        for done, task in enumerate(ordered, 1):
            add(run_task(task), done)
        return total
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_task, t) for t in ordered]
        for done, future in enumerate(as_completed(futures), 1):
            add(future.result(), done)
    return total


# --- the table and its goals (no Flywheel) -------------------------------------------------


@dataclass
class Row:
    """One alarm, reference and effect: its figure at each window size, and its goal marks."""

    family: str
    alarm: str
    reference: int
    effect: str
    measure: Measure
    design: str
    figures: dict[int, list[int]]  # rows -> [hits, windows judged]
    at_scale: float | None = None
    goal: str = ""
    missed: dict[int, list[str]] = field(default_factory=dict)

    def rate(self, rows: int) -> float:
        hits, judged = self.figures[rows]
        return hits / judged if judged else math.nan


def rows_of(tasks: Sequence[Task], total: Hits) -> list[Row]:
    """The table's rows in the plan's order (feature, alarm, reference, effect), each with its
    effect's figure at scale."""
    scale = {
        (k[0], k[1], k[3]): h / max(n, 1) for k, (h, n) in total.items() if k[2] == SCALE_REFERENCE
    }
    table: dict[tuple[str, str, int, str], Row] = {}
    for (label, alarm, reference, effect, rows), counted in total.items():
        if reference == SCALE_REFERENCE:
            continue
        key = (label, alarm, reference, effect)
        if key not in table:
            if alarm in ALARMS:
                kind, design = ALARMS[alarm]
                measure: Measure = "coverage" if kind == "cover" else "false alarms"
                measure = (
                    "power" if measure == "false alarms" and effect != NO_CHANGE.name else measure
                )
            else:
                measure, design = "false blocks", "contract"
            table[key] = Row(label, alarm, reference, effect, measure, design, {})
            table[key].at_scale = scale.get((label, alarm, effect)) if measure == "power" else None
        table[key].figures[rows] = counted
    labels = list(dict.fromkeys(t.label for t in tasks))
    alarms = [*ALARMS, *CONTRACT_CHECKS, "any of them"]
    effects = [e.name for e in (*MEAN_SHIFTS, *SHARE_SHIFTS, *SCORE_SHIFTS, *ACCURACY_DROPS)]

    def order(k: tuple[str, str, int, str]) -> tuple[int, ...]:
        return labels.index(k[0]), alarms.index(k[1]), k[2], effects.index(k[3])

    return [table[k] for k in sorted(table, key=order)]


def _noise(p1: float, n1: int, p2: float, n2: int) -> float:
    """A change between two rates beyond Monte Carlo noise: MONTE_CARLO standard errors, at
    least 2 points."""
    se = math.sqrt(p1 * (1 - p1) / max(n1, 1) + p2 * (1 - p2) / max(n2, 1))
    return max(MONTE_CARLO * se, 0.02)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%".replace(".0%", "%")


def judge(row: Row) -> Row:
    """Mark each figure of the row against its goal."""
    sizes = sorted(row.figures)
    missed: dict[int, list[str]] = {}
    if row.measure in ("false alarms", "false blocks"):
        design = DESIGNS.get(row.design, Design(CONTRACT_NOMINAL, lambda rows: True))
        low, high = design.nominal / 2, design.nominal * 1.5
        by_design = [n for n in sizes if design.conservative(n)]
        for n in sizes:
            rate = row.rate(n)
            # "At most" allows the Monte Carlo error of the windows: MONTE_CARLO standard errors.
            slack = MONTE_CARLO * math.sqrt(
                design.nominal * (1 - design.nominal) / row.figures[n][1]
            )
            ok = rate <= design.nominal + slack if n in by_design else low <= rate <= high
            if not ok:
                missed.setdefault(n, []).append("level")
        if len(by_design) == len(sizes):
            row.goal = f"<= {_pct(design.nominal)} (+{MONTE_CARLO} s.e.)"
        elif not by_design:
            row.goal = f"{_pct(low)}-{_pct(high)}"
        else:
            row.goal = (
                f"{_pct(low)}-{_pct(high)}; <= {_pct(design.nominal)} from {by_design[0]:,} rows"
            )
    elif row.measure == "coverage":
        design = DESIGNS[row.design]
        nominal = design.nominal
        for n in sizes:
            rate = row.rate(n)
            ok = rate >= nominal - COVERAGE_BAND and (
                n < COVERAGE_FROM or design.conservative(n) or rate <= nominal + COVERAGE_BAND
            )
            if not ok:
                missed.setdefault(n, []).append("coverage")
        row.goal = (
            f">= {_pct(nominal - COVERAGE_BAND)} (conservative by design)"
            if all(design.conservative(n) for n in sizes)
            else f"{_pct(nominal - COVERAGE_BAND)}-{_pct(nominal + COVERAGE_BAND)} ({'>='} {_pct(nominal - COVERAGE_BAND)} under {COVERAGE_FROM})"
        )
    else:
        above = row.at_scale is not None and row.at_scale >= SCALE_FIRED / SCALE_WINDOWS
        row.goal = "never falls; no cliff" if above else "no cliff (below threshold at scale)"
        if above:
            best, best_n = -1.0, 0
            for n in sizes:
                if best >= 0 and best - row.rate(n) > _noise(
                    best, row.figures[best_n][1], row.rate(n), row.figures[n][1]
                ):
                    missed.setdefault(n, []).append("falls")
                if row.rate(n) > best:
                    best, best_n = row.rate(n), n
    if 1_000 in row.figures and 1_001 in row.figures:
        a, b = row.rate(1_000), row.rate(1_001)
        if abs(a - b) > _noise(a, row.figures[1_000][1], b, row.figures[1_001][1]):
            missed.setdefault(1_001, []).append("cliff")
    row.missed = missed
    return row


def _reference_text(row: Row) -> str:
    """The reference's rows, or "-" for an interval on labels, which needs none."""
    return f"{row.reference:,}" if row.reference else "-"


def _cell_text(row: Row, n: int) -> str:
    if n not in row.figures or not row.figures[n][1]:
        return "-"
    text = f"{100 * row.rate(n):.1f}"
    return f"{text} MISSED" if n in row.missed else text


def print_table(rows: Sequence[Row], sizes: Sequence[int]) -> None:
    """The alarms' table, then the contract's, in Markdown (as the docs keep it)."""
    alarms = [r for r in rows if r.measure != "false blocks"]
    blocks = [r for r in rows if r.measure == "false blocks"]
    head = " | ".join(f"{n:,}" for n in sizes)
    print(
        f"\n| feature or model | alarm | reference | effect | % of windows | goal | {head} | at scale |"
    )
    print("|---|---|---:|---|---|---|" + "---:|" * len(sizes) + "---:|")
    for r in alarms:
        cells = " | ".join(_cell_text(r, n) for n in sizes)
        scale = "" if r.at_scale is None else f"{100 * r.at_scale:.0f}"
        what = {"false alarms": "fired", "power": "fired", "coverage": "covered"}[r.measure]
        print(
            f"| {r.family} | {r.alarm} | {_reference_text(r)} | {r.effect} | {what} | {r.goal} | {cells} | {scale} |"
        )
    if blocks:
        contract_sizes = [n for n in sizes if n in CONTRACT_SIZES]
        head = " | ".join(f"{n:,}" for n in contract_sizes)
        print(f"\n| contract check | reference | % of healthy batches blocked | goal | {head} |")
        print("|---|---:|---|---|" + "---:|" * len(contract_sizes))
        for r in blocks:
            cells = " | ".join(_cell_text(r, n) for n in contract_sizes)
            print(f"| {r.alarm} | {r.reference:,} | blocked | {r.goal} | {cells} |")


def summarise(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Every row's figures for the JSON line."""
    return [
        {
            "family": r.family,
            "alarm": r.alarm,
            "reference": r.reference,
            "effect": r.effect,
            "measure": r.measure,
            "goal": r.goal,
            "at_scale": r.at_scale,
            "rates": {str(n): round(r.rate(n), 4) for n in sorted(r.figures)},
            "windows": {str(n): r.figures[n][1] for n in sorted(r.figures)},
            "missed": {str(n): why for n, why in sorted(r.missed.items())},
        }
        for r in rows
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--windows",
        type=int,
        default=1_000,
        help=f"simulated windows per cell ({COVERAGE_WINDOWS} times as many for the model's "
        "performance)",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in SIZES),
        help="comma-separated window sizes (rows)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    parser.add_argument(
        "--families",
        default=",".join(get_args(Family)),
        help="comma-separated subset of the alarms' families: " + ",".join(get_args(Family)),
    )
    args = parser.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    families = set(args.families.split(","))
    unknown = families - set(get_args(Family))
    if unknown:
        parser.error(f"no such family: {', '.join(sorted(unknown))}")
    tasks = [t for t in plan(args.windows, sizes, args.seed) if t.family in families]
    print(
        "SIMULATION of the statistics (Flywheel's functions on windows drawn from known "
        f"worlds): {args.windows} windows per cell ({COVERAGE_WINDOWS * args.windows} for the "
        f"model's performance), sizes {sizes}, references {list(REFERENCES)} "
        f"(evaluation {EVALUATION_ROWS:,}), seed {args.seed}; {len(tasks)} tasks on "
        f"{args.workers} processes",
        flush=True,
    )
    started = time.monotonic()
    results = run(tasks, args.workers)
    elapsed = time.monotonic() - started
    rows = [judge(r) for r in rows_of(tasks, results)]
    print_table(rows, sizes)
    missed = [(r, n, why) for r in rows for n, why in r.missed.items()]
    print(
        f"\n{len(tasks)} tasks in {elapsed:.0f}s on {args.workers} processes; goals: "
        f"{sum(len(r.figures) for r in rows) - len(missed)} figures met, {len(missed)} MISSED"
    )
    for r, n, why in missed:
        print(
            f"   MISSED {r.family}, {r.alarm}, reference {_reference_text(r)}, {r.effect}, {n:,} rows: "
            f"{', '.join(why)} ({100 * r.rate(n):.1f}%, goal {r.goal})"
        )
    summary = {
        "simulation": "Flywheel's alarm functions on windows drawn from known worlds",
        "windows": args.windows,
        "sizes": sizes,
        "seed": args.seed,
        "seconds": round(elapsed),
        "workers": args.workers,
        "rows": summarise(rows),
        "missed": len(missed),
        "goals_met": not missed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stats.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
