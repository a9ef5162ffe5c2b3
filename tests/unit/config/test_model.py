"""The promotion policy: baselines and fairness."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[3]


def test_the_shipped_policy_checks_baselines_and_fairness_by_region() -> None:
    promotion = load_settings(REPO / "flywheel.yaml", env={}).promotion
    assert promotion.baseline is not None and promotion.fairness is not None
    assert promotion.baseline.estimator == "sklearn.linear_model.LogisticRegression"
    assert promotion.baseline.majority_class and promotion.baseline.margin > 0
    assert promotion.fairness.attribute == "region"


def test_an_empty_baseline_is_a_regularised_logistic_regression_and_the_majority_class() -> None:
    baseline = load_settings(None, env={}, overrides=["promotion.baseline={}"]).promotion.baseline
    assert baseline is not None
    assert baseline.estimator_for("binary") == "sklearn.linear_model.LogisticRegression"
    assert baseline.estimator_for("regression") == "sklearn.linear_model.Ridge"
    assert baseline.params == {} and baseline.majority_class
    assert load_settings(None, env={}).promotion.baseline is None


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "promotion.baseline.estimator=sklearn.linear_model.LogisticRegresion",
            "promotion.baseline.estimator (from --set promotion.baseline.estimator): Value error, "
            "'sklearn.linear_model.LogisticRegresion' does not exist in the installed scikit-learn",
        ),
        (
            "promotion.baseline.estimator=sklearn.nowhere.Thing",
            "'sklearn.nowhere.Thing' does not exist in the installed scikit-learn",
        ),
        (
            "promotion.baseline.estimator=xgboost.XGBClassifier",
            "promotion.baseline.estimator (from --set promotion.baseline.estimator): "
            "Value error, must be a dotted path inside sklearn",
        ),
        (
            "promotion.fairness.attribute=income",
            "promotion.fairness.attribute: 'income' is not a categorical feature, so it has no "
            "groups to compare (categorical: region, channel, employment)",
        ),
        (
            "promotion.fairness.attribute=gender",
            "promotion.fairness.attribute: 'gender' is not a categorical feature",
        ),
    ],
)
def test_a_baseline_that_cannot_be_imported_or_a_fairness_attribute_that_is_no_column_is_refused(
    override: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(None, env={}, overrides=[override])
    assert expected in str(error.value)
