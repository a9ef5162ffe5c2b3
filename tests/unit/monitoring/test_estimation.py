"""Estimates before labels beyond binary: NannyML's multiclass CBPE and direct loss estimation,
on known distributions and against NannyML's own numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.monitoring.estimation import DirectLoss, cbpe_multiclass, recalibrate, resampled
from flywheel.monitoring.performance import macro_auc, macro_f1


def _dirichlet(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet([0.6, 0.6, 0.6], size=rows)


def test_multiclass_cbpe_is_nannymls_on_the_same_scores() -> None:
    # given 600 rows of three-class probabilities; NannyML 0.13.1's CBPE (multiclass, with
    # NoopCalibrator, chunks of 300 rows) estimated these from the same array
    p = np.random.default_rng(7).dirichlet([0.6, 0.6, 0.6], size=600)
    nannyml = {
        "accuracy": (0.667196, 0.668021),
        "macro_f1": (0.66706, 0.665564),
        "roc_auc": (0.848433, 0.846321),
    }
    for chunk, part in enumerate((p[:300], p[300:])):
        # when ours estimates each chunk with the scores taken as calibrated
        found = cbpe_multiclass(part, part, 0.95)
        # then each metric is NannyML's to six decimals
        for metric, values in nannyml.items():
            interval = found[metric]
            assert interval is not None
            assert interval.value == pytest.approx(values[chunk], abs=1e-6), metric


def test_multiclass_cbpe_on_calibrated_scores_recovers_the_realised_metrics() -> None:
    # given calibrated probabilities, and labels drawn from them
    rng = np.random.default_rng(3)
    p = _dirichlet(2000, 3)
    y = (rng.random((len(p), 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    predicted = p.argmax(axis=1)
    # when estimated
    found = cbpe_multiclass(p, p, 0.95)
    # then the realised accuracy, macro F1 and log loss are inside the intervals
    realised = {
        "accuracy": float((predicted == y).mean()),
        "macro_f1": macro_f1(y, predicted, 3),
        "log_loss": float(-np.log(p[np.arange(len(p)), y]).mean()),
    }
    for metric, value in realised.items():
        interval = found[metric]
        assert interval is not None and interval.low <= value <= interval.high, metric
    # and the expected accuracy is the mean probability of the predicted class
    assert found["accuracy"] is not None
    assert found["accuracy"].value == pytest.approx(p.max(axis=1).mean())


def test_multiclass_cbpe_of_a_windows_sample_covers_the_whole_windows_metrics() -> None:
    # given windows of 20,000 rows of calibrated three-class probabilities, each seen through
    # a uniform sample of 1,000 (a summary's)
    rng = np.random.default_rng(4)
    rows, kept, trials = 20_000, 1_000, 60
    hits = {"accuracy": 0, "macro_f1": 0, "roc_auc": 0, "log_loss": 0}
    widths: dict[str, list[float]] = {"window": [], "sample": []}
    for seed in range(trials):
        p = rng.dirichlet([0.6, 0.6, 0.6], size=rows)
        y = (rng.random((rows, 1)) > np.cumsum(p, axis=1)).sum(axis=1).clip(0, 2)
        sample = rng.choice(rows, kept, replace=False)
        # when the window's metrics are estimated from the sample
        found = cbpe_multiclass(p[sample], p[sample], 0.95, simulations=100, seed=seed, rows=rows)
        predicted = p.argmax(axis=1)
        realised = {
            "accuracy": float((predicted == y).mean()),
            "macro_f1": macro_f1(y, predicted, 3),
            "roc_auc": macro_auc(y, p),
            "log_loss": float(-np.log(p[np.arange(rows), y]).mean()),
        }
        for metric, value in realised.items():
            interval = found[metric]
            assert interval is not None
            hits[metric] += interval.low <= value <= interval.high
        if seed < 10:  # the interval of the sample's own labels, on a few
            alone = cbpe_multiclass(p[sample], p[sample], 0.95, simulations=100, seed=seed)
            for name, estimate in (("window", found), ("sample", alone)):
                accuracy = estimate["accuracy"]
                assert accuracy is not None
                widths[name].append(accuracy.high - accuracy.low)
    # then the whole window's realised metrics are inside about 95% of the time
    for metric, count in hits.items():
        assert count / trials >= 0.87, (metric, count)
    # and the interval is the spread of the window about the sample: the sampled rows' label
    # noise alone makes it twice as wide
    assert np.mean(widths["sample"]) > 2 * np.mean(widths["window"])


def test_multiclass_cbpe_beyond_a_sample_counts_each_row_as_the_rows_it_stands_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sklearn.metrics import f1_score, log_loss, roc_auc_score

    from flywheel.monitoring import intervals

    # given six sampled rows with tied probabilities, whose classes are certain, each standing
    # for a known number of the window's rows
    p = np.array(
        [
            [0.6, 0.3, 0.1],
            [0.2, 0.5, 0.3],
            [0.6, 0.3, 0.1],
            [0.1, 0.2, 0.7],
            [0.3, 0.3, 0.4],
            [0.2, 0.5, 0.3],
        ]
    )
    y = np.array([0, 1, 2, 2, 0, 1])
    weights = np.array([3, 1, 2, 5, 4, 2])
    monkeypatch.setattr(
        intervals,
        "stood_for",
        lambda rng, shape, rows: np.broadcast_to(weights.astype(float), shape),
    )
    # when CBPE simulates the window of 17 rows
    found = cbpe_multiclass(p, np.eye(3)[y], 0.95, simulations=20, rows=17)
    # then every simulation is the window spelled out row by row
    rows, labels = np.repeat(p, weights, axis=0), np.repeat(y, weights)
    expected = {
        "accuracy": float((rows.argmax(axis=1) == labels).mean()),
        "macro_f1": f1_score(labels, rows.argmax(axis=1), average="macro"),
        "roc_auc": roc_auc_score(labels, rows, multi_class="ovr", average="macro"),
        "log_loss": log_loss(labels, rows),
    }
    for metric, value in expected.items():
        interval = found[metric]
        assert interval is not None
        assert interval.low == pytest.approx(value) and interval.high == pytest.approx(value), (
            metric
        )


def test_recalibration_maps_each_class_and_renormalises_each_row() -> None:
    # given scores whose first class is overconfident by its curve, and no curve for the rest
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.5, 0.3]])
    curve = ((0.2, 0.1), (0.8, 0.4))
    # when recalibrated
    q = recalibrate(p, [curve, (), ()])
    # then the first class goes through its curve, and each row sums to 1
    assert q[0] == pytest.approx(np.array([0.4, 0.1, 0.1]) / 0.6)
    assert q[1] == pytest.approx(np.array([0.1, 0.5, 0.3]) / 0.9)


def _softmax_world(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three-class probabilities (a softmax of normal logits) and labels drawn from them."""
    logits = rng.normal(0, 1.5, size=(rows, 3))
    served = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = (rng.random((rows, 1)) > np.cumsum(served, axis=1)).sum(axis=1)
    return served, np.minimum(labels, 2)


def test_multiclass_cbpe_covers_when_the_calibration_set_is_redrawn_for_each_window() -> None:
    # given a calibrated three-class model, a calibration set of 1,000 rows redrawn for every
    # window, and windows of 1,000 rows: the error of a calibration fitted on so few rows is
    # most of the estimate's. 40 simulations each, the fewest whose outer order statistics
    # make a 95% interval, keep 200 windows quick; the interval's positions hold its level
    # whatever the number of simulations
    from flywheel.evaluation import calibration

    rng = np.random.default_rng(15)
    covered = {"accuracy": 0, "macro_f1": 0, "roc_auc": 0, "fixed": 0}
    trials = 200
    for seed in range(trials):
        p, y = _softmax_world(1000, rng)
        curves = [calibration((y == c).astype(int), p[:, c]) for c in range(3)]
        window, labels = _softmax_world(1000, rng)
        predicted = window.argmax(axis=1)
        calibrated = recalibrate(window, curves)
        # when CBPE estimates with and without the calibration's own uncertainty
        sample = [(tuple(row), int(code)) for row, code in zip(p, y, strict=True)]
        calibrators = resampled(sample, 40, seed=seed)
        found = cbpe_multiclass(window, calibrated, 0.95, calibrators=calibrators, seed=seed)
        realised = {
            "accuracy": float((predicted == labels).mean()),
            "macro_f1": macro_f1(labels, predicted, 3),
            "roc_auc": macro_auc(labels, window),
        }
        for metric, value in realised.items():
            interval = found[metric]
            assert interval is not None
            covered[metric] += interval.low <= value <= interval.high
        fixed = cbpe_multiclass(window, calibrated, 0.95, simulations=40, seed=seed)["accuracy"]
        assert fixed is not None
        covered["fixed"] += fixed.low <= realised["accuracy"] <= fixed.high
    # then the intervals cover about 95% of the realised metrics: the binomial error of 200
    # windows is ±3 points at 95%, so 92-98% holds that level and fails 88% (what 50 windows
    # once measured; ±4.5 points at 200) 24 times in 25. Over 1,000 windows this loop covers
    # 94.7% of accuracies (macro F1 95.1%, ROC AUC 95.1%), these 200 97.0% (97.0%, 96.5%)
    for metric in ("accuracy", "macro_f1", "roc_auc"):
        assert 0.92 <= covered[metric] / trials <= 0.98, covered
    # and more often than those that trust one calibration (86.7% over 1,000 windows)
    assert covered["fixed"] < covered["accuracy"], covered


def _heteroscedastic(rows: int, seed: int, low: float = -2.0, high: float = 2.0) -> pd.DataFrame:
    """A model that predicts x exactly, and a label whose noise grows with |x|."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, rows)
    return pd.DataFrame({"x": x, "label": x + rng.normal(0, 0.2 + np.abs(x), rows)})


@pytest.fixture(scope="module")
def fitted() -> DirectLoss:
    """Error models fitted on rows from the whole input range."""
    reference = _heteroscedastic(2000, 0)
    return DirectLoss.fit(
        reference, reference["label"].to_numpy(), reference["x"].to_numpy(), ["x"], []
    )


def test_direct_loss_estimation_of_a_windows_sample_covers_the_whole_windows_errors(
    fitted: DirectLoss,
) -> None:
    # given error models fitted on a reference, and windows of 20,000 rows each seen through a
    # uniform sample of 500 (a summary's)
    rng = np.random.default_rng(5)
    rows, kept, trials = 20_000, 500, 40
    covered, widths = {"mae": 0, "rmse": 0}, {"window": 0.0, "sample": 0.0}
    for seed in range(trials):
        window = _heteroscedastic(rows, 100 + seed)
        sample = window.iloc[rng.choice(rows, kept, replace=False)]
        # when the window's errors are estimated from the sample
        found = fitted.estimate(sample, sample["x"].to_numpy(), 0.95, rows=rows)
        alone = fitted.estimate(sample, sample["x"].to_numpy(), 0.95)
        errors = window["label"] - window["x"]
        realised = {"mae": float(errors.abs().mean()), "rmse": float(np.sqrt((errors**2).mean()))}
        for metric, value in realised.items():
            covered[metric] += found[metric].low <= value <= found[metric].high
        widths["window"] += found["mae"].high - found["mae"].low
        widths["sample"] += alone["mae"].high - alone["mae"].low
    # then the whole window's MAE and RMSE are inside (the error models' bias widens both)
    assert covered["mae"] / trials >= 0.9 and covered["rmse"] / trials >= 0.9, covered
    # and the interval is narrower than one of the sample's own errors, whose residual spread
    # is over 500 rows, not 20,000
    assert widths["window"] < 0.8 * widths["sample"], widths


def test_direct_loss_estimation_follows_errors_that_grow_with_the_inputs(
    fitted: DirectLoss,
) -> None:
    # given error models fitted on rows from the whole input range
    for low, high in ((-0.5, 0.5), (1.0, 2.0)):
        # when a window drawn from part of that range is estimated
        window = _heteroscedastic(1000, 1, low, high)
        found = fitted.estimate(window, window["x"].to_numpy(), 0.95)
        # then the realised MAE and RMSE are inside the intervals
        errors = window["label"] - window["x"]
        mae, rmse = float(errors.abs().mean()), float(np.sqrt((errors**2).mean()))
        assert found["mae"].low <= mae <= found["mae"].high
        assert found["rmse"].low <= rmse <= found["rmse"].high
    # and the error models are judged out of fold on the reference: no bias to speak of
    assert abs(fitted.bias[0]) < 0.05 and fitted.rows == 2000
