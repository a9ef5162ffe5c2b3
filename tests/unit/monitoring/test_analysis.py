"""One window of a real registered version, on traffic written through the real loggers."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.batches import BatchSource
from flywheel.config import ContractSettings, MonitoringSettings
from flywheel.monitoring import analysis, estimation, intervals
from flywheel.monitoring import window as window_module
from flywheel.monitoring.logs import Prediction
from flywheel.monitoring.window import CBPE_SIMULATIONS, VersionReference, WindowReport
from flywheel.storage import LocalStore
from harness.monitored import Monitored, Window, reference_of, shifted_both_ways
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


def test_a_multiclass_window_is_measured_per_class(wine: Monitored, window: Window) -> None:
    # given the unseen rows served and labelled, by class name
    report = window(wine, wine.unseen, "store")
    # then the report is the task's: its classes, per-class drift, the predicted class' drift
    assert report.task == "multiclass" and report.classes == ("class_0", "class_1", "class_2")
    assert set(report.class_drift) == set(report.classes)
    assert report.prediction_drift is not None and report.prediction_drift.test == "chi2"
    # and on labels, the task's metrics with their intervals, and each class' own
    performance = report.performance
    assert performance.labelled == len(wine.unseen) and performance.unusable_labels == 0
    for metric in ("accuracy", "macro_f1", "roc_auc", "log_loss"):
        interval = performance.get(metric)  # type: ignore[arg-type]
        assert interval is not None and interval.low <= interval.value <= interval.high
    assert performance.rmse is None and set(performance.per_class) == set(report.classes)
    labels = wine.unseen["label"]
    assert {
        n: c.support for n, c in performance.per_class.items()
    } == labels.value_counts().to_dict()
    # and the estimate is CBPE's, the offline figures the evaluation's, the skew none
    assert report.estimate is not None and report.estimate.method == "CBPE"
    assert report.estimate.macro_f1 is not None and report.no_estimate is None
    assert report.offline is not None and set(report.offline.newest) == {
        "accuracy",
        "roc_auc",
        "macro_f1",
        "log_loss",
    }
    assert report.skew is not None and report.skew.agrees
    assert report.health.error_rate == 0 and report.health.nan_outputs == 0


def test_the_multiclass_cbpe_estimate_tracks_the_realised_accuracy_on_shifted_windows(
    wine: Monitored, window: Window
) -> None:
    # given windows of the unseen rows as they are, shifted to high malic acid (where this
    # model errs more) and to low (where it errs less); the relation of inputs to labels holds
    windows = shifted_both_ways(wine.unseen, "malic_acid")
    # when each is analysed
    reports = {k: window(wine, rows, k) for k, rows in windows.items()}
    # then each estimate's interval holds the realised accuracy
    realised, estimated = {}, {}
    for name, report in reports.items():
        assert report.performance.accuracy is not None and report.estimate is not None
        assert report.estimate.accuracy is not None
        realised[name] = report.performance.accuracy.value
        estimated[name] = report.estimate.accuracy
        assert estimated[name].low <= realised[name] <= estimated[name].high, name
    # and the estimate moves with the accuracy: lower where the model errs more
    assert realised["high"] < realised["low"] and estimated["high"].value < estimated["low"].value


def _requests(reference: VersionReference, rows: pd.DataFrame) -> list[Prediction]:
    """`rows` as one logged request each, answered by the version's model."""
    features = reference.contract.features
    assert reference.predictor is not None
    outputs = reference.predictor.outputs(rows)
    return [
        Prediction(str(i), reference.version, START.timestamp(), 1.0, features, (row,), (out,))
        for i, (row, out) in enumerate(
            zip(rows[list(features)].itertuples(index=False), map(tuple, outputs), strict=True)
        )
    ]


def test_multiclass_cbpe_fits_its_resampled_calibrators_once_per_version(
    wine: Monitored, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the wine version as monitoring loads it once, and two windows of its unseen rows
    reference = reference_of(wine)
    fitted: list[int] = []

    def counted(sample: object, simulations: int, **options: int) -> estimation.Resampled:
        fitted.append(simulations)
        return estimation.resampled(sample, simulations, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(window_module, "resampled", counted)
    half = len(wine.unseen) // 2
    windows = (wine.unseen.iloc[:half], wine.unseen.iloc[half:])
    # when both are analysed before their labels arrive
    reports = [_analyse(_requests(reference, rows), {}, reference) for rows in windows]
    # then the calibrators were refitted on resamples of the evaluation's sample once
    assert fitted == [CBPE_SIMULATIONS]
    # and each estimate is what refitting them for that window alone gives (the same seed)
    assert reference.evaluation is not None
    sample = reference.evaluation.probabilities_sample
    names = [str(c) for c in reference.contract.classes]
    for rows, report in zip(windows, reports, strict=True):
        assert reference.predictor is not None and report.estimate is not None
        outputs = reference.predictor.outputs(rows)
        calibrated = estimation.recalibrate(
            outputs, [reference.evaluation.calibration_per_class[n] for n in names]
        )
        alone = estimation.cbpe_multiclass(
            outputs,
            calibrated,
            0.95,
            calibrators=estimation.resampled(sample, CBPE_SIMULATIONS),
        )
        for metric, interval in alone.items():
            assert report.estimate.get(metric) == interval, metric


def test_binary_cbpe_fits_its_resampled_calibrators_once_per_version(
    served: Served, reference: VersionReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a binary version loaded once, and two days of its traffic
    fitted: list[int] = []
    resampled = intervals.resampled

    def counted(sample: object, simulations: int, **options: int) -> intervals.Resampled:
        fitted.append(simulations)
        return resampled(sample, simulations, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(intervals, "resampled", counted)
    days = [served(day)[0] for day in (6, 7)]
    # when both are analysed before their labels arrive
    reports = [_analyse(predictions, {}, reference) for predictions in days]
    # then the calibrators were refitted once, and each estimate is what the calibration's
    # draws for that window alone give (the same seed)
    assert fitted == [CBPE_SIMULATIONS]
    assert reference.evaluation is not None
    calibrator = intervals.calibrator(reference.evaluation.calibration)
    assert calibrator is not None
    for predictions, report in zip(days, reports, strict=True):
        scores = np.array([s for p in predictions for s in p.scores])
        draws = intervals.calibration_draws(
            reference.evaluation.scores_sample, scores, CBPE_SIMULATIONS
        )
        alone = intervals.cbpe(scores, calibrator(scores), 0.95, draws=draws)
        assert report.estimate is not None
        for metric, interval in alone.items():
            assert report.estimate.get(metric) == interval, metric


def test_a_label_of_a_class_the_version_never_learned_is_counted_not_scored(
    wine: Monitored, window: Window
) -> None:
    # given feedback naming a class that is not the model's on a fifth of the rows
    rows = wine.unseen.copy()
    rows.loc[rows.index[::5], "label"] = "class_9"
    # when analysed
    report = window(wine, rows, "store")
    # then those labels are counted as unusable and the rest are scored
    unknown = len(rows.index[::5])
    assert report.performance.unusable_labels == unknown
    assert report.performance.labelled == len(rows) - unknown


def test_a_regression_window_is_measured_by_its_errors(diabetes: Monitored, window: Window) -> None:
    # given the unseen rows served and labelled with their values
    report = window(diabetes, diabetes.unseen, "store")
    # then the predictions are tested against the version's own on its evaluation's batch
    assert report.task == "regression" and report.classes == () and report.class_drift == {}
    assert report.prediction_drift is not None and report.prediction_drift.test == "ks"
    assert not report.prediction_drift.drifted
    # and on labels: RMSE, MAE, R² and MAPE with intervals, as scikit-learn measures them
    performance = report.performance
    assert performance.accuracy is None and performance.labelled == len(diabetes.unseen)
    predicted = reference_of(diabetes).predictor.outputs(diabetes.unseen)[:, 0]  # type: ignore[union-attr]
    errors = predicted - diabetes.unseen["label"].to_numpy()
    assert performance.rmse is not None and performance.mae is not None
    assert performance.rmse.value == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-5)
    assert performance.mae.value == pytest.approx(np.mean(np.abs(errors)), rel=1e-5)
    assert performance.rmse.low < performance.rmse.value < performance.rmse.high
    assert performance.r2 is not None and performance.mape is not None
    # and before labels, the direct loss estimate, whose interval holds the realised errors
    estimate = report.estimate
    assert estimate is not None and estimate.method == "DLE" and estimate.calibration is None
    assert estimate.mae is not None and estimate.rmse is not None and estimate.accuracy is None
    assert estimate.mae.low <= performance.mae.value <= estimate.mae.high
    assert estimate.rmse.low <= performance.rmse.value <= estimate.rmse.high
    assert report.offline is not None and report.offline.newest["rmse"] is not None
    assert report.skew is not None and report.skew.agrees


def test_direct_loss_estimation_is_nannymls_on_shifted_windows(
    diabetes: Monitored, window: Window
) -> None:
    # given windows shifted to high and to low body mass index; NannyML 0.13.1's DLE (LightGBM
    # error models, fitted on the same evaluation batch with the same predictions) estimated
    # these MAE and RMSE on the same rows
    windows = shifted_both_ways(diabetes.unseen, "bmi")
    nannyml = {"as is": (42.881, 53.946), "high": (47.075, 58.062), "low": (36.986, 48.393)}
    # when each is analysed
    reports = {k: window(diabetes, rows, k) for k, rows in windows.items()}
    # then ours is within 5% of NannyML's (scikit-learn's gradient boosting, not LightGBM)
    for name, (mae, rmse) in nannyml.items():
        estimate = reports[name].estimate
        assert estimate is not None and estimate.mae is not None and estimate.rmse is not None
        assert estimate.mae.value == pytest.approx(mae, rel=0.05), name
        assert estimate.rmse.value == pytest.approx(rmse, rel=0.05), name
    # and the estimate moves with the errors: higher where the model errs more
    realised = {k: r.performance.mae.value for k, r in reports.items() if r.performance.mae}
    estimated = {
        k: r.estimate.mae.value for k, r in reports.items() if r.estimate and r.estimate.mae
    }
    assert realised["high"] > realised["low"] and estimated["high"] > estimated["low"]


def test_without_its_evaluation_batch_a_regression_says_it_has_no_estimate(
    diabetes: Monitored, window: Window, tmp_path: Path
) -> None:
    # given the evaluation's newest batch is gone from the source
    shutil.copytree(diabetes.source.store.root, tmp_path / "batches")
    (tmp_path / "batches" / "2026-01-03.parquet").unlink()
    gone = replace(diabetes, source=BatchSource(LocalStore(tmp_path / "batches")))
    # when a window is analysed
    report = window(gone, diabetes.unseen, "store")
    # then there is no estimate, the record says why, and the labels still measure the errors
    assert report.estimate is None and report.no_estimate is not None
    assert "no estimate before labels" in report.no_estimate and "2026-01-03" in report.no_estimate
    assert report.performance.rmse is not None
    # and the predictions are tested against the evaluation's sample of them
    assert report.prediction_drift is not None
