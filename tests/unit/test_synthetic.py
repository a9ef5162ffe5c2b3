"""The batch generator: deterministic, realistic, and each scenario does what it says."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from flywheel.config import GeneratorSettings
from flywheel.synthetic import (
    NEW_CHANNEL,
    UNDERSERVED_REGION,
    best_scores,
    default_probability,
    generate_day,
)

DAY = date(2026, 1, 10)


def test_same_seed_same_batch_and_other_seed_differs() -> None:
    settings = GeneratorSettings(rows_per_day=300)
    pd.testing.assert_frame_equal(generate_day(DAY, settings), generate_day(DAY, settings))
    other = generate_day(DAY, settings.model_copy(update={"seed": 7}))
    assert not other.equals(generate_day(DAY, settings))


def test_a_day_does_not_depend_on_the_days_generated_before() -> None:
    settings = GeneratorSettings(rows_per_day=200)
    generate_day(date(2026, 1, 3), settings)
    assert generate_day(DAY, settings).equals(generate_day(DAY, settings))


def test_stable_batches_have_the_promised_columns_and_a_learnable_label() -> None:
    frame = generate_day(DAY, GeneratorSettings(rows_per_day=3000))
    assert list(frame.columns) == [
        "event_time",
        "income",
        "age",
        "loan_amount",
        "credit_score",
        "tenure_months",
        "late_payments",
        "region",
        "channel",
        "employment",
        "defaulted",
    ]
    assert frame["event_time"].dt.date.eq(DAY).all()
    assert 0.15 < frame["defaulted"].mean() < 0.4
    # The label follows the true (non-linear) probability: high-risk rows default more.
    p = default_probability(frame)
    high, low = frame[p > 0.5], frame[p < 0.1]
    assert high["defaulted"].mean() > 0.5 > 0.15 > low["defaulted"].mean()


def _pair(scenario: str, **extra: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    base = GeneratorSettings(rows_per_day=3000, change_day=2, scenario="stable")
    changed = base.model_copy(update={"scenario": scenario, **extra})
    return generate_day(DAY, base), generate_day(DAY, changed)


def test_gradual_covariate_drift_moves_features_more_each_day() -> None:
    settings = GeneratorSettings(rows_per_day=3000, change_day=2, scenario="covariate_drift")
    early = generate_day(date(2026, 1, 4), settings)["credit_score"].mean()
    late = generate_day(date(2026, 1, 20), settings)["credit_score"].mean()
    before = generate_day(date(2026, 1, 2), settings)["credit_score"].mean()
    assert before - 20 < early < before and late < early - 40


def test_sudden_concept_drift_changes_the_label_not_the_features() -> None:
    stable, drifted = _pair("concept_drift")
    pd.testing.assert_series_equal(stable["income"], drifted["income"])
    assert drifted["defaulted"].mean() > stable["defaulted"].mean() + 0.1


def test_label_shift_raises_the_positive_rate() -> None:
    stable, shifted = _pair("label_shift")
    assert len(shifted) == len(stable)
    assert shifted["defaulted"].mean() == pytest.approx(0.45, abs=0.02)


def test_new_category_appears_after_the_change_day_only() -> None:
    settings = GeneratorSettings(rows_per_day=2000, change_day=5, scenario="new_category")
    assert NEW_CHANNEL not in set(generate_day(date(2026, 1, 3), settings)["channel"])
    assert NEW_CHANNEL in set(generate_day(date(2026, 1, 6), settings)["channel"])


@pytest.mark.parametrize(
    ("scenario", "check"),
    [
        ("broken_nulls", lambda f: f["credit_score"].isna().mean() > 0.2),
        ("broken_types", lambda f: f["credit_score"].astype(str).str.endswith("pts").mean() > 0.9),
        ("broken_missing_column", lambda f: "tenure_months" not in f.columns),
        (
            "broken_renamed_column",
            lambda f: "creditScore" in f.columns and "credit_score" not in f.columns,
        ),
    ],
)
def test_broken_upstream_scenarios_break_the_batch(scenario: str, check: object) -> None:
    _, broken = _pair(scenario)
    assert check(broken)  # type: ignore[operator]


def test_an_underserved_group_gets_labels_the_features_cannot_explain() -> None:
    # given the same day, stable and with one region served worse
    stable, served_worse = _pair("underserved_group")
    region = served_worse["region"] == UNDERSERVED_REGION
    # then the features are untouched, and so are the other regions' labels
    pd.testing.assert_frame_equal(
        stable.drop(columns="defaulted"), served_worse.drop(columns="defaulted")
    )
    pd.testing.assert_series_equal(stable["defaulted"][~region], served_worse["defaulted"][~region])
    # and in that region the true probability no longer ranks the defaulters, at about the
    # others' default rate
    p = default_probability(served_worse)
    assert roc_auc_score(served_worse["defaulted"][~region], p[~region]) > 0.75
    assert abs(roc_auc_score(served_worse["defaulted"][region], p[region]) - 0.5) < 0.1
    assert abs(served_worse["defaulted"][region].mean() - stable["defaulted"].mean()) < 0.1


@pytest.mark.parametrize(
    ("task", "label", "kind"),
    [("multiclass", "risk_grade", "multiclass"), ("regression", "days_late", "continuous")],
)
def test_each_world_writes_its_label_and_a_concept_drift_moves_it(
    task: str, label: str, kind: str
) -> None:
    from sklearn.utils.multiclass import type_of_target

    stable = GeneratorSettings(task=task, rows_per_day=3000, change_day=2)  # type: ignore[arg-type]
    drifted = stable.model_copy(update={"scenario": "concept_drift"})
    before = generate_day(date(2026, 1, 5), stable)
    after = generate_day(date(2026, 1, 5), drifted)
    # given the same applicants on the same day
    assert label in before.columns and "defaulted" not in before.columns
    assert type_of_target(before[label]) == kind
    pd.testing.assert_frame_equal(before.drop(columns=label), after.drop(columns=label))
    # then the concept drift makes long-standing customers riskier: a higher grade, more days late
    long = before["tenure_months"] > 60
    if task == "multiclass":
        share = lambda f: (f.loc[long, label] == "high").mean()  # noqa: E731
    else:
        share = lambda f: f.loc[long, label].mean()  # noqa: E731
    assert share(after) > share(before) * 1.3


@pytest.mark.parametrize(
    "scenario", ["stable", "concept_drift", "label_shift", "underserved_group"]
)
def test_the_best_scores_bound_what_a_model_learns_and_stay_close_to_it(scenario: str) -> None:
    # given a binary world after its change: the best prediction the features allow knows
    # the label's true probability given them (label shift's resampling and the underserved
    # region's hidden signal included), row by row the chance its label is right
    from sklearn.ensemble import HistGradientBoostingClassifier

    settings = GeneratorSettings(rows_per_day=10_000, change_day=2, scenario=scenario)  # type: ignore[arg-type]
    frame = generate_day(DAY, settings)
    best = best_scores(DAY, settings)
    assert len(best) == len(frame) and ((best >= 0.5) & (best <= 1.0)).all()
    # when a model learns the same world from two other days
    train = pd.concat([generate_day(date(2026, 1, d), settings) for d in (8, 9)])
    columns = [c for c in frame.columns if c not in ("event_time", "defaulted")]
    categorical = dict.fromkeys(("region", "channel", "employment"), "category")
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(train[columns].astype(categorical), train["defaulted"])
    learned = (model.predict(frame[columns].astype(categorical)) == frame["defaulted"]).mean()
    # then it does not beat the best scores' mean (beyond 3 standard errors of a day's
    # accuracy), and comes within a few points of it
    error = 3 * (0.25 / len(frame)) ** 0.5
    assert best.mean() - 0.03 < learned < best.mean() + error, (learned, best.mean())
    if scenario == "stable":  # and the true probability's own prediction realises them
        right = (default_probability(frame) >= 0.5) == (frame["defaulted"] == 1)
        assert abs(best.mean() - right.mean()) < error


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_the_best_scores_of_the_other_worlds_match_the_labels_drawn(task: str) -> None:
    # given 5,000 rows of each world, and the best prediction from the risk behind the label
    settings = GeneratorSettings(task=task, rows_per_day=5_000)  # type: ignore[arg-type]
    frame = generate_day(DAY, settings)
    best = best_scores(DAY, settings)
    assert len(best) == len(frame)
    if task == "multiclass":
        # then the most probable grade is right more often than a guess among three
        assert ((best > 1 / 3) & (best <= 1.0)).all()
        assert 0.75 < best.mean() < 0.95
    else:
        # then the expected absolute error of the conditional median is a few days, below
        # what the best constant (the median of all rows) does
        constant = (frame["days_late"] - frame["days_late"].median()).abs().mean()
        assert 2.0 < best.mean() < constant
