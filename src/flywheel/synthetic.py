"""Realistic daily batches for a loan-default use case, with switchable failure scenarios.

The label depends on the features non-linearly: a debt-to-income threshold, a
soft credit-score cliff, a convex effect of late payments and an interaction
between channel and age. Each day is drawn from its own seeded generator, so
any day can be regenerated alone and always comes out the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from flywheel.config import GeneratorSettings

REGIONS = ("north", "south", "east", "west")
CHANNELS = ("web", "branch", "partner")
EMPLOYMENT = ("salaried", "self_employed", "unemployed", "retired")
NEW_CHANNEL = "mobile"
# The region the `underserved_group` scenario serves worse.
UNDERSERVED_REGION = "west"
GRADES = ("low", "medium", "high")
GRADE_EDGES = (0.12, 0.35)  # a noisy default risk below, between and above
# The noisy risk a grade and the days late are read from: the risk times exp(N(0, RISK_NOISE)).
RISK_NOISE = 0.35
# Days late: this many per unit of noisy risk, per late payment (up to LATE_CAP), plus N(0, DAYS_NOISE).
DAYS_PER_RISK = 60.0
DAYS_PER_LATE_PAYMENT = 4.0
LATE_CAP = 6
DAYS_NOISE = 4.0
# The underserved region's defaults: sigmoid(a + b * h), h ~ N(0, 1) that no feature carries.
HIDDEN_LOGIT = (-1.3, 1.6)
# Draws per row of a regression's days late when its best expected error is estimated.
ERROR_DRAWS = 400


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def _features(
    rng: np.random.Generator, n: int, day_index: int, s: GeneratorSettings
) -> pd.DataFrame:
    drift_days = max(0, day_index - s.change_day) if s.scenario == "covariate_drift" else 0
    region = rng.choice(REGIONS, size=n, p=[0.3, 0.25, 0.25, 0.2])
    channel_p = [0.5, 0.3, 0.2]
    channels: tuple[str, ...] = CHANNELS
    if s.scenario == "new_category" and day_index >= s.change_day:
        channels, channel_p = (*CHANNELS, NEW_CHANNEL), [0.42, 0.25, 0.18, 0.15]
    channel = rng.choice(channels, size=n, p=channel_p)
    employment = rng.choice(EMPLOYMENT, size=n, p=[0.6, 0.2, 0.1, 0.1])
    age = np.clip(rng.normal(42, 12, n), 18, 90).round().astype("int64")
    income_factor = (
        pd.Series(employment)
        .map({"salaried": 1.0, "self_employed": 1.1, "unemployed": 0.35, "retired": 0.6})
        .to_numpy()
    )
    # Gradual covariate drift: incomes fall and loans grow a little every day.
    income = rng.lognormal(np.log(55_000 * (0.985**drift_days)), 0.45, n) * income_factor
    loan_amount = rng.lognormal(np.log(15_000 * (1.02**drift_days)), 0.6, n)
    credit_score = (
        np.clip(rng.normal(680 - 4 * drift_days, 70, n), 300, 850).round().astype("int64")
    )
    tenure_months = np.clip(rng.exponential(36, n), 0, 480).round().astype("int64")
    late_rate = 0.4 + np.clip((700 - credit_score) / 150, 0, None)
    late_payments = rng.poisson(late_rate).astype("int64")
    return pd.DataFrame(
        {
            "income": income.round(2),
            "age": age,
            "loan_amount": loan_amount.round(2),
            "credit_score": credit_score,
            "tenure_months": tenure_months,
            "late_payments": late_payments,
            "region": region,
            "channel": channel,
            "employment": employment,
        }
    )


def default_probability(
    frame: pd.DataFrame, *, concept_shift: bool = False
) -> npt.NDArray[np.float64]:
    """The true probability of default behind the labels."""
    dti = frame["loan_amount"].to_numpy() / frame["income"].to_numpy()
    credit = frame["credit_score"].to_numpy()
    late = frame["late_payments"].to_numpy()
    young_partner = ((frame["channel"] == "partner") & (frame["age"] < 28)).to_numpy()
    threshold = 0.2 if concept_shift else 0.45
    z = (
        -3.1
        + 2.6 * _sigmoid((dti - threshold) * 12)
        + 1.9 * _sigmoid((620 - credit) / 20)
        + 0.45 * np.minimum(late, LATE_CAP) ** 1.4
        + 1.3 * young_partner
        + 0.7 * (frame["employment"] == "unemployed").to_numpy()
        + 0.25 * (frame["region"] == "south").to_numpy()
        + 0.9 * (frame["channel"] == NEW_CHANNEL).to_numpy()
    )
    tenure = frame["tenure_months"].to_numpy()
    # Sudden concept drift: long-standing customers turn from safer to riskier.
    z += (0.8 if concept_shift else -0.6) * (tenure > 60)
    return _sigmoid(z)


@dataclass(frozen=True)
class _Truth:
    """How a day's labels were drawn, row by row: what the best prediction needs."""

    risk: npt.NDArray[np.float64]  # each row's default probability given its features
    odds: float  # label shift's resampling multiplied the odds of default by this (1: none)
    hidden: npt.NDArray[np.bool_]  # rows whose default comes from a signal no feature carries
    late: npt.NDArray[np.int64]  # each row's late payments, as drawn (before any breakage)


def generate_day(day: date, settings: GeneratorSettings) -> pd.DataFrame:
    """One day's batch: features, an event_time column and the world's label (`defaulted`,
    `risk_grade` or `days_late`, settings.task). Label shift resamples the applicants by
    default in every world."""
    return _draw(day, settings)[0]


def best_scores(day: date, settings: GeneratorSettings) -> npt.NDArray[np.float64]:
    """What the best prediction from each row's features is expected to score, row by row of
    `generate_day(day, settings)`, knowing how its label was drawn: for a classifier the
    chance that the most probable label is right, for a regression the expected absolute
    error of the conditional median (estimated from ERROR_DRAWS seeded draws a row). No model
    of the features can expect better."""
    frame, truth = _draw(day, settings)
    if settings.task == "binary":
        odds = truth.risk * truth.odds
        p = np.where(truth.hidden, _hidden_rate(), odds / (odds + 1.0 - truth.risk))
        return np.asarray(np.maximum(p, 1.0 - p), dtype=np.float64)
    log_risk = np.log(truth.risk)
    if settings.task == "multiclass":
        from scipy.special import ndtr

        low = ndtr((np.log(GRADE_EDGES[0]) - log_risk) / RISK_NOISE)
        high = 1.0 - ndtr((np.log(GRADE_EDGES[1]) - log_risk) / RISK_NOISE)
        return np.asarray(np.maximum.reduce([low, 1.0 - low - high, high]), dtype=np.float64)
    day_index = (day - settings.start_date).days
    rng = np.random.default_rng([settings.seed, day_index + 30_000])
    shape = (len(frame), ERROR_DRAWS)
    late = DAYS_PER_LATE_PAYMENT * np.minimum(truth.late, LATE_CAP)
    days = np.clip(
        DAYS_PER_RISK * np.exp(log_risk[:, None] + rng.normal(0.0, RISK_NOISE, shape))
        + late[:, None]
        + rng.normal(0.0, DAYS_NOISE, shape),
        0.0,
        None,
    )
    median = np.median(days, axis=1, keepdims=True)
    return np.asarray(np.abs(days - median).mean(axis=1), dtype=np.float64)


def _hidden_rate() -> float:
    """The underserved region's default rate: sigmoid(a + b h) averaged over h ~ N(0, 1)."""
    h = np.linspace(-8.0, 8.0, 4001)
    weights = np.exp(-h * h / 2)
    a, b = HIDDEN_LOGIT
    return float((weights * _sigmoid(a + b * h)).sum() / weights.sum())


def _draw(day: date, settings: GeneratorSettings) -> tuple[pd.DataFrame, _Truth]:
    """The day's batch and how its labels were drawn."""
    day_index = (day - settings.start_date).days
    rng = np.random.default_rng([settings.seed, day_index + 10_000])
    n = settings.rows_per_day
    active = day_index >= settings.change_day
    label_shift = settings.scenario == "label_shift" and active
    # Label shift keeps P(x | y) and raises P(y): draw more rows, then resample by class.
    frame = _features(rng, n * 4 if label_shift else n, day_index, settings)
    concept = settings.scenario == "concept_drift" and active
    risk = default_probability(frame, concept_shift=concept)
    label = rng.random(len(frame)) < risk
    hidden = np.zeros(len(frame), dtype=np.bool_)
    if settings.scenario == "underserved_group" and active:
        # One region's defaults come from a signal no feature carries (say, a local employer
        # closing), at about the others' rate: a model can only guess the base rate there,
        # so it misses most of that region's defaulters. Drawn from a generator of its own,
        # so that every other column and region matches `stable`'s batch of the day.
        hidden = (frame["region"] == UNDERSERVED_REGION).to_numpy()
        other = np.random.default_rng([settings.seed, day_index + 20_000])
        signal = other.normal(size=int(hidden.sum()))
        a, b = HIDDEN_LOGIT
        label[hidden] = other.random(len(signal)) < _sigmoid(a + b * signal)
    frame["defaulted"] = label.astype("int64")
    odds = 1.0
    if label_shift:
        positives = frame[frame["defaulted"] == 1]
        negatives = frame[frame["defaulted"] == 0]
        n_pos = min(len(positives), int(n * 0.45))
        if len(positives) and n_pos < n:
            # a positive kept with chance n_pos/#positives, a negative with (n - n_pos)/#negatives
            odds = (n_pos / len(positives)) / ((n - n_pos) / len(negatives))
        frame = pd.concat(
            [
                positives.sample(n_pos, random_state=int(rng.integers(2**31))),
                negatives.sample(n - n_pos, random_state=int(rng.integers(2**31))),
            ]
        ).sample(frac=1.0, random_state=int(rng.integers(2**31)))
        kept = frame.index.to_numpy()
        risk, hidden = risk[kept], hidden[kept]
    truth = _Truth(
        risk=risk, odds=odds, hidden=hidden, late=frame["late_payments"].to_numpy(dtype=np.int64)
    )
    if settings.task != "binary":
        # The same applicants and the same (possibly shifted) risk, read as a grade or as
        # days late: a concept drift moves both, as it moves the defaults.
        noisy = risk * np.exp(rng.normal(0.0, RISK_NOISE, len(frame)))
        if settings.task == "multiclass":
            grades = np.asarray(GRADES, dtype=object)
            frame["risk_grade"] = grades[np.digitize(noisy, GRADE_EDGES)]
        else:
            late = DAYS_PER_LATE_PAYMENT * np.minimum(truth.late, LATE_CAP)
            days = DAYS_PER_RISK * noisy + late + rng.normal(0.0, DAYS_NOISE, len(frame))
            frame["days_late"] = np.clip(days, 0.0, None).round(2)
        frame = frame.drop(columns="defaulted")
    seconds = np.sort(rng.integers(0, 86_400, len(frame)))
    start = datetime.combine(day, time())
    frame.insert(0, "event_time", pd.to_datetime(start) + pd.to_timedelta(seconds, unit="s"))
    frame = frame.reset_index(drop=True)
    return (_break(frame, settings, rng) if active else frame), truth


def _break(
    frame: pd.DataFrame, settings: GeneratorSettings, rng: np.random.Generator
) -> pd.DataFrame:
    """The broken-upstream scenarios: what a faulty producer does to a batch."""
    scenario = settings.scenario
    if scenario == "broken_nulls":
        frame["credit_score"] = frame["credit_score"].astype("float64")
        frame.loc[rng.random(len(frame)) < 0.3, "credit_score"] = np.nan
        frame.loc[rng.random(len(frame)) < 0.1, "income"] = np.nan
    elif scenario == "broken_types":
        text = [f"{score}pts" for score in frame["credit_score"]]
        for i in np.flatnonzero(rng.random(len(frame)) < 0.05):
            text[i] = "n/a"
        frame["credit_score"] = text
    elif scenario == "broken_missing_column":
        frame = frame.drop(columns=["tenure_months"])
    elif scenario == "broken_renamed_column":
        frame = frame.rename(columns={"credit_score": "creditScore"})
    return frame


def days(start: date, count: int) -> list[date]:
    """`count` consecutive days from `start`."""
    return [start + timedelta(days=i) for i in range(count)]
