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

LIMITS = {"large": 1000, "p_value": 0.05, "distance": 0.1}


def _profile(sample: np.ndarray, bins: int) -> tuple[list[float], list[float]]:
    """Quantile bins as a contract stores them."""
    import pandas as pd

    edges = drift.quantile_edges(pd.Series(sample), bins)
    return edges, drift.bin_fractions(pd.Series(sample), edges)


def test_psi_of_a_sample_against_its_own_profile_is_about_zero() -> None:
    # given a reference and a second draw from the same distribution
    rng = np.random.default_rng(1)
    reference, current = rng.normal(size=50_000), rng.normal(size=50_000)
    edges, fractions = _profile(reference, 10)
    # when they are compared
    result = statistics.sample_drift(current, reference, edges, fractions, **LIMITS)
    # then PSI is near zero and nothing drifted
    assert result is not None
    assert result.psi < 0.002
    assert not result.drifted


def test_psi_of_shifted_normals_approaches_the_symmetric_kl_divergence() -> None:
    # given N(0, 1) as reference and N(0.5, 1) served: PSI tends to KL(P|Q) + KL(Q|P) = 0.5² = 0.25
    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=400_000), rng.normal(0.5, 1, size=400_000)
    edges, fractions = _profile(reference, 50)
    # when compared over 50 quantile bins
    result = statistics.sample_drift(current, reference, edges, fractions, **LIMITS)
    # then PSI is the analytic value, less a little for the binning
    assert result is not None
    assert result.psi == pytest.approx(0.25, rel=0.05)


def test_a_small_window_uses_two_sample_ks_with_scipys_p_value() -> None:
    # given 300 served values of a slightly shifted normal
    rng = np.random.default_rng(3)
    reference, current = rng.normal(size=5000), rng.normal(0.3, 1, size=300)
    edges, fractions = _profile(reference, 10)
    # when compared
    result = statistics.sample_drift(current, reference, edges, fractions, **LIMITS)
    # then it is scipy's KS test, and it finds the shift
    expected = stats.ks_2samp(current, reference)
    assert result is not None and result.test == "ks"
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.drifted


def test_a_large_window_uses_the_wasserstein_distance_normed_by_the_reference_spread() -> None:
    # given N(0, 2) and N(0.6, 2): W1 is the shift, 0.6, and normed by σ = 2 it is 0.3
    rng = np.random.default_rng(4)
    reference, current = rng.normal(0, 2, size=100_000), rng.normal(0.6, 2, size=100_000)
    edges, fractions = _profile(reference, 10)
    # when compared
    result = statistics.sample_drift(current, reference, edges, fractions, **LIMITS)
    # then
    assert result is not None and result.test == "wasserstein" and result.p_value is None
    assert result.statistic == pytest.approx(0.3, abs=0.01)
    assert result.drifted


def test_a_feature_with_few_values_is_tested_as_categories() -> None:
    # given a count feature with four values
    rng = np.random.default_rng(5)
    reference, current = rng.poisson(0.5, 5000), rng.poisson(0.5, 400)
    reference, current = np.minimum(reference, 3), np.minimum(current, 3)
    edges, fractions = _profile(reference, 10)
    # when compared
    result = statistics.sample_drift(current, reference, edges, fractions, **LIMITS)
    # then it is chi-square on the value counts, not KS on a step function
    counts = np.bincount(current, minlength=4)
    expected = np.bincount(reference, minlength=4) / len(reference) * len(current)
    assert result is not None and result.test == "chi2"
    assert result.p_value == pytest.approx(stats.chisquare(counts, expected).pvalue)


def test_chi_square_on_categories_is_scipys() -> None:
    # given a category that became twice as common
    reference = {"web": 0.5, "branch": 0.3, "partner": 0.2}
    current = ["web"] * 40 + ["branch"] * 20 + ["partner"] * 40
    # when tested
    result = statistics.categorical_drift(current, reference, **LIMITS)
    # then the p-value is scipy's for the same counts, and it fires
    expected = stats.chisquare([20, 40, 40], [30, 50, 20])
    assert result is not None and result.test == "chi2"
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.drifted


def test_jensen_shannon_is_zero_for_equal_shares_and_one_for_disjoint_ones() -> None:
    # given large windows
    reference = {"a": 0.5, "b": 0.5}
    same = statistics.categorical_drift(["a", "b"] * 1000, reference, **LIMITS)
    # when every value is a category the reference never had
    disjoint = statistics.categorical_drift(["c"] * 2000, reference, **LIMITS)
    # then the distance (base 2) spans its whole range
    assert same is not None and same.test == "jensen_shannon"
    assert same.statistic == pytest.approx(0.0, abs=1e-6) and not same.drifted
    assert disjoint is not None and disjoint.statistic == pytest.approx(1.0, abs=1e-3)


def test_binned_drift_compares_the_contract_bins_as_categories() -> None:
    # given only a profile: deciles of N(0, 1)
    edges = list(stats.norm.ppf(np.linspace(0.1, 0.9, 9)))
    fractions = [0.1] * 10
    rng = np.random.default_rng(6)
    # when a same-distribution sample and a shifted one are tested
    same = statistics.binned_drift(rng.normal(size=800), edges, fractions, **LIMITS)
    shifted = statistics.binned_drift(rng.normal(0.5, 1, size=800), edges, fractions, **LIMITS)
    # then only the shifted one fires
    assert same is not None and shifted is not None
    assert not same.drifted and shifted.drifted


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

    # and KS against it fires about as often as its level on the same scores, always on others
    def fired(draw: np.ndarray) -> bool:
        result = statistics.distribution_drift(draw, reference, [0.3], [0.5, 0.5], **LIMITS)
        assert result is not None and result.test == "ks"
        return result.drifted

    same = np.mean([fired(rng.choice(scores, 500)) for _ in range(200)])
    assert same <= 0.09
    assert all(fired(rng.beta(2, 4, size=500)) for _ in range(20))


def test_reference_quantiles_invert_the_cdf() -> None:
    # given a reference with an empty bin and repeated points
    reference = Reference.from_points([0, 1, 1, 2, 3, 4], [0, 0.2, 0.4, 0.4, 0.9, 1.0])
    # when quantiles are taken of CDF values
    q = np.array([0.1, 0.3, 0.5, 0.95])
    # then the CDF at the quantile gives them back
    assert reference.cdf_at(reference.quantiles(q)) == pytest.approx(q)
    # and its spread is that of uniform mass on each segment: 0.4 on [0, 1], 0.5 on [2, 3],
    # 0.1 on [3, 4], so a mean of 1.8 and a second moment of 0.4/3 + 0.5·19/3 + 0.1·37/3
    assert reference.std == pytest.approx(math.sqrt((0.4 + 0.5 * 19 + 0.1 * 37) / 3 - 1.8**2))


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
