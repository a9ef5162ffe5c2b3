"""Metrics on delayed labels per task: scikit-learn's values, with intervals around them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from flywheel.monitoring.performance import macro_auc, macro_f1, measure


def test_a_multiclass_windows_metrics_are_scikit_learns() -> None:
    # given 600 rows of three-class probabilities and labels drawn from them
    rng = np.random.default_rng(5)
    p = rng.dirichlet([1.0, 1.0, 1.0], size=600)
    y = (rng.random((600, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    predicted = p.argmax(axis=1)
    # when measured
    found = measure("multiclass", y, p, 0.95, classes=("a", "b", "c"))
    # then each metric is scikit-learn's, inside its interval
    expected = {
        "accuracy": metrics.accuracy_score(y, predicted),
        "macro_f1": metrics.f1_score(y, predicted, average="macro"),
        "roc_auc": metrics.roc_auc_score(y, p, multi_class="ovr", average="macro"),
        "log_loss": metrics.log_loss(y, p),
    }
    for name, value in expected.items():
        interval = found.get(name)  # type: ignore[arg-type]
        assert interval is not None and interval.value == pytest.approx(value), name
        assert interval.low <= interval.value <= interval.high, name
    assert macro_f1(y, predicted, 3) == pytest.approx(expected["macro_f1"])
    assert macro_auc(y, p) == pytest.approx(expected["roc_auc"])
    # and each class's recall and precision against the rest
    recall = metrics.recall_score(y, predicted, average=None)
    assert [found.per_class[c].recall.value for c in "abc"] == pytest.approx(recall)  # type: ignore[union-attr]
    assert [found.per_class[c].support for c in "abc"] == np.bincount(y, minlength=3).tolist()
    assert found.rmse is None and found.labelled == 600


def test_a_class_absent_from_the_window_leaves_the_macro_auc_undefined() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    found = measure("multiclass", np.array([0, 1, 0]), p, 0.95, classes=("a", "b", "c"))
    assert found.roc_auc is None and found.per_class["c"].recall is None
    assert found.accuracy is not None and found.accuracy.value == 1.0


def test_a_regressions_errors_are_scikit_learns() -> None:
    # given predictions off by noise that grows with the value
    rng = np.random.default_rng(2)
    y = rng.uniform(50, 300, 400)
    predicted = y + rng.normal(0, 0.2 * y)
    # when measured
    found = measure("regression", y, predicted.reshape(-1, 1), 0.95)
    # then RMSE, MAE, R² and MAPE are scikit-learn's, inside their intervals
    expected = {
        "rmse": metrics.root_mean_squared_error(y, predicted),
        "mae": metrics.mean_absolute_error(y, predicted),
        "r2": metrics.r2_score(y, predicted),
        "mape": metrics.mean_absolute_percentage_error(y, predicted),
    }
    for name, value in expected.items():
        interval = found.get(name)  # type: ignore[arg-type]
        assert interval is not None and interval.value == pytest.approx(value), name
        assert interval.low < interval.value < interval.high, name
    assert found.mean_label == pytest.approx(y.mean())
    assert found.accuracy is None and found.per_class == {}
    # and a zero label leaves MAPE undefined
    y[0] = 0.0
    assert measure("regression", y, predicted.reshape(-1, 1), 0.95).mape is None
