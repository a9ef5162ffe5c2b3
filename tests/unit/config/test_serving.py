"""The rollout policy's traffic steps."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flywheel.config import ConfigError, RolloutChecks, RolloutSettings, Settings, load_settings


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((10, 50, 25, 100), r"traffic steps must increase, got \[10, 50, 25, 100\]"),
        ((10, 10, 100), "traffic steps must increase"),
        ((), "at least one traffic step is needed"),
    ],
)
def test_rollout_steps_must_increase(steps: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RolloutSettings(steps=steps)


def test_the_default_rollout_policy_is_coherent() -> None:
    settings = RolloutSettings()
    assert list(settings.weights) == sorted(set(settings.weights)) and settings.weights[-1] == 100
    # no canary reaches production by default without one step that checked its accuracy
    assert "required" in {s.accuracy for s in settings.steps}
    assert RolloutChecks().max_p99_ratio >= 1


@pytest.mark.parametrize(
    "source",
    [
        {"env": {"FLYWHEEL_ROLLOUT__STEPS": "[10, {weight: 50, accuracy: required}, 100]"}},
        {"overrides": ["rollout.steps=[10, {weight: 50, accuracy: required}, 100]"]},
    ],
)
def test_steps_are_percentages_or_a_weight_with_an_accuracy_policy(
    source: dict[str, Any],
) -> None:
    # given the short form and the long form mixed, from the environment or --set
    settings = load_settings(None, **{"env": {}, **source})
    # then a plain number is a step whose accuracy check is optional
    assert settings.rollout.weights == (10, 50, 100)
    assert [s.accuracy for s in settings.rollout.steps] == ["optional", "required", "optional"]
    # and the serialised form, as components receive it, reads back the same
    assert Settings.from_json(settings.to_json()).rollout == settings.rollout


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "[10, {weight: 50, accuracy: maybe}]",
            "rollout.steps.1.accuracy .*'required' or 'optional'",
        ),
        ("[10, fifty]", "rollout.steps.1 .*a step is a traffic percentage, or {weight: PERCENT"),
        ("[10, {accuracy: required}]", r"rollout.steps.1.weight .*Field required"),
        ("[50, {weight: 20, accuracy: required}]", r"traffic steps must increase, got \[50, 20\]"),
    ],
)
def test_a_malformed_step_is_named_by_its_path(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, env={}, overrides=[f"rollout.steps={value}"])


@pytest.mark.parametrize(
    "steps",
    [
        "[10, 25, 50, 100]",  # plain numbers: every step's accuracy optional
        "[10, {weight: 100, accuracy: required}]",  # required only where stable gets nothing
    ],
)
def test_a_policy_that_never_requires_accuracy_before_100_is_refused(steps: str) -> None:
    # given steps of which none before 100% requires accuracy, as the overlays once shipped
    # when it is loaded, then it is refused, naming the steps and both ways out
    with pytest.raises(ConfigError, match=r"rollout .*no step before 100% requires accuracy"):
        load_settings(None, env={}, overrides=[f"rollout.steps={steps}"])


def test_accuracy_off_is_said_explicitly_and_never_beside_a_required_step() -> None:
    # given the same plain steps with accuracy explicitly off
    settings = load_settings(
        None, env={}, overrides=["rollout.steps=[10, 50, 100]", "rollout.accuracy=off"]
    )
    # then they load, and every step's policy is off
    assert [settings.rollout.step_accuracy(i) for i in range(3)] == ["off"] * 3
    # and off beside a step that requires accuracy is a contradiction, refused
    with pytest.raises(ConfigError, match=r"rollout.accuracy is off, yet the steps at \[50\]%"):
        load_settings(None, env={}, overrides=["rollout.accuracy=off"])


def test_inconclusive_looks_must_span_two_scrapes_on_a_cluster() -> None:
    # given the cluster's 30 s scrape and a look every 5 s, the default limit spans 60 s
    cluster = ["rollout.driver=kubernetes", "rollout.scrape_interval_seconds=30"]
    assert load_settings(None, env={}, overrides=cluster).rollout.checks.max_inconclusive == 12
    # when the limit would roll back a healthy canary over one missed scrape, it is refused
    with pytest.raises(ConfigError, match=r"max_inconclusive \(4\) looks every 5s span 20s"):
        load_settings(None, env={}, overrides=[*cluster, "rollout.checks.max_inconclusive=4"])


def test_a_breach_must_be_able_to_count_before_a_step_can_pass() -> None:
    # given a policy whose checks would pass at 100 requests but fail only from 150
    overrides = ["rollout.min_requests=100", "rollout.min_requests_to_fail=150"]
    # when it is loaded, then it is refused, naming both
    with pytest.raises(ConfigError, match=r"min_requests_to_fail \(150\) is above min_requests"):
        load_settings(None, env={}, overrides=overrides)


@pytest.mark.parametrize(
    ("key", "replacement"),
    [
        ("error_significance", "false_rollback_rate"),
        ("accuracy_significance", "false_rollback_rate"),
        ("divergence_significance", "false_rollback_rate"),
        ("min_requests_for_p99", "the latency check's own test"),
    ],
)
def test_a_per_check_level_is_refused_and_the_budget_named(key: str, replacement: str) -> None:
    # given a policy written before the one false-rollback budget
    with pytest.raises(ConfigError, match=rf"rollout.checks .*{key} was replaced by {replacement}"):
        load_settings(None, env={}, overrides=[f"rollout.checks.{key}=0.01"])


def test_the_false_rollback_budget_is_a_probability() -> None:
    assert RolloutChecks().false_rollback_rate == 0.02
    for bad in (0, 1, 1.5):
        with pytest.raises(ValidationError, match="false_rollback_rate"):
            RolloutChecks(false_rollback_rate=bad)
