"""The metrics' intervals and CBPE against distributions whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from flywheel.monitoring import intervals


def test_the_wilson_interval_matches_the_textbook_example() -> None:
    # given 8 successes in 10 (Newcombe 1998: 0.490 to 0.943 at 95%)
    interval = intervals.wilson(8, 10, 0.95)
    # then
    assert (interval.value, round(interval.low, 3), round(interval.high, 3)) == (0.8, 0.49, 0.943)


def test_the_auc_interval_is_scikit_learns_auc_and_covers_the_true_auc() -> None:
    # given binormal scores with a known AUC: Φ(d / √2) for a mean difference d
    rng = np.random.default_rng(8)
    true_auc = float(stats.norm.cdf(1.0 / math.sqrt(2)))
    covered = 0
    for _ in range(200):
        labels = np.r_[np.zeros(150, int), np.ones(100, int)]
        scores = np.r_[rng.normal(0, 1, 150), rng.normal(1, 1, 100)]
        interval = intervals.auc_interval(labels, scores, 0.95)
        assert interval is not None
        assert interval.value == pytest.approx(roc_auc_score(labels, scores))
        covered += interval.low <= true_auc <= interval.high
    # then about 95% of the intervals hold the true value
    assert 0.9 <= covered / 200 <= 0.99


def test_an_auc_needs_both_classes() -> None:
    assert intervals.auc_interval([1, 1, 1], [0.2, 0.5, 0.9], 0.95) is None


@pytest.mark.parametrize(
    ("rows", "positives", "shift", "low", "high"),
    [
        (20, 0.3, 1.0, 0.93, 1.0),  # a discrete AUC: at least 93% below 300 rows
        (20, 0.1, 0.5, 0.93, 1.0),  # two positives: DeLong's variance alone covered 80%
        (80, 0.5, 1.0, 0.93, 1.0),
        (1_000, 0.3, 1.0, 0.93, 0.97),  # Hanley-McNeil covered 97% here
    ],
)
def test_the_auc_interval_covers_at_its_level_from_small_windows_up(
    rows: int, positives: float, shift: float, low: float, high: float
) -> None:
    # given binormal scores with a known AUC, Φ(shift / √2), and a random class mix
    rng = np.random.default_rng(rows)
    true_auc = float(stats.norm.cdf(shift / math.sqrt(2)))
    covered = judged = 0
    for _ in range(1_000):
        labels = (rng.random(rows) < positives).astype(int)
        if labels.sum() in (0, rows):
            continue
        # when each window's interval is computed
        interval = intervals.auc_interval(labels, rng.normal(0, 1, rows) + shift * labels, 0.95)
        assert interval is not None and 0 <= interval.low <= interval.value <= interval.high <= 1
        covered += interval.low <= true_auc <= interval.high
        judged += 1
    # then it holds the true AUC at its level (binomial error of 1,000 windows: ±1.4 points)
    assert low <= covered / judged <= high, covered / judged


def test_perfectly_separated_classes_still_get_an_interval_below_one() -> None:
    # given 12 negatives all scored below 12 positives, and 3 below 3
    for n in (12, 3):
        interval = intervals.auc_interval([0] * n + [1] * n, list(range(2 * n)), 0.95)
        # then the AUC is 1 and the interval reaches below it, further with fewer rows
        assert interval is not None and interval.value == interval.high == 1.0
        assert 0.5 < interval.low < 1.0
    small = intervals.auc_interval([0, 0, 0, 1, 1, 1], range(6), 0.95)
    large = intervals.auc_interval([0] * 12 + [1] * 12, range(24), 0.95)
    assert small is not None and large is not None and small.low < large.low


@pytest.mark.parametrize("p", [0.6657, 0.7357, 0.7657])
def test_the_wilson_interval_covers_at_its_level_exactly(p: float) -> None:
    # given the model's true accuracies in bench-stats, and every count of right answers
    for n in (20, 80, 300, 1_000, 1_001, 10_000):
        # (counts beyond 8 standard deviations carry no weight)
        spread = 8 * math.sqrt(n * p * (1 - p))
        k = np.arange(max(0, math.floor(n * p - spread)), min(n, math.ceil(n * p + spread)) + 1)
        inside = [intervals.wilson(int(i), n, 0.95) for i in k]
        holds = np.array([i.low <= p <= i.high for i in inside])
        # when weighed by their binomial probabilities
        coverage = float(stats.binom.pmf(k, n, p)[holds].sum())
        # then the interval covers 93-97% from 300 rows, at least 93% below
        assert coverage >= 0.93, (n, coverage)
        assert n < 300 or coverage <= 0.97, (n, coverage)


def test_the_log_loss_interval_is_scikit_learns_log_loss() -> None:
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(9)
    p = rng.random(400)
    y = (rng.random(400) < p).astype(int)
    interval = intervals.mean_interval(intervals.row_log_loss(y, p), 0.95)
    assert interval.value == pytest.approx(log_loss(y, p))
    assert interval.low < interval.value < interval.high


def _realised(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The accuracy, ROC AUC and log loss of scores `p` on labels `y`."""
    return {
        "accuracy": float(((p >= 0.5) == y).mean()),
        "roc_auc": float(roc_auc_score(y, p)),
        "log_loss": float(intervals.row_log_loss(y, p).mean()),
    }


def test_f1_scores_are_scikit_learns_with_a_class_never_called_and_one_never_present() -> None:
    from sklearn.metrics import f1_score

    # given labels of four classes where class 2 is never predicted and class 3 never occurs
    rng = np.random.default_rng(3)
    y = rng.choice([0, 1, 2], size=300)
    predicted = np.where(rng.random(300) < 0.7, y, rng.choice([0, 1, 3], size=300))
    predicted[predicted == 2] = 0
    k = 4
    # when each class's F1 is made from its true positives, calls and rows
    f1 = intervals.f1_scores(
        np.bincount(predicted[predicted == y], minlength=k).astype(float),
        np.bincount(predicted, minlength=k).astype(float),
        np.bincount(y, minlength=k).astype(float),
    )
    # then it is scikit-learn's F1 of each class, 0 where it is undefined
    expected = f1_score(y, predicted, labels=range(k), average=None, zero_division=0.0)
    np.testing.assert_allclose(f1, expected, rtol=1e-12)
    assert f1[2] == 0.0 and f1[3] == 0.0
    # and, along the last axis, of several simulations at once
    stacked = intervals.f1_scores(
        np.array([[1.0, 0.0], [2.0, 0.0]]), np.ones((2, 2)) * 2, np.ones((2, 2)) * 2
    )
    np.testing.assert_allclose(stacked, [[0.5, 0.0], [1.0, 0.0]])


def test_cbpe_on_calibrated_scores_recovers_the_realised_metrics_within_its_intervals() -> None:
    # given perfectly calibrated scores: each label is drawn with its row's score
    rng = np.random.default_rng(10)
    hits = {"accuracy": 0, "roc_auc": 0, "log_loss": 0}
    trials = 60
    for seed in range(trials):
        p = rng.beta(2, 3, size=1000)
        y = (rng.random(1000) < p).astype(int)
        # when the metrics are estimated without the labels
        estimate = intervals.cbpe(p, p, 0.95, seed=seed)
        realised = _realised(y, p)
        for name, value in realised.items():
            interval = estimate[name]
            assert interval is not None
            hits[name] += interval.low <= value <= interval.high
    # then the realised value is inside the interval about 95% of the time
    for name, count in hits.items():
        assert count / trials >= 0.88, (name, count)


def test_cbpe_of_a_windows_sample_covers_the_whole_windows_metrics() -> None:
    # given windows of 50,000 rows of perfectly calibrated scores, each seen through a uniform
    # sample of 1,000 (a summary's)
    rng = np.random.default_rng(16)
    rows, kept, trials = 50_000, 1_000, 60
    hits = {"accuracy": 0, "roc_auc": 0, "log_loss": 0}
    widths: dict[str, list[float]] = {"window": [], "sample": []}
    for seed in range(trials):
        p = rng.beta(2, 3, size=rows)
        y = (rng.random(rows) < p).astype(int)
        sample = rng.choice(rows, kept, replace=False)
        # when the window's metrics are estimated from the sample
        estimate = intervals.cbpe(p[sample], p[sample], 0.95, seed=seed, rows=rows)
        alone = intervals.cbpe(p[sample], p[sample], 0.95, seed=seed)
        realised = _realised(y, p)
        for name, value in realised.items():
            interval = estimate[name]
            assert interval is not None
            hits[name] += interval.low <= value <= interval.high
        for name, found in (("window", estimate), ("sample", alone)):
            accuracy = found["accuracy"]
            assert accuracy is not None
            widths[name].append(accuracy.high - accuracy.low)
    # then the whole window's realised metrics are inside about 95% of the time
    for name, count in hits.items():
        assert count / trials >= 0.88, (name, count)
    # and the interval is as wide as the window's accuracy varies about the sample's expected
    # accuracy: the sample's own spread, (1 - n/N) Var(c) / n for each decision's chance c of
    # being right, and the window's label noise, E[c (1 - c)] / N (Beta(2, 3): by integration)
    c = np.maximum(p, 1 - p)
    spread = (1 - kept / rows) * c.var() / kept + (c * (1 - c)).mean() / rows
    assert np.mean(widths["window"]) == pytest.approx(2 * 1.96 * math.sqrt(spread), rel=0.15)
    # where the sample's labels alone (their label noise at 1,000 rows) are three times as wide
    assert np.mean(widths["sample"]) > 2.5 * np.mean(widths["window"])


def test_cbpe_beyond_a_sample_ranks_tied_scores_among_every_row_they_stand_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given six sampled rows with ties, whose labels are certain, each standing for a known
    # number of the window's rows
    scores = np.array([0.2, 0.7, 0.2, 0.9, 0.7, 0.4])
    labels = np.array([0, 1, 1, 1, 0, 0])
    weights = np.array([3, 1, 2, 5, 4, 2])
    order = np.argsort(scores, kind="stable")
    monkeypatch.setattr(
        intervals,
        "stood_for",
        lambda rng, shape, rows: np.broadcast_to(weights[order].astype(float), shape),
    )
    # when CBPE simulates the window of 17 rows
    found = intervals.cbpe(scores, labels.astype(float), 0.95, simulations=20, rows=17)
    # then every simulation is the window spelled out row by row
    spelled = np.repeat(scores, weights), np.repeat(labels, weights)
    accuracy, auc = found["accuracy"], found["roc_auc"]
    assert accuracy is not None and auc is not None
    assert (
        accuracy.low == accuracy.high == pytest.approx(np.mean((spelled[0] >= 0.5) == spelled[1]))
    )
    assert auc.low == auc.high == pytest.approx(roc_auc_score(spelled[1], spelled[0]))


def test_cbpe_expected_accuracy_is_the_mean_confidence_of_each_decision() -> None:
    # given calibrated probabilities on both sides of the threshold
    p = np.array([0.9, 0.2, 0.6, 0.5])
    # when estimated
    estimate = intervals.cbpe(p, p, 0.95)
    # then each row counts the probability that its decision is right
    assert estimate["accuracy"] is not None
    assert estimate["accuracy"].value == pytest.approx((0.9 + 0.8 + 0.6 + 0.5) / 4)


def test_cbpe_with_a_miscalibrated_model_is_corrected_by_the_calibrator() -> None:
    # given scores that are twice too confident: the true probability is half the score
    rng = np.random.default_rng(11)
    scores = rng.random(20_000)
    truth = scores / 2
    labels = (rng.random(20_000) < truth).astype(int)
    bins = [
        (float(scores[m].mean()), float(labels[m].mean()))
        for m in np.array_split(np.argsort(scores), 10)
    ]
    # when CBPE recalibrates on the reliability curve
    calibrator = intervals.calibrator(bins)
    assert calibrator is not None
    estimate = intervals.cbpe(scores, calibrator(scores), 0.95)
    naive = intervals.cbpe(scores, scores, 0.95)
    # then its accuracy estimate is close to the realised one, unlike trusting the raw scores
    realised = float(((scores >= 0.5) == labels).mean())
    assert estimate["accuracy"] is not None and naive["accuracy"] is not None
    assert estimate["accuracy"].value == pytest.approx(realised, abs=0.01)
    assert abs(naive["accuracy"].value - realised) > 0.05


def test_cbpe_intervals_cover_when_the_calibration_set_is_redrawn_for_each_window() -> None:
    # given a model whose scores are too confident (the truth is 0.5 + (score - 0.5) / 2), a
    # calibration set of 2,000 rows redrawn for every window, and windows of 1,000 rows
    rng = np.random.default_rng(12)
    covered = {"resampled": 0, "fixed": 0}
    trials = 100
    for seed in range(trials):
        fitted = rng.random(2000)
        truth = 0.5 + (fitted - 0.5) / 2
        sample = list(
            zip(fitted.tolist(), (rng.random(2000) < truth).astype(int).tolist(), strict=True)
        )
        calibrator = intervals.calibrator(_bins(np.array(sample)))
        assert calibrator is not None
        scores = rng.random(1000)
        labels = rng.random(1000) < 0.5 + (scores - 0.5) / 2
        realised = float(((scores >= 0.5) == labels).mean())
        # when CBPE estimates accuracy with and without the calibrator's uncertainty
        draws = intervals.calibration_draws(sample, scores, 300, seed=seed)
        for name, found in (
            (
                "resampled",
                intervals.cbpe(scores, calibrator(scores), 0.95, draws=draws, seed=seed),
            ),
            ("fixed", intervals.cbpe(scores, calibrator(scores), 0.95, seed=seed)),
        ):
            accuracy = found["accuracy"]
            assert accuracy is not None
            covered[name] += accuracy.low <= realised <= accuracy.high
    # then the resampled intervals cover about 95% (binomial error of 100 windows: ±4.4
    # points), and are wider than those that trust one calibrator
    assert covered["resampled"] / trials >= 0.91, covered
    assert covered["resampled"] >= covered["fixed"], covered


def test_cbpe_roc_auc_covers_when_the_calibration_set_is_redrawn_for_each_window() -> None:
    # given a calibrated model, score = sigmoid(-1 + 1.5 z), z ~ N(0, 1) (bench-stats' world),
    # a calibration set of 2,000 rows redrawn for every window, and windows of 1,000 rows
    rng = np.random.default_rng(13)
    covered, errors, flat_errors = 0, [], []
    trials = 100
    for seed in range(trials):
        scores = 1 / (1 + np.exp(1 - 1.5 * rng.standard_normal(2000)))
        sample = np.column_stack([scores, rng.random(2000) < scores])
        calibrator = intervals.calibrator(_bins(sample))
        assert calibrator is not None
        window = 1 / (1 + np.exp(1 - 1.5 * rng.standard_normal(1000)))
        labels = rng.random(1000) < window
        realised = float(roc_auc_score(labels, window))
        # when CBPE estimates the ROC AUC with the calibrator's uncertainty
        draws = intervals.resampled(sample, 300, seed=seed)(window)
        found = intervals.cbpe(window, calibrator(window), 0.95, draws=draws, seed=seed)["roc_auc"]
        assert found is not None
        covered += found.low <= realised <= found.high
        errors.append(found.value - realised)
        flat = np.interp(window, calibrator.scores, calibrator.rates)  # flat beyond the ends
        flat_errors.append(intervals.expected_auc(window, flat) - realised)
    # then the intervals cover about 95%, and the estimate is unbiased (the standard error of
    # the mean error is about 0.0015), where flat ends beyond the outer bins put it 0.006 low
    assert covered / trials >= 0.91, covered
    assert abs(float(np.mean(errors))) < 0.003, np.mean(errors)
    assert float(np.mean(flat_errors)) < -0.004, np.mean(flat_errors)


def test_the_calibrator_carries_its_slope_beyond_its_first_and_last_point() -> None:
    # given reliability curves on the diagonal and at half its slope
    diagonal = intervals.calibrator([(0.1, 0.1), (0.5, 0.5), (0.9, 0.9)])
    halved = intervals.calibrator([(0.1, 0.3), (0.9, 0.7)])
    assert diagonal is not None and halved is not None
    # then beyond their points they carry on at the same slope, within [0, 1]
    x = np.array([0.0, 0.05, 0.5, 0.95, 1.0])
    assert diagonal(x) == pytest.approx(x)
    assert halved(x) == pytest.approx(0.25 + x / 2)
    steep = intervals.calibrator([(0.3, 0.1), (0.7, 0.9)])
    assert steep is not None
    assert steep(np.array([0.0, 0.2, 0.8, 1.0])) == pytest.approx([0.0, 0.0, 1.0, 1.0])
    # and one point is flat: it has no slope
    single = intervals.calibrator([(0.4, 0.3)])
    assert single is not None and single(np.array([0.0, 1.0])) == pytest.approx([0.3, 0.3])


def test_resampled_calibrators_are_the_evaluations_fits_on_resamples() -> None:
    # given a calibration set
    rng = np.random.default_rng(14)
    scores = rng.random(500)
    sample = np.column_stack([scores, rng.random(500) < scores])
    # when refitted on resamples, once for any number of windows
    fitted = intervals.resampled(sample, 45, seed=3)
    # then each is the evaluation's curve on a bootstrap resample, drawn as before (to the
    # last bits: the resamples' bins are summed in another order than np.mean sums them)
    pick = np.random.default_rng(3)
    for calibrator in fitted.fitted:
        resample = sample[pick.integers(0, 500, 500)]
        expected = intervals.calibrator(_bins(resample))
        assert expected is not None
        assert calibrator.scores == pytest.approx(expected.scores, rel=1e-12, abs=1e-15)
        assert calibrator.rates == pytest.approx(expected.rates, rel=1e-12, abs=1e-15)
    window = rng.random(50)
    draws = intervals.calibration_draws(sample, window, 45, seed=3)
    assert np.array_equal(fitted(window), draws) and draws.shape == (45, 50)
    # and CBPE simulates the same labels from them, applied a few at a time or all at once
    calibrated = window
    assert intervals.cbpe(window, calibrated, 0.95, draws=fitted) == intervals.cbpe(
        window, calibrated, 0.95, draws=draws
    )


def test_resampled_calibrators_are_fitted_once_per_calibration_set() -> None:
    # given a calibration set, and another differing in one label
    rng = np.random.default_rng(15)
    scores = rng.random(300)
    sample = np.column_stack([scores, rng.random(300) < scores])
    other = sample.copy()
    other[0, 1] = 1 - other[0, 1]
    # when calibrators are refitted on each, twice
    first = intervals.resampled(sample, 30, seed=1)
    # then the same set gives the same fits (kept: the same object), and a set, a number of
    # simulations or a seed that differs gives its own
    assert intervals.resampled([tuple(p) for p in sample], 30, seed=1) is first
    assert intervals.resampled(other, 30, seed=1).fitted != first.fitted
    assert len(intervals.resampled(sample, 31, seed=1)) == 31
    assert intervals.resampled(sample, 30, seed=2).fitted != first.fitted
    pick = np.random.default_rng(1)
    for calibrator in intervals.resampled(other, 30, seed=1).fitted:
        expected = intervals.calibrator(_bins(other[pick.integers(0, 300, 300)]))
        assert expected is not None
        assert calibrator.scores == pytest.approx(expected.scores, rel=1e-12, abs=1e-15)
        assert calibrator.rates == pytest.approx(expected.rates, rel=1e-12, abs=1e-15)


def _bins(sample: np.ndarray) -> list[tuple[float, float]]:
    """The evaluation's reliability curve: ten equal-width bins."""
    from flywheel.evaluation import calibration

    return list(calibration(sample[:, 1], sample[:, 0]))


def test_a_mean_from_its_sums_is_the_mean_from_its_values() -> None:
    # given values, and only their count, sum and sum of squares
    values = np.random.default_rng(3).gamma(2.0, 0.4, size=5000)
    # when each gives a mean with its interval
    direct = intervals.mean_interval(values, 0.95)
    summed = intervals.mean_of_sums(len(values), values.sum(), (values**2).sum(), 0.95)
    # then they agree to rounding, and one value has no spread
    for bound in ("value", "low", "high"):
        assert getattr(summed, bound) == pytest.approx(getattr(direct, bound), rel=1e-9)
    assert intervals.mean_of_sums(1, 2.0, 4.0, 0.95).model_dump() == {
        "value": 2.0,
        "low": 2.0,
        "high": 2.0,
    }


def test_an_auc_from_binned_counts_is_the_auc_of_the_binned_scores() -> None:
    # given scores on 50 levels (ties within each), and their counts per level by class
    rng = np.random.default_rng(5)
    y = rng.random(4000) < 0.3
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * y, 0.15), 0, 1) * 49) / 49
    levels = np.round(scores * 49).astype(int)
    positives = np.bincount(levels[y], minlength=50)
    negatives = np.bincount(levels[~y], minlength=50)
    # when the AUC is taken from the rows, and from the counts alone
    direct = intervals.auc_interval(y.astype(int), scores, 0.95)
    counted = intervals.auc_of_counts(positives, negatives, 0.95)
    # then the value and DeLong's interval agree, and a class alone has none
    assert direct is not None and counted is not None
    for bound in ("value", "low", "high"):
        assert getattr(counted, bound) == pytest.approx(getattr(direct, bound), rel=1e-9)
    assert intervals.auc_of_counts(positives, np.zeros(50), 0.95) is None
    small = intervals.auc_of_counts([0, 3, 2], [4, 1, 0], 0.95)
    assert small == intervals.auc_score_interval(small.value, 5, 5, 0.95)


def test_r2_from_its_sums_is_scikit_learns_whatever_the_shift_of_the_labels() -> None:
    # given labels far from zero (a mean a thousand times their spread) and predictions
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(7)
    x = rng.normal(5000.0, 5.0, 3000)
    y = x + rng.normal(0.0, 2.0, 3000)
    predicted = 5000.0 + 0.8 * (x - 5000.0)
    # when R² is taken from sums of the labels shifted near their mean, and not shifted
    near = intervals.r2_interval(y, predicted, 0.95, shift=4999.0)
    far = intervals.r2_interval(y, predicted, 0.95, shift=0.0)
    # then its value is scikit-learn's, and the shift changes nothing but rounding
    assert near is not None and far is not None
    assert near.value == pytest.approx(r2_score(y, predicted), rel=1e-9)
    assert near.low < near.value < near.high
    assert far.value == pytest.approx(near.value, rel=1e-6)
    # and labels that do not vary, or two rows, have none
    assert intervals.r2_interval(np.full(10, 3.0), np.arange(10.0), 0.95) is None
    assert intervals.r2_interval([1.0, 2.0], [1.0, 2.5], 0.95) is None


@pytest.mark.parametrize("rows", [300, 3_000])
def test_r2_from_its_sums_covers_the_worlds_r2_at_its_level(rows: int) -> None:
    # given a world whose R² is known, y = x + noise predicted by 0.8 x: 1 - (0.04 σx² + σe²)
    # / (σx² + σe²)
    sx, se = 3.0, 2.0
    true = 1 - (0.04 * sx**2 + se**2) / (sx**2 + se**2)
    rng = np.random.default_rng(rows)
    covered = 0
    for _ in range(1_000):
        x = rng.normal(1000.0, sx, rows)
        y = x + rng.normal(0.0, se, rows)
        # when each window's interval is taken from its sums
        interval = intervals.r2_interval(y, 1000.0 + 0.8 * (x - 1000.0), 0.95)
        assert interval is not None
        covered += interval.low <= true <= interval.high
    # then it holds the world's R² at its level (binomial error of 1,000 windows: ±1.4
    # points)
    assert 0.93 <= covered / 1_000 <= 0.97, covered / 1_000


def test_a_bootstrap_of_counts_is_the_bootstrap_of_the_rows_they_count() -> None:
    # given 3,000 rows of three classes and their predictions, and their confusion counts
    from flywheel.monitoring import performance

    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 3000)
    predicted = np.where(rng.random(3000) < 0.7, y, rng.integers(0, 3, 3000))
    counts = performance.confusion(y, predicted, 3)
    value = performance.macro_f1(y, predicted, 3)
    # when macro F1 is bootstrapped from the rows, and from the counts alone
    rows = intervals.bootstrap(
        lambda i: performance.macro_f1(y[i], predicted[i], 3), 3000, value, 0.95
    )
    counted = intervals.bootstrap_counts(
        performance.macro_f1_of_counts, counts, float(performance.macro_f1_of_counts(counts)), 0.95
    )
    # then the value is the same, and the intervals agree within the resamples' noise
    assert counted.value == pytest.approx(value, rel=1e-12)
    for bound in ("low", "high"):
        assert getattr(counted, bound) == pytest.approx(getattr(rows, bound), abs=0.005)
    assert counted.low < value < counted.high


def test_a_mean_of_intervals_averages_their_bounds_and_needs_each_of_them() -> None:
    # given two classes' AUC intervals, and a third class with none
    a = intervals.Interval(value=0.8, low=0.7, high=0.85)
    b = intervals.Interval(value=0.6, low=0.5, high=0.75)
    # when they are averaged
    both = intervals.mean_of_intervals([a, b])
    # then the value and each bound are the means, and a missing one leaves no mean
    assert both is not None
    assert (both.value, both.low, both.high) == pytest.approx((0.7, 0.6, 0.8))
    assert intervals.mean_of_intervals([a, None]) is None
    assert intervals.mean_of_intervals([]) is None


def test_a_mean_of_one_vs_rest_auc_intervals_covers_at_least_its_level() -> None:
    # given a three-class world, each class's probability one point of logit higher for
    # its own rows, and its macro AUC on a million rows
    rng = np.random.default_rng(13)

    def draw(rows: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, rows)
        z = rng.normal(0.0, 1.0, (rows, 3))
        z[np.arange(rows), y] += 1.0
        p = np.exp(z)
        return y, p / p.sum(axis=1, keepdims=True)

    def macro(y: np.ndarray, p: np.ndarray) -> intervals.Interval | None:
        return intervals.mean_of_intervals(
            [intervals.auc_interval((y == c).astype(int), p[:, c], 0.95) for c in range(3)]
        )

    world = macro(*draw(1_000_000))
    assert world is not None
    covered = 0
    for _ in range(400):
        # when each window's macro AUC is the mean of its classes' intervals
        interval = macro(*draw(300))
        assert interval is not None
        covered += interval.low <= world.value <= interval.high
    # then it covers at least its level: the classes' errors do not all move together, so
    # it is wider than it needs to be (99% here)
    assert covered / 400 >= 0.95, covered / 400
