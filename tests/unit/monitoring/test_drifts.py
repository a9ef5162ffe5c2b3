"""A window's drift tests on traffic written through the real loggers: each feature against
the version's reference rows or its contract's bins, and the scores against its evaluation's."""

from __future__ import annotations

from dataclasses import replace

from flywheel.config import MonitoringSettings
from flywheel.monitoring import drifts
from flywheel.monitoring.served import Logged
from flywheel.monitoring.window import FeatureDrift, VersionReference
from harness.traffic import Served

SETTINGS = MonitoringSettings()


def _features(served: Served, reference: VersionReference, day: int) -> dict[str, FeatureDrift]:
    predictions, _ = served(day, "covariate_drift")
    rows = Logged(predictions, "binary", 2)
    found = drifts.feature_drift(rows, reference.contract, reference.rows, SETTINGS)
    return {f.feature: f for f in found}


def test_covariate_drift_is_found_in_the_drifted_features_and_the_scores(
    served: Served, reference: VersionReference
) -> None:
    # given a day long after incomes started falling and loans growing
    predictions, _ = served(40, "covariate_drift")
    rows = Logged(predictions, "binary", 2)
    # when its features and scores are tested
    features = drifts.feature_drift(rows, reference.contract, reference.rows, SETTINGS)
    answers = rows.answers
    scores = drifts.prediction_drift(answers.outputs[answers.usable], reference, SETTINGS)
    # then those features drifted far beyond chance, the others did not, nor did the scores
    # stay put: they are tested against the evaluation's stored sample of scores
    p = {f.feature: f.result.p_value for f in features}
    assert len(p) == 9
    assert all(p[name] < 1e-6 for name in ("income", "loan_amount", "credit_score")), p
    assert all(p[name] > 1e-3 for name in ("region", "channel", "employment")), p
    assert scores is not None and scores.drifted and scores.test == "ks"


def test_a_drift_needs_both_a_significant_test_and_an_effect(
    served: Served, reference: VersionReference
) -> None:
    # given the drifted day, its features tested
    results = {name: f.result for name, f in _features(served, reference, 40).items()}
    # then every feature carries its test and its effect, and drifted only with both
    assert results["income"].test == "ks" and results["income"].effect == "wasserstein"
    assert results["region"].test == "chi2" and results["region"].effect == "jensen_shannon"
    for result in results.values():
        assert result.p_value is not None and result.effect_size is not None
        assert result.distance is not None
        assert result.drifted == (
            result.p_value < result.threshold and result.effect_size > result.distance
        )
    assert {"income", "loan_amount", "credit_score"} <= {
        name for name, result in results.items() if result.drifted
    }


def test_without_the_reference_rows_the_contract_bins_are_tested(
    served: Served, reference: VersionReference
) -> None:
    # given the reference batches are gone
    found = _features(served, replace(reference, rows=None), 40)
    # then numeric features are tested on their bins, and the drift is still found
    assert {f.result.test for f in found.values()} == {"chi2"}
    assert {"income", "loan_amount", "credit_score"} <= {
        name for name, f in found.items() if f.result.drifted
    }


def test_the_tests_take_their_level_effect_limit_and_minimum_count_from_the_settings() -> None:
    settings = MonitoringSettings(p_value=0.01, distance=0.2, psi_min_expected=10)
    assert drifts.drift_limits(settings) == {"p_value": 0.01, "distance": 0.2, "min_expected": 10}
