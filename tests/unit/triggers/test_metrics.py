"""The trigger engine's metrics: decisions counted from its books, thresholds from its policy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from flywheel.config import TriggerSettings
from flywheel.exposition import Sample
from flywheel.monitoring.performance import Offline
from flywheel.storage import LocalStore
from flywheel.triggers.ledger import Ledger
from flywheel.triggers.metrics import TriggerMetrics, threshold_samples
from harness.reports import DAY0, window_report


def _decide(ledger: Ledger, minutes: int, *kinds: str, blocked: str | None = None) -> None:
    at = DAY0 + timedelta(minutes=minutes)
    firings = [{"kind": kind, "reason": kind, "severity": "low", "inputs": {}} for kind in kinds]
    checks = [{"kind": kind, "fired": kind in kinds} for kind in ("drift", "schedule")]
    record = {
        "at": at.isoformat(),
        "fired": bool(kinds) and blocked is None,
        "firings": firings,
        "blocked_by": blocked,
        "checks": checks,
    }
    ledger.write_decision(ledger.decision_key(at), record)


def _values(samples: list[Sample]) -> dict[tuple[str, ...], float | None]:
    return {
        (s.name, *sorted(v for k, v in s.labels.items() if k != "model")): s.value for s in samples
    }


def test_decisions_after_the_first_read_are_counted_by_outcome_and_trigger(tmp_path: Path) -> None:
    # given a decision already in the books when the exporter starts
    ledger = Ledger(LocalStore(tmp_path), "m")
    _decide(ledger, 0, "schedule")
    metrics = TriggerMetrics(ledger, "m")
    metrics.refresh()
    values = _values(metrics.samples())
    # then it is not counted, but it is the newest evaluation
    assert values[("flywheel_trigger_evaluations_total", "fired")] == 0
    assert values[("flywheel_trigger_fired", "schedule")] == 1
    assert values[("flywheel_trigger_last_outcome", "fired")] == 1
    # when three more evaluations are recorded: drift blocked, nothing, then drift fired
    _decide(ledger, 30, "drift", blocked="cooldown")
    _decide(ledger, 60)
    _decide(ledger, 90, "drift")
    metrics.refresh()
    metrics.refresh()  # a second read counts nothing twice
    values = _values(metrics.samples())
    # then each is counted once, by outcome and by trigger, and the newest is the last
    assert values[("flywheel_trigger_evaluations_total", "blocked")] == 1
    assert values[("flywheel_trigger_evaluations_total", "quiet")] == 1
    assert values[("flywheel_trigger_evaluations_total", "fired")] == 1
    assert values[("flywheel_trigger_firings_total", "drift", "true")] == 1
    assert values[("flywheel_trigger_firings_total", "drift", "false")] == 1
    assert values[("flywheel_trigger_firings_total", "false", "schedule")] == 0
    assert values[("flywheel_trigger_fired", "drift")] == 1
    assert values[("flywheel_trigger_fired", "schedule")] == 0
    assert (
        values[("flywheel_trigger_last_evaluation_timestamp_seconds",)]
        == (DAY0 + timedelta(minutes=90)).timestamp()
    )


def test_the_thresholds_are_the_policys_and_the_performance_one_follows_the_offline_figure() -> (
    None
):
    policy = TriggerSettings.model_validate(
        {"drift": {"share": 0.4, "features": {"income": 0.25}}, "performance": {"max_drop": 0.05}}
    )
    values = _values(list(threshold_samples("m", policy, [window_report(1, offline=0.8)])))
    assert values[("flywheel_trigger_drift_share_threshold",)] == 0.4
    assert values[("flywheel_trigger_drift_psi_threshold", "income")] == 0.25
    key = ("flywheel_trigger_performance_threshold", "accuracy", "performance", "production", "v1")
    assert values[key] == 0.8 - 0.05
    assert values[("flywheel_trigger_min_labelled", "performance")] == 100


def test_an_errors_bound_is_exported_as_a_ceiling_of_its_own() -> None:
    # given the default policy and a regression version whose offline RMSE is 50
    report = window_report(1).model_copy(
        update={"task": "regression", "offline": Offline(newest={"rmse": 50.0}, holdout=None)}
    )
    values = _values(list(threshold_samples("m", TriggerSettings(), [report])))
    # then its bounds are ceilings (offline x 1.1, x 1.15), never a floor an alert could misread
    ceiling = "flywheel_trigger_performance_ceiling"
    key = (ceiling, "performance", "production", "rmse", "v1")  # label values, sorted
    assert values[key] == pytest.approx(55.0)
    key = (ceiling, "estimated_performance", "production", "rmse", "v1")
    assert values[key] == pytest.approx(57.5)
    assert not any(name[0] == "flywheel_trigger_performance_threshold" for name in values)
