"""One window of a real registered version, on traffic written through the real loggers."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from flywheel.config import ContractSettings, MonitoringSettings
from flywheel.monitoring import analysis
from flywheel.monitoring.analysis import VersionReference, WindowReport
from flywheel.monitoring.logs import Prediction
from harness.traffic import END, START, Served


def _analyse(
    predictions: list[Prediction],
    labels: dict[str, tuple[int, ...]],
    reference: VersionReference,
    **settings: object,
) -> WindowReport:
    return analysis.analyse_window(
        predictions,
        labels,
        reference,
        MonitoringSettings(**settings),  # type: ignore[arg-type]
        model="loan-default",
        role="production",
        start=START,
        end=END,
        skipped={},
    )


def test_stable_traffic_shows_no_drift_agrees_offline_and_matches_its_evaluation(
    served: Served, reference: VersionReference
) -> None:
    # given a day like the training days, served and labelled
    predictions, labels = served(6)
    # when the window is analysed
    report = _analyse(predictions, labels, reference)
    # then at most the odd feature fires by chance (nine tests at the 5% level), the dataset
    # has not drifted, nor have the scores, and re-scoring offline gives the served scores
    assert report.drifted_share is not None and report.drifted_share <= 2 / 9
    assert not report.dataset_drift
    assert report.prediction_drift is not None and not report.prediction_drift.drifted
    assert report.skew is not None and report.skew.sampled == 200 and report.skew.agrees
    # and the labelled accuracy and the CBPE estimate overlap, beside the offline value
    measured, estimated = report.performance.accuracy, report.estimate.accuracy
    assert report.performance.labelled == 600
    assert measured.low <= estimated.high and estimated.low <= measured.high
    assert report.offline is not None and report.offline.newest["accuracy"] is not None
    assert report.estimate.method == "CBPE" and report.estimate.assumptions
    # and health counts the traffic
    health = report.health
    assert (health.requests, health.rows, health.nan_outputs, health.error_rate) == (30, 600, 0, 0)
    assert health.latency_p95_ms == 6.0
    assert 0 < health.model_age_hours < 24


def test_covariate_drift_is_found_in_the_drifted_features(
    served: Served, reference: VersionReference
) -> None:
    # given a day long after incomes started falling and loans growing
    predictions, labels = served(40, "covariate_drift")
    # when analysed
    report = _analyse(predictions, labels, reference)
    # then those features drifted far beyond chance, and so did the scores
    p = {f.feature: f.result.p_value for f in report.features}
    assert all(p[name] < 1e-6 for name in ("income", "loan_amount", "credit_score")), p
    assert all(p[name] > 1e-3 for name in ("region", "channel", "employment")), p
    drifted = {f.feature for f in report.features if f.result.drifted}
    assert report.drifted_share == len(drifted) / 9
    assert report.prediction_drift is not None and report.prediction_drift.drifted


def test_a_large_window_switches_to_distances(served: Served, reference: VersionReference) -> None:
    # given the same drifted day with the small-window limit below its size
    predictions, labels = served(40, "covariate_drift")
    # when analysed
    report = _analyse(predictions, labels, reference, large_window_rows=100)
    # then numeric features use Wasserstein and categorical ones Jensen-Shannon
    tests = {f.feature: f.result.test for f in report.features}
    assert tests["income"] == "wasserstein" and tests["region"] == "jensen_shannon"
    assert {"income", "loan_amount", "credit_score"} <= {
        f.feature for f in report.features if f.result.drifted
    }


def test_scores_that_differ_from_the_registered_model_are_skew(
    served: Served, reference: VersionReference
) -> None:
    # given a server whose scores are off by 0.01
    predictions, labels = served(6, shift_scores=0.01)
    # when analysed
    report = _analyse(predictions, labels, reference)
    # then every sampled row disagrees
    assert report.skew is not None and report.skew.disagreeing == report.skew.sampled
    assert report.skew.max_difference == pytest.approx(0.01, abs=1e-5)


def test_before_labels_arrive_only_the_estimate_is_there(
    served: Served, reference: VersionReference
) -> None:
    # given a window whose labels have not arrived
    predictions, _ = served(6)
    # when analysed without labels
    report = _analyse(predictions, {}, reference)
    # then there is no measured performance, and an estimate with its interval
    assert report.performance.labelled == 0 and report.performance.accuracy is None
    assert report.estimate is not None and report.estimate.accuracy is not None
    assert (
        report.estimate.accuracy.low
        < report.estimate.accuracy.value
        < report.estimate.accuracy.high
    )


def _binary(*scores: float) -> tuple[tuple[float, float], ...]:
    """A binary classifier's logged answers of P(class 1) `scores`."""
    return tuple((1 - s, s) for s in scores)


def test_nan_and_infinite_values_are_counted_and_kept_out_of_metrics(
    reference: VersionReference,
) -> None:
    # given one request with a NaN score and an infinite input, and a sound one
    features = reference.contract.features
    row = tuple(reference.contract.typical_row()[f] for f in features)
    bad = (math.inf, *row[1:])
    predictions = [
        Prediction("a", "v1", START.timestamp(), 1.0, features, (bad, row), _binary(math.nan, 0.2)),
        Prediction("b", "v1", START.timestamp(), 1.0, features, (row,), _binary(0.3)),
    ]
    # when analysed with labels for both
    report = _analyse(predictions, {"a": (1, 0), "b": (0,)}, reference)
    # then health counts them, and only the finite scores are scored
    assert report.health.nan_outputs == 1 and report.health.infinite_inputs == 1
    assert report.health.error_rate == 0.5
    assert report.performance.labelled == 2


def test_without_the_reference_rows_the_contract_bins_are_tested(
    served: Served, reference: VersionReference
) -> None:
    # given the reference batches are gone
    predictions, labels = served(40, "covariate_drift")
    # when analysed on the contract alone
    report = _analyse(predictions, labels, replace(reference, rows=None))
    # then numeric features are tested on their bins, and the drift is still found
    assert {f.result.test for f in report.features} == {"chi2"}
    assert {"income", "loan_amount", "credit_score"} <= {
        f.feature for f in report.features if f.result.drifted
    }


def test_training_data_age_is_counted_from_the_newest_training_day(
    reference: VersionReference,
) -> None:
    newest = max(date.fromisoformat(b[:10]) for b in reference.contract.batches)
    end = datetime.combine(newest, datetime.min.time(), UTC) + timedelta(days=3)
    report = analysis.analyse_window(
        [],
        {},
        reference,
        MonitoringSettings(),
        model="m",
        role="production",
        start=end - timedelta(days=1),
        end=end,
        skipped={"unknown version": 2},
    )
    assert report.health.data_age_hours == 48
    assert report.health.skipped_lines == {"unknown version": 2}
    assert report.features == () and report.estimate is None


def test_served_rows_are_held_to_the_contracts_checks_with_its_tolerances(
    reference: VersionReference,
) -> None:
    # given 100 typical rows, a fifth of them without a credit score and a tenth with a
    # credit score of 2,000 (the contract's range is about 300 to 850)
    features = reference.contract.features
    typical = reference.contract.typical_row()
    rows = []
    for i in range(100):
        score = None if i % 5 == 0 else 2000.0 if i % 10 == 1 else typical["credit_score"]
        rows.append(tuple({**typical, "credit_score": score}[f] for f in features))
    scores = _binary(*(0.2 for _ in rows))
    predictions = [Prediction("a", "v1", START.timestamp(), 1.0, features, tuple(rows), scores)]
    # when analysed with the default contract policy, and with a lenient one
    strict = analysis.analyse_window(
        predictions,
        {},
        reference,
        MonitoringSettings(),
        model="m",
        role="production",
        start=START,
        end=END,
        skipped={},
    )
    lenient = analysis.analyse_window(
        predictions,
        {},
        reference,
        MonitoringSettings(),
        model="m",
        role="production",
        start=START,
        end=END,
        skipped={},
        contract_policy=ContractSettings(null_rate_tolerance=0.5, max_out_of_range_fraction=0.2),
    )
    # then both failures are named by the strict one, and none by the lenient one
    assert strict.invariants is not None and not strict.invariants.hold
    found = {(v.column, v.check) for v in strict.invariants.violations}
    assert found == {("credit_score", "null rate"), ("credit_score", "range")}
    assert lenient.invariants is not None and lenient.invariants.hold
    assert lenient.invariants.rows == 100


def test_an_empty_window_has_no_invariants(reference: VersionReference) -> None:
    report = _analyse([], {}, reference)
    assert report.invariants is None
