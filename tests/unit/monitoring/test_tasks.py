"""Monitoring beyond binary, on real small models: wine (multiclass, classes by name) and diabetes
(regression), trained through flywheel.training.train and registered, with traffic logged the
way serving writes it."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.config import MonitoringSettings, Settings
from flywheel.monitoring import analysis, page, prometheus
from flywheel.monitoring.analysis import VersionReference, WindowReport
from flywheel.monitoring.logs import Skipped, read_labels, read_predictions
from flywheel.monitoring.monitor import load_reference, monitor
from flywheel.registry import Registry
from flywheel.storage import LocalStore
from harness.monitored import Monitored, monitored, shifted
from harness.traffic import END, START, log_traffic


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Monitored:
    return monitored("wine", tmp_path_factory.mktemp("wine"))


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> Monitored:
    return monitored("diabetes", tmp_path_factory.mktemp("diabetes"))


def _reference(served: Monitored) -> VersionReference:
    return load_reference(Registry(served.store, served.name), served.source, served.version)


def _window(served: Monitored, rows: pd.DataFrame, where: Path, **settings: object) -> WindowReport:
    """`rows` served by the version and labelled, read back and analysed as one window."""
    shutil.copytree(served.store.root, where)
    store = LocalStore(where)
    log_traffic(store, served.name, served.version, rows)
    skipped = Skipped()
    predictions = read_predictions(store, served.name, {served.version}, START, END, skipped)
    labels = read_labels(store, served.name, {served.version}, START, END, skipped)
    assert not skipped.counts
    return analysis.analyse_window(
        predictions,
        labels,
        _reference(served),
        MonitoringSettings(**settings),  # type: ignore[arg-type]
        model=served.name,
        role="production",
        start=START,
        end=END,
        skipped={},
    )


def test_a_multiclass_window_is_measured_per_class(wine: Monitored, tmp_path: Path) -> None:
    # given the unseen rows served and labelled, by class name
    report = _window(wine, wine.unseen, tmp_path / "store")
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
    wine: Monitored, tmp_path: Path
) -> None:
    # given windows of the unseen rows as they are, shifted to high malic acid (where this
    # model errs more) and to low (where it errs less); the relation of inputs to labels holds
    low = wine.unseen.assign(order=-wine.unseen["malic_acid"])
    windows = {
        "as is": wine.unseen,
        "high": shifted(wine.unseen, "malic_acid", 400, seed=1),
        "low": shifted(low, "order", 400, seed=2).drop(columns="order"),
    }
    # when each is analysed
    reports = {k: _window(wine, rows, tmp_path / k) for k, rows in windows.items()}
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


def test_a_label_of_a_class_the_version_never_learned_is_counted_not_scored(
    wine: Monitored, tmp_path: Path
) -> None:
    # given feedback naming a class that is not the model's on a fifth of the rows
    rows = wine.unseen.copy()
    rows.loc[rows.index[::5], "label"] = "class_9"
    # when analysed
    report = _window(wine, rows, tmp_path / "store")
    # then those labels are counted as unusable and the rest are scored
    unknown = len(rows.index[::5])
    assert report.performance.unusable_labels == unknown
    assert report.performance.labelled == len(rows) - unknown


def test_a_regression_window_is_measured_by_its_errors(diabetes: Monitored, tmp_path: Path) -> None:
    # given the unseen rows served and labelled with their values
    report = _window(diabetes, diabetes.unseen, tmp_path / "store")
    # then the predictions are tested against the version's own on its evaluation's batch
    assert report.task == "regression" and report.classes == () and report.class_drift == {}
    assert report.prediction_drift is not None and report.prediction_drift.test == "ks"
    assert not report.prediction_drift.drifted
    # and on labels: RMSE, MAE, R² and MAPE with intervals, as scikit-learn measures them
    performance = report.performance
    assert performance.accuracy is None and performance.labelled == len(diabetes.unseen)
    predicted = _reference(diabetes).predictor.outputs(diabetes.unseen)[:, 0]  # type: ignore[union-attr]
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
    diabetes: Monitored, tmp_path: Path
) -> None:
    # given windows shifted to high and to low body mass index; NannyML 0.13.1's DLE (LightGBM
    # error models, fitted on the same evaluation batch with the same predictions) estimated
    # these MAE and RMSE on the same rows
    low = diabetes.unseen.assign(order=-diabetes.unseen["bmi"])
    windows = {
        "as is": diabetes.unseen,
        "high": shifted(diabetes.unseen, "bmi", 400, seed=1),
        "low": shifted(low, "order", 400, seed=2).drop(columns="order"),
    }
    nannyml = {"as is": (42.881, 53.946), "high": (47.075, 58.062), "low": (36.986, 48.393)}
    # when each is analysed
    reports = {k: _window(diabetes, rows, tmp_path / k) for k, rows in windows.items()}
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
    diabetes: Monitored, tmp_path: Path
) -> None:
    # given the evaluation's newest batch is gone from the source
    shutil.copytree(diabetes.source.store.root, tmp_path / "batches")
    (tmp_path / "batches" / "2026-01-03.parquet").unlink()
    gone = Monitored(
        **{**diabetes.__dict__, "source": type(diabetes.source)(LocalStore(tmp_path / "batches"))}
    )
    # when a window is analysed
    report = _window(gone, diabetes.unseen, tmp_path / "store")
    # then there is no estimate, the record says why, and the labels still measure the errors
    assert report.estimate is None and report.no_estimate is not None
    assert "no estimate before labels" in report.no_estimate and "2026-01-03" in report.no_estimate
    assert report.performance.rmse is not None
    # and the predictions are tested against the evaluation's sample of them
    assert report.prediction_drift is not None


def test_the_page_and_the_metrics_carry_each_tasks_figures(
    wine: Monitored, diabetes: Monitored, tmp_path: Path
) -> None:
    plots = re.compile(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"')
    multiclass = _window(wine, wine.unseen, tmp_path / "wine")
    regression = _window(diabetes, diabetes.unseen, tmp_path / "diabetes")
    # a multiclass page: accuracy, macro F1, ROC AUC, drift, each class' drift, share, traffic
    html = page.monitoring_page([multiclass], "wine", {})
    assert len(plots.findall(html)) == 7 and "one-vs-rest" in html and "macro_f1" in html
    # a regression page: RMSE and MAE, drift, share, traffic; the estimate named DLE
    html = page.monitoring_page([regression], "diabetes", {})
    assert len(plots.findall(html)) == 5 and "rmse [CI]" in html and "DLE" in html
    # and the metrics: the task's metrics on labels and estimated, each class' own
    text = prometheus.exposition([multiclass])
    assert 'flywheel_monitor_metric{model="wine"' in text and 'metric="macro_f1"' in text
    assert re.search(r'flywheel_monitor_class_metric\{[^}]*class="class_0"', text)
    assert re.search(r'flywheel_monitor_class_prediction_psi\{[^}]*class="class_2"', text)
    text = prometheus.exposition([regression])
    assert re.search(r'flywheel_monitor_estimated_metric\{[^}]*metric="rmse"', text)
    assert "accuracy" not in text


def test_monitor_records_a_regression_version_from_the_registry(
    diabetes: Monitored, tmp_path: Path
) -> None:
    # given a day of traffic in a copy of the registry
    shutil.copytree(diabetes.store.root, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    log_traffic(store, diabetes.name, diabetes.version, diabetes.unseen)
    settings = Settings.model_validate(
        {
            "model_name": diabetes.name,
            "features": diabetes.features.model_dump(),
            "model": {"task": "regression"},
            "monitoring": {"window": "hour", "windows": 3},
        }
    )
    # when monitoring runs
    result = monitor(settings, Registry(store, diabetes.name), diabetes.source, until=END, now=END)
    # then its window is the regression's, estimated by DLE, and recorded
    (report,) = [r for r in result.reports if r.health.rows]
    assert report.task == "regression" and report.estimate is not None
    assert report.estimate.method == "DLE" and result.records
    assert isinstance(report.computed_at, datetime)
