"""The rollout controller's metrics, fed by a real controller's records and state."""

from __future__ import annotations

import pytest

from flywheel.exposition import Sample
from flywheel.registry import Registry
from flywheel.rollout.analysis import analyse
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.metrics import RolloutMetrics, state_samples
from harness.rollouts import FAILING, GOOD, POLICY, QUIET, STABLE, ReplayDriver


def _values(samples: list[Sample] | object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "model"))): s.value
        for s in samples  # type: ignore[attr-defined]
        if s.value is not None
    }


def test_looks_decisions_and_endings_are_counted_with_each_checks_value_and_threshold(
    registry: Registry,
) -> None:
    # given a controller whose records feed the metrics, at 100 s on its clock
    metrics = RolloutMetrics("m", clock=lambda: 100.0)
    driver = ReplayDriver([QUIET, GOOD, GOOD, GOOD])
    ctl = RolloutController(
        registry, driver, POLICY, sleep=lambda _: None, on_record=metrics.record
    )
    # when a good canary walks every step
    ctl.start("v2")
    ctl.run()
    values = _values(metrics.samples())
    # then one wait and three advances were looked, three advances decided, one promotion
    assert values[("flywheel_rollout_looks_total", (("action", "wait"),))] == 1
    assert values[("flywheel_rollout_looks_total", (("action", "advance"),))] == 3
    assert values[("flywheel_rollout_looks_total", (("action", "inconclusive"),))] == 0
    assert values[("flywheel_rollout_decisions_total", (("decision", "advance"),))] == 3
    assert values[("flywheel_rollout_decisions_total", (("decision", "rollback"),))] == 0
    assert values[("flywheel_rollout_endings_total", (("ending", "promoted"),))] == 1
    assert values[("flywheel_rollout_last_look_timestamp_seconds", ())] == 100.0
    # and each check of the last look has its value, threshold and status
    look = registry.records("v2", "rollout-look")[-1]
    for check in look["checks"]:
        name = (("check", check["name"]),)
        assert values.get(("flywheel_rollout_check_value", name)) == check["measured"]
        assert values.get(("flywheel_rollout_check_threshold", name)) == check["threshold"]
        assert values[("flywheel_rollout_check_status", (*name, ("status", check["status"])))] == 1


def test_a_failing_canary_is_counted_as_a_rollback(registry: Registry) -> None:
    metrics = RolloutMetrics("m")
    ctl = RolloutController(
        registry, ReplayDriver([FAILING]), POLICY, sleep=lambda _: None, on_record=metrics.record
    )
    ctl.start("v2")
    ctl.run()
    values = _values(metrics.samples())
    assert values[("flywheel_rollout_decisions_total", (("decision", "rollback"),))] == 1
    assert values[("flywheel_rollout_endings_total", (("ending", "rolled_back"),))] == 1
    assert values[("flywheel_rollout_controller_leader", ())] == 0


def test_the_state_says_the_weight_and_step_and_which_slot_serves_which_version(
    registry: Registry,
) -> None:
    # given a canary of v2 started against v1, in slot b
    ctl = RolloutController(registry, ReplayDriver([]), POLICY, sleep=lambda _: None)
    state = ctl.start("v2")
    # when its state is exported
    values = _values(list(state_samples("m", "dep", state, "v1", POLICY)))
    # then it is in progress at the first step's weight, and the predictors are named
    assert values[("flywheel_rollout_in_progress", ())] == 1
    assert values[("flywheel_rollout_canary_weight_percent", ())] == 10
    assert values[("flywheel_rollout_step", ())] == 1
    assert values[("flywheel_rollout_steps", ())] == 3
    slots = {
        dict(labels)["predictor_name"]: (dict(labels)["version"], dict(labels)["role"])
        for name, labels in values
        if name == "flywheel_serving_slot_info"
    }
    assert slots == {"a": ("v1", "stable"), "b": ("v2", "canary")}
    assert all(
        dict(labels)["deployment_name"] == "dep"
        for name, labels in values
        if name == "flywheel_serving_slot_info"
    )


def test_with_no_rollout_production_serves_from_the_first_slot() -> None:
    values = _values(list(state_samples("m", "m", None, "v1", POLICY)))
    assert values[("flywheel_rollout_in_progress", ())] == 0
    assert (
        "flywheel_serving_slot_info",
        (
            ("deployment_name", "m"),
            ("predictor_name", "a"),
            ("role", "production"),
            ("version", "v1"),
        ),
    ) in values


def test_the_accuracy_threshold_is_an_accuracy_or_absent_never_the_allowed_drop() -> None:
    # given looks before any labels, with stable's labels only, and with accuracy off
    labelled = STABLE.model_copy(update={"labelled": 1000, "correct": 800})
    on = POLICY.model_copy(update={"accuracy": "on"})
    checks = {
        "no labels": analyse(STABLE, GOOD, on, 0.0, True),
        "stable's only": analyse(labelled, GOOD, on, 0.0, True),
        "off": analyse(STABLE, GOOD, POLICY, 0.0, False),
    }
    thresholds = {
        name: next(c.threshold for c in verdict.checks if c.name == "accuracy")
        for name, verdict in checks.items()
    }
    # then the threshold is stable's accuracy less the allowed drop once stable has labels,
    # and absent (no series) otherwise, so the dashboard never plots 0.02 against 0.8
    drop = on.checks.max_accuracy_drop
    assert thresholds == {
        "no labels": None,
        "stable's only": pytest.approx(0.8 - drop),
        "off": None,
    }
    metrics = RolloutMetrics("m")
    looked = checks["no labels"]
    metrics.record(
        "rollout-look", {"action": looked.action, "checks": [c.model_dump() for c in looked.checks]}
    )
    names = {(s.name, s.labels.get("check")) for s in metrics.samples() if s.value is not None}
    assert ("flywheel_rollout_check_threshold", "accuracy") not in names
    assert ("flywheel_rollout_check_threshold", "error rate") in names
