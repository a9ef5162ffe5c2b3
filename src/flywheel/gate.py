"""The promotion policy as code: champion against challenger, with a recorded decision."""

from __future__ import annotations

import math

from flywheel.config import LOWER_IS_BETTER, PromotionSettings
from flywheel.evaluation import Evaluation, FeatureImportance
from flywheel.records import Record


class Check(Record):
    """One rule of the policy, what it measured and whether it passed."""

    name: str
    measured: float | None
    threshold: float
    passed: bool
    detail: str


class Decision(Record):
    """Blessed or not, and why."""

    blessed: bool
    metric: str
    production_version: str | None
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        """The failed checks, as sentences."""
        return [c.detail for c in self.checks if not c.passed]

    def markdown(self) -> str:
        """The decision as a table for the Kubeflow UI."""
        verdict = "BLESSED" if self.blessed else "NOT BLESSED"
        lines = [
            f"# Gate: {verdict}",
            "",
            f"Metric: {self.metric}. Production: {self.production_version or 'none yet'}.",
            "",
            "| check | measured | threshold | result |",
            "|---|---|---|---|",
        ]
        for c in self.checks:
            measured = "–" if c.measured is None else f"{c.measured:.4f}"
            lines.append(
                f"| {c.name} | {measured} | {c.threshold:.4f} | {'pass' if c.passed else 'FAIL'} |"
            )
        if self.reasons:
            lines += ["", "Reasons:", *[f"- {r}" for r in self.reasons]]
        return "\n".join(lines) + "\n"


def _bound(
    name: str, measured: float | None, threshold: float, what: str, *, maximum: bool
) -> Check:
    """A check that `measured` is at least (or, for a `maximum`, at most) `threshold`; an
    undefined measurement fails."""
    value = None if measured is None or math.isnan(measured) else measured
    ok = value is not None and (value <= threshold if maximum else value >= threshold)
    verbs = ("is within", "exceeds", "maximum") if maximum else ("meets", "is below", "minimum")
    shown = "undefined" if value is None else f"{value:.4f}"
    return Check(
        name=name,
        measured=value,
        threshold=threshold,
        passed=ok,
        detail=f"{what} {shown} {verbs[0] if ok else verbs[1]} the {verbs[2]} {threshold:.4f}",
    )


def _at_least(name: str, measured: float | None, threshold: float, what: str) -> Check:
    return _bound(name, measured, threshold, what, maximum=False)


def _at_most(name: str, measured: float | None, threshold: float, what: str) -> Check:
    return _bound(name, measured, threshold, what, maximum=True)


def _unmeasured(name: str, threshold: float, detail: str) -> Check:
    """A check the policy asks for on something the evaluation did not measure: it fails."""
    return Check(name=name, measured=None, threshold=threshold, passed=False, detail=detail)


def _meets(name: str, measured: float | None, threshold: float, what: str, lower: bool) -> Check:
    """At least `threshold` for a metric where higher is better, at most it for an error."""
    return _bound(name, measured, threshold, what, maximum=lower)


def _floor(
    check: Check, production: tuple[str | None, float | None] | None, lower: bool = False
) -> Check:
    """A floor that production already fails on the same rows does not hold back a candidate
    that does at least as well there: refusing it would keep the worse model serving (after a
    concept drift, the first retrain is often below a slice's floor, and production further
    below it, or short of a baseline's margin with production shorter). The regression check
    against production still applies; the first model, with nothing in production, must meet
    every floor."""
    if check.passed or production is None or check.measured is None:
        return check
    version, served = production
    sign = -1.0 if lower else 1.0  # compared as "higher is better"
    if served is None or math.isnan(served) or sign * served >= sign * check.threshold:
        return check
    if sign * check.measured < sign * served:
        return check.model_copy(
            update={"detail": f"{check.detail}, and production {version} scored {served:.4f}"}
        )
    return check.model_copy(
        update={
            "passed": True,
            "detail": f"{check.detail}, but production {version} scored {served:.4f} there, "
            "further below it: the candidate is no worse",
        }
    )


def _importance_checks(
    importance: dict[str, FeatureImportance] | None, confidence: float
) -> list[Check]:
    """One check per feature: its permutation importance's interval must lie above zero.

    An interval that reaches zero means shuffling the feature did not measurably hurt the
    model: it adds cost, and risk, for nothing this holdout can show.
    """
    if importance is None:
        return [
            _unmeasured(
                "feature importance",
                0.0,
                "feature importance was not measured, and the policy refuses "
                "features that add nothing",
            )
        ]
    checks = []
    for name, measured in importance.items():
        interval = f"[{measured.low:+.4f}, {measured.high:+.4f}]"
        verdict = (
            "lies above zero"
            if measured.matters
            else "does not lie above zero: the feature adds nothing measurable"
        )
        checks.append(
            Check(
                name=f"importance {name}",
                measured=measured.low,
                threshold=0.0,
                passed=measured.matters,
                detail=f"feature {name}: permutation importance {measured.mean:+.4f}, "
                f"{confidence:.0%} interval {interval} {verdict}",
            )
        )
    return checks


def baseline_checks(evaluation: Evaluation, policy: PromotionSettings) -> list[Check]:
    """The candidate must beat each simpler model by the margin, on the newest batch; with
    none scored, it fails. Each is a floor on the newest batch, relaxed as the others are
    (`_floor`) where production fails it too: refusing a candidate that beats production
    would keep serving a model that beats the baseline by even less."""
    if policy.baseline is None:
        return []
    metric, margin = evaluation.metric, policy.baseline.margin
    lower = metric in LOWER_IS_BETTER
    if not evaluation.baselines:
        return [
            _unmeasured(
                "beats baselines",
                margin,
                "baselines not evaluated: the policy requires the candidate to beat "
                "promotion.baseline's models, and the evaluation scored none (evaluate ran "
                "without the baselines train fits)",
            )
        ]
    production = evaluation.production
    served = None if production is None else (production.version, production.newest.get(metric))
    checks = []
    for name, baseline in sorted(evaluation.baselines.items()):
        simple = baseline.newest.get(metric)
        if math.isnan(simple):  # one class only: nothing to beat
            simple = math.inf if lower else 0.0
        check = _meets(
            f"beats baseline {name}",
            evaluation.candidate.newest.get(metric),
            # No model scores beyond a perfect one: a baseline at the best value possible
            # (1 for a score, 0 for an error) is matched, not beaten.
            max(simple - margin, 0.0) if lower else min(simple + margin, 1.0),
            f"candidate {metric} on the newest batch",
            lower,
        )
        described = check.model_copy(
            update={
                "detail": f"{check.detail} (baseline {name} scored {simple:.4f}, "
                f"required margin {margin:.4f})"
            }
        )
        checks.append(_floor(described, served, lower))
    return checks


def fairness_checks(evaluation: Evaluation, policy: PromotionSettings) -> list[Check]:
    """The gaps between the protected attribute's groups must stay within the policy's; with
    no gaps measured for that attribute, the candidate fails."""
    rules = policy.fairness
    measured = evaluation.candidate.fairness
    if rules is None:
        return []
    if measured is None or measured.attribute != rules.attribute:
        why = (
            "the evaluation holds no group scores (evaluate ran without promotion.fairness)"
            if measured is None
            else f"the evaluation measured {measured.attribute}'s"
        )
        return [
            _unmeasured(
                f"fairness ({rules.attribute})",
                0.0,
                f"fairness not measured: the policy limits the gaps between "
                f"{rules.attribute} groups, and {why}",
            )
        ]
    groups = [g for g in measured.groups.values() if g.compared]
    compared = len(groups)
    with_positives = sum(g.true_positive_rate is not None for g in groups)
    checks = []
    binary_only = {
        "equal opportunity difference",
        "demographic parity difference",
        "calibration gap",
    }
    for name, what, threshold, value in (
        (
            "error gap",
            "error gap (misclassification rate, or mean absolute error)",
            rules.max_error_gap,
            measured.error_gap,
        ),
        (
            "equal opportunity difference",
            "true positive rate gap",
            rules.max_equal_opportunity_difference,
            measured.equal_opportunity_difference,
        ),
        (
            "demographic parity difference",
            "positive prediction rate gap",
            rules.max_demographic_parity_difference,
            measured.demographic_parity_difference,
        ),
        (
            "calibration gap",
            "expected calibration error gap",
            rules.max_calibration_gap,
            measured.calibration_gap,
        ),
    ):
        if threshold is None:
            continue
        if name in binary_only and evaluation.task != "binary":
            checks.append(
                Check(
                    name=f"{name} ({rules.attribute})",
                    measured=None,
                    threshold=threshold,
                    passed=True,
                    detail=f"{what}: not applicable to a {evaluation.task} model (a binary "
                    "classifier's rate at the 0.5 threshold); max_error_gap compares its groups",
                )
            )
            continue
        check = _at_most(
            f"{name} ({rules.attribute})",
            value,
            threshold,
            f"{what} between {rules.attribute} groups on the newest batch",
        )
        if value is None:
            # Fewer than two groups with enough rows, or, for the true positive rate, with
            # actual positives: nothing to compare, nothing to refuse (the other gaps still
            # compare the groups).
            why = f"only {compared} group(s) of at least {rules.min_rows} rows"
            if name == "equal opportunity difference" and compared >= 2 > with_positives:
                why = (
                    f"{compared} groups of at least {rules.min_rows} rows, but only "
                    f"{with_positives} with actual positives (a true positive rate needs some)"
                )
            check = check.model_copy(
                update={
                    "passed": True,
                    "detail": f"{what} between {rules.attribute} groups: {why}, "
                    "so no gap to measure",
                }
            )
        checks.append(check)
    return checks


def decide(evaluation: Evaluation, policy: PromotionSettings) -> Decision:
    """Apply the promotion policy to an evaluation, each metric compared its own way: a
    minimum where higher is better, a maximum for an error."""
    metric = evaluation.metric
    lower = metric in LOWER_IS_BETTER
    bound = policy.threshold(evaluation.task)
    candidate, production = evaluation.candidate, evaluation.production
    checks: list[Check] = []
    limit = "max" if lower else "min"
    if candidate.holdout is not None:
        checks.append(
            _meets(
                f"{limit} {metric} (holdout)",
                candidate.holdout.get(metric),
                bound,
                f"candidate {metric} on the holdout",
                lower,
            )
        )
    checks.append(
        _floor(
            _meets(
                f"{limit} {metric} (newest batch)",
                candidate.newest.get(metric),
                bound,
                f"candidate {metric} on the newest batch {evaluation.newest_batch}",
                lower,
            ),
            None if production is None else (production.version, production.newest.get(metric)),
            lower,
        )
    )
    if production is not None:
        served = production.newest.get(metric)
        allowed = served + policy.max_regression if lower else served - policy.max_regression
        check = _meets(
            f"max regression vs {production.version}",
            candidate.newest.get(metric),
            allowed,
            f"candidate {metric} on the newest batch",
            lower,
        )
        checks.append(
            check.model_copy(
                update={
                    "detail": check.detail + f" (production {production.version} scored "
                    f"{served:.4f}, allowed regression {policy.max_regression:.4f})"
                }
            )
        )
    for rule in policy.slices:
        threshold = rule.max_metric if lower else rule.min_metric
        if threshold is None:
            given = "min_metric" if lower else "max_metric"
            checks.append(
                _unmeasured(
                    f"slice {rule.column}",
                    rule.min_metric if rule.min_metric is not None else rule.max_metric or 0.0,
                    f"slices on {rule.column} give {given}, but {metric} is "
                    f"{'lower' if lower else 'higher'}-is-better: the check cannot be applied",
                )
            )
            continue
        for value, result in sorted(candidate.slices.get(rule.column, {}).items()):
            if result.rows < rule.min_rows:
                continue
            served_slice = None
            if production is not None:
                same = production.slices.get(rule.column, {}).get(value)
                served_slice = (production.version, None if same is None else same.value)
            checks.append(
                _floor(
                    _meets(
                        f"slice {rule.column}={value}",
                        result.value,
                        threshold,
                        f"candidate {metric} on {rule.column}={value} ({result.rows} rows)",
                        lower,
                    ),
                    served_slice,
                    lower,
                )
            )
    checks += baseline_checks(evaluation, policy)
    checks += fairness_checks(evaluation, policy)
    if policy.importance.unimportant_features == "refuse":
        checks += _importance_checks(candidate.importance, policy.importance.confidence)
    return Decision(
        blessed=all(c.passed for c in checks),
        metric=metric,
        production_version=production.version if production else None,
        checks=tuple(checks),
    )
