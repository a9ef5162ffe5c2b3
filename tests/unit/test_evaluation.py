"""Evaluation: metrics on known answers, thinned ROC curves, calibration, slices, gaps between
groups, flat names."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from flywheel.config import FairnessSettings, FeatureSettings, GeneratorSettings, ModelSettings
from flywheel.evaluation import (
    Evaluation,
    calibration,
    evaluate_model,
    expected_calibration_error,
    flat_metrics,
    group_fairness,
    roc,
    score,
    slice_scores,
)
from flywheel.predictor import Predictor
from flywheel.synthetic import generate_day
from flywheel.training import train

FEATURES = FeatureSettings()
# Four rows worked by hand: at 0.5 one of each class is right, and 3 of the 4
# (positive, negative) pairs are ordered correctly.
Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.6, 0.4, 0.9])


def test_scores_match_the_hand_worked_example() -> None:
    # when four rows are scored
    scores = score(Y, P)
    # then every metric is the value worked out by hand
    assert (scores.rows, scores.positive_rate) == (4, 0.5)
    assert scores.roc_auc == pytest.approx(0.75)
    assert scores.accuracy == 0.5 and scores.balanced_accuracy == 0.5 and scores.f1 == 0.5
    assert scores.confusion == ((1, 1), (1, 1))
    assert scores.brier == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert scores.log_loss == pytest.approx(-(2 * math.log(0.9) + 2 * math.log(0.4)) / 4)
    assert scores.get("roc_auc") == scores.roc_auc


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")  # scikit-learn
def test_one_class_leaves_ranking_metrics_undefined() -> None:
    # given rows of one class only, when scored
    scores = score(np.array([1, 1]), np.array([0.7, 0.9]))
    # then the ranking metrics are undefined (NaN to the gate, which fails on them) and the
    # rest are defined
    assert scores.roc_auc is None and scores.average_precision is None
    assert math.isnan(scores.get("roc_auc"))
    assert scores.accuracy == 1.0 and scores.positive_rate == 1.0


def test_the_roc_curve_is_exact_when_small_and_thinned_when_large() -> None:
    curve = roc(pd.Series(Y), P)
    assert curve.fpr == (0.0, 0.0, 0.5, 0.5, 1.0)
    assert curve.tpr == (0.0, 0.5, 0.5, 1.0, 1.0)
    # The first threshold is +inf in scikit-learn; the Kubeflow UI needs a finite number.
    assert curve.thresholds == (1.0, 0.9, 0.6, 0.4, 0.1)
    rng = np.random.default_rng(0)
    large = roc(pd.Series(rng.integers(0, 2, 5000)), rng.random(5000))
    assert len(large.fpr) == len(large.tpr) == len(large.thresholds) == 101
    assert (large.fpr[0], large.fpr[-1], large.tpr[-1]) == (0.0, 1.0, 1.0)
    assert list(large.fpr) == sorted(large.fpr)


def test_calibration_pairs_only_bins_that_have_rows() -> None:
    y = pd.Series([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.95, 0.98, 1.0])
    assert calibration(y, p) == (
        (0.05, 0.0),
        (0.15, 1.0),
        (pytest.approx((0.95 + 0.98 + 1.0) / 3), pytest.approx(2 / 3)),
    )


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")  # scikit-learn
def test_slices_count_rows_name_missing_values_and_leave_one_class_undefined() -> None:
    # given two regions with both classes, and missing regions holding one class only
    frame = pd.DataFrame({"region": ["north", "north", "south", "south", None, None]})
    y = pd.Series([0, 1, 0, 1, 1, 1])
    p = np.array([0.2, 0.8, 0.9, 0.1, 0.5, 0.6])
    # when the metric is computed per region
    slices = slice_scores(frame, y, p, ["region"], "roc_auc")["region"]
    # then each value has its rows and its own metric
    assert set(slices) == {"north", "south", "(missing)"}
    assert (slices["north"].rows, slices["north"].value) == (2, 1.0)
    assert (slices["south"].rows, slices["south"].value) == (2, 0.0)
    assert (slices["(missing)"].rows, slices["(missing)"].value) == (2, None)


def test_a_trained_model_is_evaluated_on_the_newest_batch_and_its_holdout() -> None:
    # given a model trained on four days
    gen = GeneratorSettings(rows_per_day=700)
    frame = pd.concat(
        [generate_day(date(2026, 1, 1) + timedelta(i), gen) for i in range(4)], ignore_index=True
    )
    result = train(frame, FEATURES, ModelSettings(params={"max_iter": 30}), "roc_auc")
    predictor = Predictor(result.model, FEATURES.numeric, FEATURES.categorical)
    newest = generate_day(date(2026, 1, 9), gen)
    # when it is evaluated as the candidate
    evaluated = evaluate_model(
        predictor, "candidate", None, newest, result.holdout, FEATURES, "roc_auc"
    )
    # then it is scored on both sets of rows, with a curve and every slice
    assert evaluated.holdout is not None and evaluated.holdout.rows == len(result.holdout)
    assert evaluated.newest.rows == 700 and evaluated.newest.roc_auc > 0.75
    assert set(evaluated.slices["region"]) == {"north", "south", "east", "west"}
    assert set(evaluated.slices) == set(FEATURES.categorical)
    assert sum(s.rows for s in evaluated.slices["region"].values()) == 700
    assert evaluated.roc.fpr[0] == 0.0 and evaluated.roc.tpr[-1] == 1.0
    assert len(evaluated.roc.fpr) <= 101
    # and the production model is scored on the newest batch only
    production = evaluate_model(predictor, "production", "v3", newest, None, FEATURES, "roc_auc")
    assert production.holdout is None and production.newest == evaluated.newest


def test_flat_metrics_name_role_split_and_metric_and_skip_what_is_missing() -> None:
    result = {
        "candidate": {
            "newest": {"roc_auc": 0.81234567, "f1": float("nan"), "rows": 700},
            "holdout": {"roc_auc": 0.8, "log_loss": 0.4},
        },
        "production": None,
    }
    assert flat_metrics(result) == {
        "candidate_newest_roc_auc": 0.812346,
        "candidate_holdout_roc_auc": 0.8,
        "candidate_holdout_log_loss": 0.4,
    }


def test_expected_calibration_error_weighs_each_bins_gap_by_its_rows() -> None:
    # given two bins: 0.15 predicted where 1 of 4 default (gap 0.1), 0.9 where 2 of 2 do (gap 0.1)
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.15, 0.15, 0.15, 0.15, 0.9, 0.9])
    assert expected_calibration_error(y, p) == pytest.approx((4 * 0.1 + 2 * 0.1) / 6)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.5, 0.5])) == 0.0


def test_group_fairness_reports_each_group_and_the_gaps_between_groups_of_enough_rows() -> None:
    # given three groups: a (TPR 1, selects 2 of 4), b (TPR 0, selects 0 of 4), c (1 row)
    frame = pd.DataFrame({"region": ["a"] * 4 + ["b"] * 4 + ["c"]})
    y = pd.Series([1, 1, 0, 0, 1, 1, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.2, 0.1, 0.3, 0.2, 0.1, 0.1, 0.9])
    # when measured with groups of at least 2 rows compared
    result = group_fairness(frame, y, p, FairnessSettings(attribute="region", min_rows=2))
    # then each group has its rates, and the one-row group is reported but not compared
    a, b, c = result.groups["a"], result.groups["b"], result.groups["c"]
    assert (a.rows, a.positives, a.true_positive_rate, a.selection_rate) == (4, 2, 1.0, 0.5)
    assert (b.true_positive_rate, b.selection_rate) == (0.0, 0.0)
    assert (a.compared, b.compared, c.compared) == (True, True, False)
    assert result.equal_opportunity_difference == 1.0
    assert result.demographic_parity_difference == 0.5
    assert result.calibration_gap == pytest.approx(abs(a.calibration_error - b.calibration_error))


def test_a_group_without_positives_has_no_true_positive_rate_and_one_group_has_no_gap() -> None:
    frame = pd.DataFrame({"region": ["a", "a", "b", "b"]})
    result = group_fairness(
        frame,
        pd.Series([0, 0, 1, 0]),
        np.array([0.1, 0.7, 0.6, 0.2]),
        FairnessSettings(attribute="region", min_rows=2),
    )
    assert result.groups["a"].true_positive_rate is None
    assert result.equal_opportunity_difference is None  # only b has positives
    assert result.demographic_parity_difference == 0.0
    alone = group_fairness(
        frame,
        pd.Series([0, 0, 1, 0]),
        np.array([0.1, 0.7, 0.6, 0.2]),
        FairnessSettings(attribute="region", min_rows=3),
    )
    assert alone.demographic_parity_difference is None and alone.calibration_gap is None


def test_flat_metrics_add_the_baselines_and_the_candidates_gaps() -> None:
    result = {
        "candidate": {
            "newest": {"roc_auc": 0.8},
            "holdout": None,
            "fairness": {"equal_opportunity_difference": 0.1234567, "calibration_gap": None},
        },
        "production": None,
        "baselines": {"majority_class": {"newest": {"roc_auc": 0.5, "accuracy": 0.7}}},
    }
    assert flat_metrics(result) == {
        "candidate_newest_roc_auc": 0.8,
        "baseline_majority_class_newest_roc_auc": 0.5,
        "baseline_majority_class_newest_accuracy": 0.7,
        "candidate_equal_opportunity_difference": 0.123457,
    }


def test_an_evaluation_recorded_before_baselines_and_fairness_still_reads() -> None:
    # given an evaluation.json of an older version, without the new keys
    scores = score(Y, P).model_dump(mode="json")
    model = {
        "role": "candidate",
        "version": None,
        "newest": scores,
        "holdout": scores,
        "roc": {"fpr": [0.0], "tpr": [0.0], "thresholds": [1.0]},
        "calibration": [],
        "slices": {},
    }
    old = {"metric": "roc_auc", "newest_batch": "d", "candidate": model, "production": None}
    evaluation = Evaluation.model_validate_json(json.dumps(old))
    assert evaluation.baselines == {} and evaluation.candidate.fairness is None


def test_flat_metrics_carry_each_features_mean_importance() -> None:
    result = {
        "candidate": {
            "newest": {"roc_auc": 0.8},
            "holdout": None,
            "importance": {"income": {"mean": 0.0412345678, "low": 0.03}, "age": {"mean": -0.001}},
        },
        "production": None,
    }
    assert flat_metrics(result) == {
        "candidate_newest_roc_auc": 0.8,
        "candidate_importance_income": 0.041235,
        "candidate_importance_age": -0.001,
    }


def test_a_multiclass_model_is_scored_per_class_and_on_the_whole() -> None:
    # given three classes and probabilities that favour the right one, but for one row
    y = np.array([0, 1, 2, 2, 1, 0])
    p = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.2, 0.7],
            [0.1, 0.6, 0.3],  # a 2 read as a 1
            [0.3, 0.6, 0.1],
            [0.6, 0.3, 0.1],
        ]
    )
    scores = score(y, p, "multiclass")
    assert scores.task == "multiclass" and scores.accuracy == pytest.approx(5 / 6)
    assert scores.confusion == ((2, 0, 0), (0, 2, 0), (0, 1, 1))
    assert scores.per_class["2"].recall == 0.5 and scores.per_class["1"].precision == pytest.approx(
        2 / 3
    )
    assert scores.roc_auc is not None and 0.9 < scores.roc_auc <= 1.0
    assert scores.positive_rate is None and scores.rmse is None


def test_a_regression_is_scored_by_its_errors_and_mape_only_without_zero_labels() -> None:
    y = np.array([10.0, 20.0, 30.0, 40.0])
    predicted = np.array([12.0, 18.0, 33.0, 37.0])
    scores = score(y, predicted.reshape(-1, 1), "regression")
    assert scores.rmse == pytest.approx(np.sqrt((4 + 4 + 9 + 9) / 4))
    assert scores.mae == pytest.approx(2.5)
    assert scores.mape == pytest.approx(np.mean([0.2, 0.1, 0.1, 0.075]))
    assert scores.get("rmse") == scores.rmse and scores.roc_auc is None
    assert score(np.array([0.0, 1.0]), np.array([0.5, 1.0]), "regression").mape is None


def test_the_error_gap_between_groups_is_any_tasks_and_the_rates_a_binary_ones() -> None:
    from flywheel.config import FairnessSettings

    frame = pd.DataFrame({"region": ["n", "n", "s", "s"]})
    rules = FairnessSettings(attribute="region", min_rows=1)
    # a regression: mean absolute error 1 in n, 4 in s
    values = group_fairness(
        frame,
        np.array([10.0, 20.0, 10.0, 20.0]),
        np.array([[11.0], [19.0], [14.0], [16.0]]),
        rules,
        "regression",
    )
    assert values.error_gap == pytest.approx(3.0)
    assert (
        values.groups["s"].selection_rate is None and values.demographic_parity_difference is None
    )
    # a multiclass model: every answer right in n, half in s
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    classes = group_fairness(frame, np.array([0, 2, 0, 2]), p, rules, "multiclass")
    assert classes.error_gap == pytest.approx(0.5) and classes.equal_opportunity_difference is None
