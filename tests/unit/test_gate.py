"""The promotion policy: minimum metric, maximum regression, per-slice checks, baselines to
beat, gaps between groups and features that add nothing."""

from __future__ import annotations

import pytest

from flywheel.config import (
    BaselineSettings,
    FairnessSettings,
    ImportanceSettings,
    PromotionSettings,
    SliceCheck,
)
from flywheel.evaluation import (
    BaselineEvaluation,
    Curve,
    Evaluation,
    Fairness,
    FeatureImportance,
    GroupScores,
    ModelEvaluation,
    Scores,
    SliceScore,
)
from flywheel.gate import decide


def _scores(auc: float) -> Scores:
    return Scores(
        rows=1000,
        positive_rate=0.25,
        roc_auc=auc,
        average_precision=0.6,
        accuracy=0.8,
        balanced_accuracy=0.7,
        f1=0.5,
        log_loss=0.4,
        brier=0.15,
        confusion=((600, 50), (100, 250)),
    )


def _model(
    role: str, auc: float, slices: dict[str, float] | None = None, holdout: float | None = None
) -> ModelEvaluation:
    return ModelEvaluation(
        role=role,  # type: ignore[arg-type]
        version=None if role == "candidate" else "v3",
        newest=_scores(auc),
        holdout=_scores(holdout if holdout is not None else auc) if role == "candidate" else None,
        roc=Curve(fpr=(0.0, 1.0), tpr=(0.0, 1.0), thresholds=(1.0, 0.0)),
        calibration=(),
        slices={"region": {k: SliceScore(rows=300, value=v) for k, v in (slices or {}).items()}},
    )


def _evaluation(candidate: ModelEvaluation, production: ModelEvaluation | None) -> Evaluation:
    return Evaluation(
        metric="roc_auc", newest_batch="2026-01-14", candidate=candidate, production=production
    )


POLICY = PromotionSettings(
    min_metric=0.75,
    max_regression=0.01,
    slices=(SliceCheck(column="region", min_metric=0.7, min_rows=100),),
)


def test_first_model_is_blessed_on_minimums_alone() -> None:
    decision = decide(_evaluation(_model("candidate", 0.8, {"north": 0.78}), None), POLICY)
    assert decision.blessed and decision.production_version is None
    assert [c.name for c in decision.checks] == [
        "min roc_auc (holdout)",
        "min roc_auc (newest batch)",
        "slice region=north",
    ]


def test_below_the_minimum_is_not_blessed_and_says_why() -> None:
    decision = decide(_evaluation(_model("candidate", 0.7, holdout=0.8), None), POLICY)
    assert not decision.blessed
    assert decision.reasons == [
        "candidate roc_auc on the newest batch 2026-01-14 0.7000 is below the minimum 0.7500"
    ]


def test_a_regression_beyond_the_allowance_blocks_promotion() -> None:
    ok = decide(_evaluation(_model("candidate", 0.805), _model("production", 0.81)), POLICY)
    worse = decide(_evaluation(_model("candidate", 0.79), _model("production", 0.81)), POLICY)
    assert ok.blessed
    assert not worse.blessed
    assert "production v3 scored 0.8100, allowed regression 0.0100" in worse.reasons[0]


def test_a_weak_slice_blocks_promotion_and_small_slices_are_skipped() -> None:
    candidate = _model("candidate", 0.85, {"north": 0.65, "south": 0.9})
    decision = decide(_evaluation(candidate, None), POLICY)
    assert not decision.blessed
    assert decision.reasons == [
        "candidate roc_auc on region=north (300 rows) 0.6500 is below the minimum 0.7000"
    ]
    small = POLICY.model_copy(
        update={"slices": (SliceCheck(column="region", min_metric=0.7, min_rows=500),)}
    )
    assert decide(_evaluation(candidate, None), small).blessed


def test_an_undefined_metric_fails_the_check() -> None:
    decision = decide(_evaluation(_model("candidate", float("nan"), holdout=0.8), None), POLICY)
    assert not decision.blessed and "undefined" in decision.reasons[0]
    assert "| min roc_auc (newest batch) | – | 0.7500 | FAIL |" in decision.markdown()


def test_a_floor_production_already_fails_does_not_hold_back_a_candidate_no_worse_there() -> None:
    # given a world that changed: production is below the newest batch's floor and the
    # north slice's, and the retrained candidate is below both floors but above production
    production = _model("production", 0.70, {"north": 0.60, "south": 0.72})
    better = _model("candidate", 0.73, {"north": 0.66, "south": 0.75}, holdout=0.8)
    # when
    decision = decide(_evaluation(better, production), POLICY)
    # then it is blessed, each relaxed floor saying why
    assert decision.blessed
    details = {c.name: c.detail for c in decision.checks}
    assert details["slice region=north"].endswith(
        "is below the minimum 0.7000, but production v3 scored 0.6000 there, further below it: "
        "the candidate is no worse"
    )
    # and a candidate worse than production where production fails the floor is refused
    worse = _model("candidate", 0.73, {"north": 0.58, "south": 0.75}, holdout=0.8)
    refused = decide(_evaluation(worse, production), POLICY)
    assert not refused.blessed
    assert refused.reasons == [
        "candidate roc_auc on region=north (300 rows) 0.5800 is below the minimum 0.7000, "
        "and production v3 scored 0.6000"
    ]
    # and where production meets the floor, the floor holds as before
    healthy = _model("production", 0.70, {"north": 0.71, "south": 0.72})
    assert not decide(_evaluation(better, healthy), POLICY).blessed


def _with_baselines(candidate_auc: float, **baselines: float) -> Evaluation:
    return _evaluation(_model("candidate", candidate_auc), None).model_copy(
        update={
            "baselines": {
                name: BaselineEvaluation(newest=_scores(auc), holdout=_scores(auc))
                for name, auc in baselines.items()
            }
        }
    )


BASELINE_POLICY = POLICY.model_copy(update={"baseline": BaselineSettings(margin=0.02)})


def test_a_candidate_must_beat_each_baseline_by_the_margin() -> None:
    # given a candidate 0.01 above a logistic regression, with a margin of 0.02
    evaluation = _with_baselines(0.80, logistic_regression=0.79, majority_class=0.5)
    # when gated
    decision = decide(evaluation, BASELINE_POLICY)
    # then it fails against the logistic regression only, and the record says by how much
    assert not decision.blessed
    checks = {c.name: c for c in decision.checks}
    assert checks["beats baseline majority_class"].passed
    lost = checks["beats baseline logistic_regression"]
    assert (lost.passed, lost.measured, lost.threshold) == (False, 0.80, pytest.approx(0.81))
    assert "baseline logistic_regression scored 0.7900, required margin 0.0200" in lost.detail
    # and 0.03 above is enough
    assert decide(_with_baselines(0.82, logistic_regression=0.79), BASELINE_POLICY).blessed


def test_a_margin_production_also_misses_does_not_hold_back_a_candidate_beating_it() -> None:
    # given concept_drift's first retrain (bench-loop, seed 0): on the changed newest batch the
    # candidate scores 0.7621, 0.0024 above the logistic regression where the margin asks 0.01,
    # and production v3 scores 0.7477, below the baseline itself
    production = _model("production", 0.7477)
    evaluation = _with_baselines(0.7621, logistic_regression=0.7597, majority_class=0.5)
    evaluation = evaluation.model_copy(update={"production": production})
    policy = BASELINE_POLICY.model_copy(
        update={"baseline": BaselineSettings(margin=0.01), "slices": ()}
    )
    # when
    decision = decide(evaluation, policy)
    # then it is blessed: refusing it would keep the model that is further short serving
    assert decision.blessed, decision.reasons
    lr = {c.name: c for c in decision.checks}["beats baseline logistic_regression"]
    assert lr.detail.endswith(
        "(baseline logistic_regression scored 0.7597, required margin 0.0100), but production "
        "v3 scored 0.7477 there, further below it: the candidate is no worse"
    )
    # and a candidate below production there is still refused, saying what production scored
    worse = evaluation.model_copy(update={"production": _model("production", 0.7650)})
    refused = decide(worse, policy)
    assert refused.reasons == [
        "candidate roc_auc on the newest batch 0.7621 is below the minimum 0.7697 (baseline "
        "logistic_regression scored 0.7597, required margin 0.0100), and production v3 scored "
        "0.7650"
    ]
    # and the first model, with nothing in production, must beat every baseline by the margin
    assert not decide(evaluation.model_copy(update={"production": None}), policy).blessed


def test_without_a_baseline_policy_the_baselines_are_recorded_not_gated() -> None:
    decision = decide(_with_baselines(0.76, logistic_regression=0.9), POLICY)
    assert decision.blessed
    assert not [c for c in decision.checks if c.name.startswith("beats")]


def _with_gaps(
    equal_opportunity: float | None, parity: float | None, calibration: float | None
) -> Evaluation:
    group = GroupScores(
        rows=300,
        positives=80,
        true_positive_rate=0.5,
        selection_rate=0.3,
        calibration_error=0.05,
        compared=True,
    )
    fairness = Fairness(
        attribute="region",
        groups={"north": group, "west": group},
        equal_opportunity_difference=equal_opportunity,
        demographic_parity_difference=parity,
        calibration_gap=calibration,
    )
    candidate = _model("candidate", 0.8).model_copy(update={"fairness": fairness})
    return _evaluation(candidate, None)


FAIR_POLICY = POLICY.model_copy(
    update={
        "fairness": FairnessSettings(
            attribute="region",
            max_equal_opportunity_difference=0.2,
            max_demographic_parity_difference=0.1,
            max_calibration_gap=None,
        )
    }
)


def test_each_gap_beyond_its_maximum_fails_and_a_null_maximum_is_no_check() -> None:
    # given a true positive rate gap above its maximum, a parity gap within it
    decision = decide(_with_gaps(0.35, 0.05, 0.9), FAIR_POLICY)
    # then the first fails, the second passes, the calibration gap (no maximum) is not checked
    checks = {c.name: c for c in decision.checks}
    assert not decision.blessed
    assert not checks["equal opportunity difference (region)"].passed
    assert (
        "0.3500 exceeds the maximum 0.2000"
        in checks["equal opportunity difference (region)"].detail
    )
    assert checks["demographic parity difference (region)"].passed
    assert "calibration gap (region)" not in checks


def test_a_gap_with_fewer_than_two_groups_to_compare_passes_and_says_so() -> None:
    decision = decide(_with_gaps(None, None, None), FAIR_POLICY)
    assert decision.blessed
    check = next(c for c in decision.checks if c.name.startswith("equal opportunity"))
    assert check.measured is None and "so no gap to measure" in check.detail


def _trained_and_evaluated(scenario: str, rows: int = 800, iters: int = 40) -> Evaluation:
    """A small model trained on two days of the scenario and evaluated on the third."""
    import pandas as pd

    from flywheel import synthetic, training
    from flywheel.config import load_settings
    from flywheel.evaluation import evaluate_model
    from flywheel.predictor import Predictor

    settings = load_settings(
        None,
        env={},
        overrides=[f"model.params.max_iter={iters}", "promotion.fairness.attribute=region"],
    )
    generator = settings.data.generator.model_copy(
        update={"scenario": scenario, "rows_per_day": rows, "change_day": 0}
    )
    frames = [
        synthetic.generate_day(day, generator) for day in synthetic.days(generator.start_date, 3)
    ]
    features = settings.features
    result = training.train(pd.concat(frames[:2]), features, settings.model, "roc_auc")
    candidate = evaluate_model(
        Predictor(result.model, features.numeric, features.categorical),
        "candidate",
        None,
        frames[2],
        None,
        features,
        "roc_auc",
        fairness=settings.promotion.fairness,
    )
    return Evaluation(metric="roc_auc", newest_batch="day 3", candidate=candidate, production=None)


def test_the_fairness_policy_catches_a_group_served_worse_and_passes_stable_data() -> None:
    # given the same fairness policy (the shipped thresholds), on stable data and on data
    # where one region's defaults follow a signal the features do not carry
    policy = PromotionSettings(
        min_metric=0.0,
        fairness=FairnessSettings(
            attribute="region",
            max_equal_opportunity_difference=0.25,
            max_demographic_parity_difference=0.2,
            max_calibration_gap=0.1,
            min_rows=150,
        ),
    )
    # when each candidate is gated
    stable = decide(_trained_and_evaluated("stable"), policy)
    served_worse = decide(_trained_and_evaluated("underserved_group"), policy)
    # then stable data passes, and the gate refuses the other on the true positive rate gap
    assert stable.blessed, stable.reasons
    failed = [c.name for c in served_worse.checks if not c.passed]
    assert "equal opportunity difference (region)" in failed
    assert not served_worse.blessed


def _importance(low: float, high: float) -> FeatureImportance:
    return FeatureImportance(
        mean=(low + high) / 2,
        std=0.01,
        low=low,
        high=high,
        preprocess_us_per_row=1.0,
        preprocess_share=0.5,
        scoring_share=0.5,
        bytes_per_row=16.0,
        encoded_columns=1,
    )


REFUSE = POLICY.model_copy(update={"importance": ImportanceSettings(unimportant_features="refuse")})


@pytest.mark.parametrize(("low", "high"), [(-0.002, 0.004), (-0.02, -0.01), (0.0, 0.01)])
def test_the_refuse_policy_refuses_a_feature_whose_importance_does_not_lie_above_zero(
    low: float, high: float
) -> None:
    # given a candidate with one feature that matters and one whose interval reaches zero
    candidate = _model("candidate", 0.85).model_copy(
        update={"importance": {"income": _importance(0.05, 0.08), "age": _importance(low, high)}}
    )
    # when the policy refuses features that add nothing
    decision = decide(_evaluation(candidate, None), REFUSE)
    # then it is not blessed, naming the feature and its interval
    assert not decision.blessed
    assert decision.reasons == [
        f"feature age: permutation importance {(low + high) / 2:+.4f}, 95% interval "
        f"[{low:+.4f}, {high:+.4f}] does not lie above zero: the feature adds nothing measurable"
    ]
    checks = {c.name: c for c in decision.checks}
    assert checks["importance income"].passed and checks["importance income"].measured == 0.05
    assert (checks["importance age"].measured, checks["importance age"].threshold) == (low, 0.0)
    # and by default (allow) the same candidate is blessed, with no importance checks
    allowed = decide(_evaluation(candidate, None), POLICY)
    assert allowed.blessed and not any(c.name.startswith("importance") for c in allowed.checks)


def test_the_refuse_policy_refuses_a_candidate_whose_importance_was_not_measured() -> None:
    decision = decide(_evaluation(_model("candidate", 0.85), None), REFUSE)
    assert not decision.blessed
    assert decision.reasons == [
        "feature importance was not measured, and the policy refuses features that add nothing"
    ]


def test_a_baseline_policy_refuses_a_candidate_whose_baselines_were_not_evaluated() -> None:
    # given a policy naming baselines to beat, and an evaluation that scored none
    decision = decide(_with_baselines(0.9), BASELINE_POLICY)
    # then the candidate is refused, saying why
    assert not decision.blessed
    assert decision.reasons == [
        "baselines not evaluated: the policy requires the candidate to beat "
        "promotion.baseline's models, and the evaluation scored none (evaluate ran "
        "without the baselines train fits)"
    ]


def test_a_fairness_policy_refuses_a_candidate_whose_groups_were_not_measured() -> None:
    # given a fairness policy, and an evaluation without group scores
    decision = decide(_evaluation(_model("candidate", 0.9), None), FAIR_POLICY)
    # then the candidate is refused, saying why
    assert not decision.blessed
    assert decision.reasons == [
        "fairness not measured: the policy limits the gaps between region groups, and the "
        "evaluation holds no group scores (evaluate ran without promotion.fairness)"
    ]
    # and so is one whose groups are another attribute's
    other = FAIR_POLICY.model_copy(
        update={"fairness": FAIR_POLICY.fairness.model_copy(update={"attribute": "segment"})}  # type: ignore[union-attr]
    )
    decision = decide(_with_gaps(0.0, 0.0, 0.0), other)
    assert not decision.blessed
    assert decision.reasons == [
        "fairness not measured: the policy limits the gaps between segment groups, and the "
        "evaluation measured region's"
    ]


def test_an_equal_opportunity_gap_without_positives_to_compare_says_so() -> None:
    # given two compared groups, one without actual positives: no true positive rate there
    evaluation = _with_gaps(None, 0.05, 0.02)
    fairness = evaluation.candidate.fairness
    assert fairness is not None
    west = fairness.groups["west"].model_copy(update={"positives": 0, "true_positive_rate": None})
    candidate = evaluation.candidate.model_copy(
        update={
            "fairness": fairness.model_copy(update={"groups": {**fairness.groups, "west": west}})
        }
    )
    decision = decide(_evaluation(candidate, None), FAIR_POLICY)
    # then the check passes (nothing to compare), naming the real reason
    check = next(c for c in decision.checks if c.name.startswith("equal opportunity"))
    assert check.passed and check.measured is None
    assert check.detail == (
        "true positive rate gap between region groups: 2 groups of at least 100 rows, but "
        "only 1 with actual positives (a true positive rate needs some), so no gap to measure"
    )
    assert decision.blessed


def _regression(role: str, rmse: float) -> ModelEvaluation:
    scores = Scores(rows=200, task="regression", rmse=rmse, mae=rmse * 0.8, r2=0.4)
    return ModelEvaluation(
        role=role,  # type: ignore[arg-type]
        version=None if role == "candidate" else "v3",
        newest=scores,
        holdout=scores if role == "candidate" else None,
        slices={},
    )


def _by_rmse(candidate: float, production: float | None, **policy: object) -> Evaluation:
    del policy
    return Evaluation(
        metric="rmse",
        task="regression",
        newest_batch="2026-01-08",
        candidate=_regression("candidate", candidate),
        production=None if production is None else _regression("production", production),
    )


def test_an_error_is_bounded_from_above_and_lower_is_better_against_production() -> None:
    policy = PromotionSettings(metric="rmse", max_metric=40.0, max_regression=2.0)
    # given a candidate within the maximum and no worse than production by more than allowed
    assert decide(_by_rmse(38.0, 37.0), policy).blessed
    # when it is above the maximum, or worse than production by more than 2
    too_high = decide(_by_rmse(41.0, None), policy)
    worse = decide(_by_rmse(39.5, 37.0), policy)
    # then it is refused, each naming the bound
    assert not too_high.blessed and "exceeds the maximum 40.0000" in too_high.reasons[0]
    assert not worse.blessed
    assert any("exceeds the maximum 39.0000" in r for r in worse.reasons)


def test_an_error_beats_the_baselines_by_being_lower() -> None:
    policy = PromotionSettings(
        metric="rmse", max_metric=60.0, baseline=BaselineSettings(margin=1.0)
    )
    mean = _regression("candidate", 70.0).newest
    evaluation = _by_rmse(50.0, None).model_copy(
        update={"baselines": {"mean_value": BaselineEvaluation(newest=mean, holdout=mean)}}
    )
    assert decide(evaluation, policy).blessed
    close = _regression("candidate", 50.5).newest
    refused = decide(
        evaluation.model_copy(
            update={"baselines": {"ridge": BaselineEvaluation(newest=close, holdout=close)}}
        ),
        policy,
    )
    assert not refused.blessed and "exceeds the maximum 49.5000" in refused.reasons[0]


def test_a_perfect_baseline_is_matched_not_beaten() -> None:
    policy = PromotionSettings(min_metric=0.7, baseline=BaselineSettings(margin=0.01))
    perfect = _scores(1.0)
    evaluation = _evaluation(_model("candidate", 1.0), None).model_copy(
        update={
            "baselines": {
                "logistic_regression": BaselineEvaluation(newest=perfect, holdout=perfect)
            }
        }
    )
    assert decide(evaluation, policy).blessed


def test_bounds_that_contradict_the_metric_are_refused_at_load() -> None:
    with pytest.raises(ValueError, match="lower rmse is better; bound it with max_metric"):
        PromotionSettings(metric="rmse", min_metric=0.5)
    with pytest.raises(ValueError, match="rmse needs a maximum"):
        PromotionSettings(metric="rmse")
    with pytest.raises(ValueError, match=r"promotion\.metric: rmse is not a binary metric"):
        PromotionSettings(metric="rmse", max_metric=3.0).threshold("binary")


def test_a_slice_of_an_error_is_held_to_a_maximum_and_a_bound_of_the_wrong_kind_refuses() -> None:
    candidate = _regression("candidate", 10.0).model_copy(
        update={
            "slices": {
                "region": {
                    "north": SliceScore(rows=300, value=11.0),
                    "south": SliceScore(rows=300, value=14.0),
                }
            }
        }
    )
    evaluation = _by_rmse(10.0, None).model_copy(update={"candidate": candidate})
    policy = PromotionSettings(
        metric="rmse", max_metric=20.0, slices=(SliceCheck(column="region", max_metric=12.0),)
    )
    # given slices of an error, then the one above its maximum is refused
    decision = decide(evaluation, policy)
    failed = [c.name for c in decision.checks if not c.passed]
    assert failed == ["slice region=south"]
    # and a slice given a minimum for an error (settings built in code, past the load-time
    # check) fails closed
    wrong = PromotionSettings.model_construct(
        metric="rmse", max_metric=20.0, slices=(SliceCheck(column="region", min_metric=0.5),)
    )
    refused = decide(evaluation, wrong)
    assert not refused.blessed and any("cannot be applied" in r for r in refused.reasons)
