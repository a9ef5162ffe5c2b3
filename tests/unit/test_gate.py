"""The promotion policy: minimum metric, maximum regression, per-slice and importance checks."""

from __future__ import annotations

import pytest

from flywheel.config import ImportanceSettings, PromotionSettings, SliceCheck
from flywheel.evaluation import (
    Curve,
    Evaluation,
    FeatureImportance,
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
