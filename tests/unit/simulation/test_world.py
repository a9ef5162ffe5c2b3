"""The simulated world: the settings a simulation plays in, and its days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from flywheel.config import load_settings
from flywheel.simulation.world import (
    _end_of,
    _World,
    policy_settings,
    schedule_offset,
    world_settings,
)
from harness.projects import SMALL


def test_the_world_plays_the_scenario_after_the_warm_up_in_its_own_store(tmp_path: Path) -> None:
    # given a configuration whose change day is 3 and whose runs read 5 days
    settings = load_settings(None, env={}, overrides=SMALL)
    # when the worlds of two scenarios are set up
    drift = world_settings(settings, tmp_path, "concept_drift", 7, label_delay=1)
    broken = world_settings(settings, tmp_path, "broken_upstream", 7, label_delay=4)
    # then the generator plays the scenario from the 4th simulated day, after 5 warm-up days
    assert drift.data.generator.scenario == "concept_drift"
    assert drift.data.generator.change_day == 5 + 3
    assert drift.data.generator.seed == 7
    # and the scenarios the generator does not know play a stable world (the loop breaks it)
    assert broken.data.generator.scenario == "stable"
    # and everything lives under the simulation's root
    assert drift.storage.uri == str(tmp_path / "store")
    assert drift.data.source == str(tmp_path / "batches")
    assert drift.pipeline.root == str(tmp_path / "pipeline-root")
    # and monitoring looks back as far as the triggers and the labels need, no further
    assert drift.monitoring.windows == 2  # drift's two windows; labels of yesterday
    assert broken.monitoring.windows == 5  # the labels of 4 days ago
    assert settings.monitoring.windows == 7


def test_each_simulated_day_follows_the_first_and_ends_at_the_next_midnight(world: _World) -> None:
    # given a world whose day 0 is 2026-01-06, when its days are counted
    day = world.day(3)
    # then day 3 is three days on, and it ends at the next midnight UTC
    assert world.day(0) == date(2026, 1, 6)
    assert day == date(2026, 1, 9)
    assert _end_of(day) == datetime(2026, 1, 10, tzinfo=UTC)


def test_the_schedule_policy_retrains_on_the_days_the_trigger_schedule_fires() -> None:
    # given the shipped weekly cron (Mondays at 03:00) and a first day on a Thursday
    settings = load_settings(None, env={}, overrides=SMALL)
    thursday = date(2026, 1, 15)
    # when / then the schedule policy's first retrain is the first Monday, day 4, and every 7
    # days after, as the trigger policy's schedule fires
    assert settings.triggers.schedule is not None
    assert settings.triggers.schedule.cron == "0 3 * * 1"
    assert schedule_offset(settings, thursday) == 4
    # and another cron moves it to its own day; without a schedule it is the seventh day
    friday = load_settings(None, env={}, overrides=[*SMALL, "triggers.schedule.cron=0 3 * * 5"])
    assert schedule_offset(friday, thursday) == 1
    unscheduled = load_settings(None, env={}, overrides=[*SMALL, "triggers.schedule=null"])
    assert schedule_offset(unscheduled, thursday) == 6


def test_the_signals_policy_is_the_trigger_policy_without_its_schedule() -> None:
    settings = load_settings(None, env={}, overrides=SMALL)
    signals = policy_settings(settings, "signals")
    assert signals.triggers.schedule is None
    assert signals.triggers.drift == settings.triggers.drift
    assert signals.promotion == settings.promotion  # the same gate
    assert policy_settings(settings, "triggers") is settings


def test_a_world_knows_its_schedule_days(world: _World) -> None:
    # given a world whose day 0 is Tuesday 2026-01-06: its Mondays are days 6 and 13
    assert [i for i in range(15) if world.scheduled(i)] == [6, 13]
