"""The drift tests, intervals and CBPE against distributions whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

from flywheel import drift
from flywheel.monitoring import statistics
from flywheel.monitoring.statistics import Reference

LIMITS = {"p_value": 0.05, "distance": 0.1}


def _profile(sample: np.ndarray, bins: int) -> tuple[list[float], list[float]]:
    """Quantile bins as a contract stores them."""
    import pandas as pd

    edges = drift.quantile_edges(pd.Series(sample), bins)
    return edges, drift.bin_fractions(pd.Series(sample), edges)


def test_psi_of_a_sample_against_its_own_profile_is_about_zero() -> None:
    # given a reference and a second draw from the same distribution
    rng = np.random.default_rng(1)
    reference, current = rng.normal(size=50_000), rng.normal(size=50_000)
    edges, _ = _profile(reference, 10)
    # when they are compared
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then PSI is near zero and nothing drifted
    assert result is not None
    assert result.psi < 0.002
    assert not result.drifted and not result.psi_alarms(0.1)


def test_psi_of_shifted_normals_approaches_the_symmetric_kl_divergence() -> None:
    # given N(0, 1) as reference and N(0.5, 1) served: PSI tends to KL(P|Q) + KL(Q|P) = 0.5² = 0.25
    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=400_000), rng.normal(0.5, 1, size=400_000)
    edges, _ = _profile(reference, 50)
    # when compared over 50 quantile bins
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then PSI is the analytic value, less a little for the binning, and it may alarm
    assert result is not None
    assert result.psi == pytest.approx(0.25, rel=0.05)
    assert result.psi_alarms(0.2)


def test_a_drift_is_two_sample_ks_and_the_wasserstein_distance_normed_by_the_spread() -> None:
    # given N(0, 2) and N(0.6, 2): W1 is the shift, 0.6, and normed by σ = 2 it is 0.3
    rng = np.random.default_rng(3)
    reference, current = rng.normal(0, 2, size=5000), rng.normal(0.6, 2, size=800)
    edges, _ = _profile(reference, 10)
    # when compared
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then the test is scipy's KS, the effect the normed distance, and both fire
    expected = stats.ks_2samp(current, reference)
    assert result is not None and result.test == "ks" and result.effect == "wasserstein"
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.effect_size == pytest.approx(0.3, abs=0.05)
    assert result.drifted


def test_a_significant_but_tiny_shift_of_a_huge_window_is_not_drift() -> None:
    # given a shift of 0.03σ in 400,000 rows: KS is sure of it, and it is far below 0.1σ
    rng = np.random.default_rng(4)
    reference, current = rng.normal(size=400_000), rng.normal(0.03, 1, size=400_000)
    edges, _ = _profile(reference, 10)
    # when compared
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then the test is significant, the effect is not, and nothing drifted (PSI neither)
    assert result is not None and result.p_value is not None and result.p_value < 1e-6
    assert result.effect_size is not None and result.effect_size < 0.05
    assert not result.drifted and not result.psi_alarms(0.1)


def test_the_same_test_decides_on_both_sides_of_a_thousand_rows() -> None:
    # given a 0.3σ shift in windows of 1,000 and 1,001 rows (the old switch between methods)
    rng = np.random.default_rng(5)
    reference = rng.normal(size=5000)
    edges, _ = _profile(reference, 10)
    fired = {}
    for rows in (1000, 1001):
        results = [
            statistics.sample_drift(rng.normal(0.3, 1, rows), reference, edges, **LIMITS)
            for _ in range(100)
        ]
        fired[rows] = np.mean([r is not None and r.drifted for r in results])
    # then their power is the same, not a cliff
    assert abs(fired[1000] - fired[1001]) < 0.15, fired


def test_a_feature_with_few_values_is_tested_as_categories_against_the_reference_counts() -> None:
    # given a count feature with four values
    rng = np.random.default_rng(5)
    reference, current = rng.poisson(0.5, 5000), rng.poisson(0.5, 400)
    reference, current = np.minimum(reference, 3), np.minimum(current, 3)
    edges, _ = _profile(reference, 10)
    # when compared
    result = statistics.sample_drift(current, reference, edges, **LIMITS)
    # then it is the chi-square of the 2 x 4 table of counts, not KS on a step function
    table = [np.bincount(current, minlength=4), np.bincount(reference, minlength=4)]
    assert result is not None and result.test == "chi2"
    assert result.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)


def test_chi_square_against_exact_shares_is_the_goodness_of_fit_test() -> None:
    # given a category that became twice as common, against shares known exactly
    reference = {"web": 0.5, "branch": 0.3, "partner": 0.2}
    current = ["web"] * 40 + ["branch"] * 20 + ["partner"] * 40
    # when tested
    result = statistics.categorical_drift(current, reference, reference_rows=None, **LIMITS)
    # then the p-value is scipy's for the same counts, and it fires
    expected = stats.chisquare([20, 40, 40], [30, 50, 20])
    assert result is not None and result.test == "chi2"
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-4)
    assert result.drifted


def test_chi_square_against_shares_of_a_counted_reference_is_the_two_sample_test() -> None:
    # given shares profiled from 300 rows
    reference = {"web": 0.5, "branch": 0.3, "partner": 0.2}
    current = ["web"] * 40 + ["branch"] * 20 + ["partner"] * 40
    # when tested
    result = statistics.categorical_drift(current, reference, reference_rows=300, **LIMITS)
    # then it is the chi-square of the contingency table, less sure than against exact shares
    table = [[20, 40, 40], [90, 60, 150]]
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert result is not None and result.p_value == pytest.approx(expected)
    assert result.p_value > stats.chisquare([20, 40, 40], [30, 50, 20]).pvalue


def test_a_small_reference_does_not_make_healthy_windows_look_drifted() -> None:
    # given shares profiled from 500 rows of a known distribution, and windows of 500 rows
    rng = np.random.default_rng(6)
    truth = np.array([0.4, 0.3, 0.2, 0.1])
    names = ["a", "b", "c", "d"]
    two_sample, exact = [], []
    for _ in range(1000):
        profiled = rng.multinomial(500, truth) / 500
        shares = dict(zip(names, profiled.tolist(), strict=True))
        counts = dict(zip(names, rng.multinomial(500, truth).tolist(), strict=True))
        for out, rows in ((two_sample, 500), (exact, None)):
            found = statistics.counted_drift(counts, shares, reference_rows=rows, **LIMITS)
            assert found is not None and found.p_value is not None
            out.append(found.p_value < 0.05)
    # then the two-sample test fires at its level (binomial error of 1,000 draws: ±1.4
    # points), where taking the profiled shares as exact fires about twice as often
    assert 0.03 <= np.mean(two_sample) <= 0.07, np.mean(two_sample)
    assert np.mean(exact) > 0.08, np.mean(exact)


def test_jensen_shannon_is_in_nats_as_evidently_has_it() -> None:
    # given large windows
    reference = {"a": 0.5, "b": 0.5}
    same = statistics.categorical_drift(["a", "b"] * 1000, reference, reference_rows=None, **LIMITS)
    # when every value is a category the reference never had
    disjoint = statistics.categorical_drift(["c"] * 2000, reference, reference_rows=None, **LIMITS)
    # then the distance spans 0 to √(ln 2), scipy's default base
    assert same is not None and same.effect == "jensen_shannon"
    assert same.effect_size == pytest.approx(0.0, abs=1e-6) and not same.drifted
    assert disjoint is not None and disjoint.effect_size == pytest.approx(math.sqrt(math.log(2)))
    assert disjoint.drifted


def test_binned_drift_compares_the_contract_bins_as_categories() -> None:
    # given only a profile: deciles of N(0, 1), counted on 5,000 rows
    edges = list(stats.norm.ppf(np.linspace(0.1, 0.9, 9)))
    fractions = [0.1] * 10
    rng = np.random.default_rng(6)
    # when a same-distribution sample and a shifted one are tested
    limits = {"reference_rows": 5000, **LIMITS}
    same = statistics.binned_drift(rng.normal(size=800), edges, fractions, **limits)
    shifted = statistics.binned_drift(rng.normal(0.5, 1, size=800), edges, fractions, **limits)
    # then only the shifted one fires
    assert same is not None and shifted is not None
    assert not same.drifted and shifted.drifted


def test_psi_needs_every_bin_to_expect_five_rows_before_it_may_alarm() -> None:
    # given deciles of N(0, 1): 50 rows make 5 a bin
    rng = np.random.default_rng(7)
    reference = rng.normal(size=5000)
    edges, _ = _profile(reference, 10)
    small = statistics.sample_drift(rng.normal(size=20), reference, edges, **LIMITS)
    # then a window of 20 rows reports its PSI, often above 0.2 by noise alone, and never alarms
    assert small is not None and small.psi_min_rows == 50
    assert not small.psi_alarms(0.0)
    assert statistics.psi_min_rows([0.5, 0.3, 0.02, 0.18]) == 250


def test_psi_alarms_at_its_level_with_no_drift_at_80_rows() -> None:
    # given 1,000 windows of 80 rows from the reference's own distribution (PSI > 0.2 in about
    # one in ten of them)
    rng = np.random.default_rng(8)
    reference = rng.normal(size=2000)
    edges, _ = _profile(reference, 10)
    found = [
        statistics.sample_drift(rng.normal(size=80), reference, edges, **LIMITS)
        for _ in range(1000)
    ]
    above = np.mean([f is not None and f.psi > 0.2 for f in found])
    alarms = np.mean([f is not None and f.psi_alarms(0.2) for f in found])
    # then PSI alone is above 0.2 often, and its alarm, which needs the bins' chi-square, at
    # most at the test's 5% (plus the binomial error of 1,000 draws)
    assert above > 0.05, above
    assert alarms <= 0.065, alarms


def test_the_score_distribution_is_recovered_from_an_roc_curve() -> None:
    # given scores, labels and the ROC curve an evaluation keeps
    rng = np.random.default_rng(7)
    scores = rng.beta(2, 5, size=20_000)
    labels = (rng.random(20_000) < scores).astype(int)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    keep = np.unique(np.linspace(0, len(fpr) - 1, 101).astype(int))
    # when the distribution is read off the thinned curve
    reference = statistics.score_reference(
        np.minimum(thresholds[keep], 1.0), fpr[keep], tpr[keep], float(labels.mean())
    )
    # then its CDF is the empirical one to within a bin of the curve
    points = np.linspace(0.05, 0.8, 16)
    empirical = np.array([(scores <= p).mean() for p in points])
    assert np.max(np.abs(reference.cdf_at(points) - empirical)) < 0.015


def test_prediction_drift_against_a_stored_sample_fires_at_its_level() -> None:
    # given an evaluation's sample of 2,000 scores, and windows of 1,000 from the same model
    # (a one-sample KS against the ROC's distribution, taken as exact, fired 13.5% here)
    rng = np.random.default_rng(9)
    fired = []
    for _ in range(300):
        stored = rng.beta(2, 5, size=2000)
        edges, _ = _profile(stored, 10)
        found = statistics.sample_drift(
            rng.beta(2, 5, size=1000), stored, edges, p_value=0.05, distance=0.0
        )
        assert found is not None and found.p_value is not None
        fired.append(found.p_value < 0.05)
    # then the two-sample test alone fires at about its 5% (binomial error of 300: ±2.5 points)
    assert np.mean(fired) <= 0.08, np.mean(fired)


def test_reference_quantiles_invert_the_cdf() -> None:
    # given a reference with an empty bin and repeated points
    reference = Reference.from_points([0, 1, 1, 2, 3, 4], [0, 0.2, 0.4, 0.4, 0.9, 1.0])
    # when quantiles are taken of CDF values
    q = np.array([0.1, 0.3, 0.5, 0.95])
    # then the CDF at the quantile gives them back
    assert reference.cdf_at(reference.quantiles(q)) == pytest.approx(q)


def test_the_wilson_interval_matches_the_textbook_example() -> None:
    # given 8 successes in 10 (Newcombe 1998: 0.490 to 0.943 at 95%)
    interval = statistics.wilson(8, 10, 0.95)
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
        interval = statistics.auc_interval(labels, scores, 0.95)
        assert interval is not None
        assert interval.value == pytest.approx(roc_auc_score(labels, scores))
        covered += interval.low <= true_auc <= interval.high
    # then about 95% of the intervals hold the true value
    assert 0.9 <= covered / 200 <= 0.99


def test_an_auc_needs_both_classes() -> None:
    assert statistics.auc_interval([1, 1, 1], [0.2, 0.5, 0.9], 0.95) is None


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
        interval = statistics.auc_interval(labels, rng.normal(0, 1, rows) + shift * labels, 0.95)
        assert interval is not None and 0 <= interval.low <= interval.value <= interval.high <= 1
        covered += interval.low <= true_auc <= interval.high
        judged += 1
    # then it holds the true AUC at its level (binomial error of 1,000 windows: ±1.4 points)
    assert low <= covered / judged <= high, covered / judged


def test_perfectly_separated_classes_still_get_an_interval_below_one() -> None:
    # given 12 negatives all scored below 12 positives, and 3 below 3
    for n in (12, 3):
        interval = statistics.auc_interval([0] * n + [1] * n, list(range(2 * n)), 0.95)
        # then the AUC is 1 and the interval reaches below it, further with fewer rows
        assert interval is not None and interval.value == interval.high == 1.0
        assert 0.5 < interval.low < 1.0
    small = statistics.auc_interval([0, 0, 0, 1, 1, 1], range(6), 0.95)
    large = statistics.auc_interval([0] * 12 + [1] * 12, range(24), 0.95)
    assert small is not None and large is not None and small.low < large.low


@pytest.mark.parametrize("p", [0.6657, 0.7357, 0.7657])
def test_the_wilson_interval_covers_at_its_level_exactly(p: float) -> None:
    # given the model's true accuracies in bench-stats, and every count of right answers
    for n in (20, 80, 300, 1_000, 1_001, 10_000):
        # (counts beyond 8 standard deviations carry no weight)
        spread = 8 * math.sqrt(n * p * (1 - p))
        k = np.arange(max(0, math.floor(n * p - spread)), min(n, math.ceil(n * p + spread)) + 1)
        inside = [statistics.wilson(int(i), n, 0.95) for i in k]
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
    interval = statistics.mean_interval(statistics.row_log_loss(y, p), 0.95)
    assert interval.value == pytest.approx(log_loss(y, p))
    assert interval.low < interval.value < interval.high


def test_cbpe_on_calibrated_scores_recovers_the_realised_metrics_within_its_intervals() -> None:
    # given perfectly calibrated scores: each label is drawn with its row's score
    rng = np.random.default_rng(10)
    hits = {"accuracy": 0, "roc_auc": 0, "log_loss": 0}
    trials = 60
    for seed in range(trials):
        p = rng.beta(2, 3, size=1000)
        y = (rng.random(1000) < p).astype(int)
        # when the metrics are estimated without the labels
        estimate = statistics.cbpe(p, p, 0.95, seed=seed)
        realised = {
            "accuracy": float(((p >= 0.5) == y).mean()),
            "roc_auc": float(roc_auc_score(y, p)),
            "log_loss": float(statistics.row_log_loss(y, p).mean()),
        }
        for name, value in realised.items():
            interval = estimate[name]
            assert interval is not None
            hits[name] += interval.low <= value <= interval.high
    # then the realised value is inside the interval about 95% of the time
    for name, count in hits.items():
        assert count / trials >= 0.88, (name, count)


def test_cbpe_expected_accuracy_is_the_mean_confidence_of_each_decision() -> None:
    # given calibrated probabilities on both sides of the threshold
    p = np.array([0.9, 0.2, 0.6, 0.5])
    # when estimated
    estimate = statistics.cbpe(p, p, 0.95)
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
    calibrator = statistics.calibrator(bins)
    assert calibrator is not None
    estimate = statistics.cbpe(scores, calibrator(scores), 0.95)
    naive = statistics.cbpe(scores, scores, 0.95)
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
        calibrator = statistics.calibrator(_bins(np.array(sample)))
        assert calibrator is not None
        scores = rng.random(1000)
        labels = rng.random(1000) < 0.5 + (scores - 0.5) / 2
        realised = float(((scores >= 0.5) == labels).mean())
        # when CBPE estimates accuracy with and without the calibrator's uncertainty
        draws = statistics.calibration_draws(sample, scores, 300, seed=seed)
        for name, found in (
            (
                "resampled",
                statistics.cbpe(scores, calibrator(scores), 0.95, draws=draws, seed=seed),
            ),
            ("fixed", statistics.cbpe(scores, calibrator(scores), 0.95, seed=seed)),
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
        calibrator = statistics.calibrator(_bins(sample))
        assert calibrator is not None
        window = 1 / (1 + np.exp(1 - 1.5 * rng.standard_normal(1000)))
        labels = rng.random(1000) < window
        realised = float(roc_auc_score(labels, window))
        # when CBPE estimates the ROC AUC with the calibrator's uncertainty
        draws = statistics.resampled(sample, 300, seed=seed)(window)
        found = statistics.cbpe(window, calibrator(window), 0.95, draws=draws, seed=seed)["roc_auc"]
        assert found is not None
        covered += found.low <= realised <= found.high
        errors.append(found.value - realised)
        flat = np.interp(window, calibrator.scores, calibrator.rates)  # flat beyond the ends
        flat_errors.append(statistics.expected_auc(window, flat) - realised)
    # then the intervals cover about 95%, and the estimate is unbiased (the standard error of
    # the mean error is about 0.0015), where flat ends beyond the outer bins put it 0.006 low
    assert covered / trials >= 0.91, covered
    assert abs(float(np.mean(errors))) < 0.003, np.mean(errors)
    assert float(np.mean(flat_errors)) < -0.004, np.mean(flat_errors)


def test_the_calibrator_carries_its_slope_beyond_its_first_and_last_point() -> None:
    # given reliability curves on the diagonal and at half its slope
    diagonal = statistics.calibrator([(0.1, 0.1), (0.5, 0.5), (0.9, 0.9)])
    halved = statistics.calibrator([(0.1, 0.3), (0.9, 0.7)])
    assert diagonal is not None and halved is not None
    # then beyond their points they carry on at the same slope, within [0, 1]
    x = np.array([0.0, 0.05, 0.5, 0.95, 1.0])
    assert diagonal(x) == pytest.approx(x)
    assert halved(x) == pytest.approx(0.25 + x / 2)
    steep = statistics.calibrator([(0.3, 0.1), (0.7, 0.9)])
    assert steep is not None
    assert steep(np.array([0.0, 0.2, 0.8, 1.0])) == pytest.approx([0.0, 0.0, 1.0, 1.0])
    # and one point is flat: it has no slope
    single = statistics.calibrator([(0.4, 0.3)])
    assert single is not None and single(np.array([0.0, 1.0])) == pytest.approx([0.3, 0.3])


def test_resampled_calibrators_are_the_evaluations_fits_on_resamples() -> None:
    # given a calibration set
    rng = np.random.default_rng(14)
    scores = rng.random(500)
    sample = np.column_stack([scores, rng.random(500) < scores])
    # when refitted on resamples, once for any number of windows
    fitted = statistics.resampled(sample, 45, seed=3)
    # then each is the evaluation's curve on a bootstrap resample, drawn as before
    pick = np.random.default_rng(3)
    for calibrator in fitted.fitted:
        resample = sample[pick.integers(0, 500, 500)]
        assert calibrator == statistics.calibrator(_bins(resample))
    window = rng.random(50)
    draws = statistics.calibration_draws(sample, window, 45, seed=3)
    assert np.array_equal(fitted(window), draws) and draws.shape == (45, 50)
    # and CBPE simulates the same labels from them, applied a few at a time or all at once
    calibrated = window
    assert statistics.cbpe(window, calibrated, 0.95, draws=fitted) == statistics.cbpe(
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
    first = statistics.resampled(sample, 30, seed=1)
    # then the same set gives the same fits (kept: the same object), and a set, a number of
    # simulations or a seed that differs gives its own
    assert statistics.resampled([tuple(p) for p in sample], 30, seed=1) is first
    assert statistics.resampled(other, 30, seed=1).fitted != first.fitted
    assert len(statistics.resampled(sample, 31, seed=1)) == 31
    assert statistics.resampled(sample, 30, seed=2).fitted != first.fitted
    pick = np.random.default_rng(1)
    for calibrator in statistics.resampled(other, 30, seed=1).fitted:
        assert calibrator == statistics.calibrator(_bins(other[pick.integers(0, 300, 300)]))


def _bins(sample: np.ndarray) -> list[tuple[float, float]]:
    """The evaluation's reliability curve: ten equal-width bins."""
    from flywheel.evaluation import calibration

    return list(calibration(sample[:, 1], sample[:, 0]))
