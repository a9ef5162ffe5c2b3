"""The simulation loop's parts that need no simulated days: its bad input, the world it sets
up, the registry's injectable clock, and the canary driver over a day's answers judged by the
real RolloutController. Whole simulations are in tests/integration/test_simulation.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL
from flywheel.config import load_settings
from flywheel.registry import PRODUCTION, Registry, stamped_by
from flywheel.rollout.analysis import LATENCY_BOUNDS_MS
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.local import DeployRefused
from flywheel.serving.metrics import SCORE_BUCKETS
from flywheel.simulation.loop import DayDriver, _Answers, simulate, world_settings
from flywheel.simulation.traffic import SimulationError
from flywheel.storage import LocalStore


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scenario": "drifty"}, "unknown scenario 'drifty': one of stable, covariate_drift"),
        ({"days": 0}, "days must be 1 or more, not 0"),
        ({"days": -3}, "days must be 1 or more, not -3"),
        ({"policy": "weekly"}, "unknown policy 'weekly': one of triggers, schedule"),
        ({"traffic": 0}, "traffic must be 1 row a day or more, not 0"),
        ({"servers": True, "traffic": 0}, "traffic must be 1 row a day or more, not 0"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_anything_is_written(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    # given a configuration and an empty place for the simulation
    settings = load_settings(None, env={}, overrides=SMALL)
    arguments: dict[str, object] = {"days": 5, "scenario": "stable", **options}
    # when a simulation is asked with one bad option, then it is refused, saying which
    with pytest.raises(SimulationError, match=message) as refused:
        simulate(settings, root=tmp_path / "sim", **arguments)  # type: ignore[arg-type]
    assert "\n" not in str(refused.value)
    # and nothing was written
    assert not (tmp_path / "sim").exists()


def test_servers_without_a_serving_virtualenv_are_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given no serving virtualenv where the configuration points
    monkeypatch.setenv("FLYWHEEL_SERVING_PYTHON", str(tmp_path / "missing" / "python"))
    settings = load_settings(None, env={}, overrides=SMALL)
    # when a simulation is asked to serve through the microservices, then it is refused
    with pytest.raises(DeployRefused, match=r"FLYWHEEL_SERVING_PYTHON is .*missing.*not exist"):
        simulate(settings, root=tmp_path / "sim", days=3, scenario="stable", servers=True)
    # and nothing was written (the warm-up never ran)
    assert not (tmp_path / "sim").exists()


def test_resume_needs_a_simulation_and_a_new_one_an_empty_folder(tmp_path: Path) -> None:
    settings = load_settings(None, env={}, overrides=SMALL)
    # given nothing simulated yet, when resumed, then it says there is nothing to resume
    with pytest.raises(SimulationError, match=r"nothing to resume: .*timeline\.json"):
        simulate(settings, root=tmp_path, days=3, scenario="stable", resume=True)
    # given a folder holding something, when a new simulation starts there, then it is refused
    (tmp_path / "other.txt").write_text("someone's")
    with pytest.raises(SimulationError, match="is not empty: resume the simulation"):
        simulate(settings, root=tmp_path, days=3, scenario="stable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]


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


def test_the_registry_stamps_with_the_clock_given_and_the_wall_clock_otherwise(
    tmp_path: Path,
) -> None:
    # given a registry
    registry = Registry(LocalStore(tmp_path), "m")
    simulated = datetime(2026, 2, 3, 0, 0, tzinfo=UTC)
    # when one version is registered and promoted under a simulated clock, one without
    with stamped_by(lambda: simulated):
        registry.register({"model.joblib": b"a"}, run_id="a")
        registry.move_alias(PRODUCTION, "v1", expected=None, reason="first")
    before = datetime.now(UTC)
    registry.register({"model.joblib": b"b"}, run_id="b")
    # then the first carries the simulated time, and the second the wall clock's
    assert registry.manifest("v1").created_at == "2026-02-03T00:00:00.000+00:00"
    alias = registry.alias(PRODUCTION)
    assert alias is not None and alias.at == "2026-02-03T00:00:00.000+00:00"
    assert datetime.fromisoformat(registry.manifest("v2").created_at) >= before.replace(
        microsecond=before.microsecond // 1000 * 1000
    )


def answers(requests: int, *, error: bool = False, right: float = 0.8) -> _Answers:
    """How a version answered `requests` requests of 25 rows: every score in bucket 2, fast."""
    scores = np.zeros((requests, SCORE_BUCKETS), dtype=int)
    scores[:, 2] = 25
    return _Answers(
        errors=np.full(requests, error),
        latency=np.zeros(requests, dtype=int),
        scores=scores,
        labelled=np.full(requests, 25),
        correct=np.full(requests, int(25 * right)),
    )


@pytest.mark.parametrize(
    ("canary", "phase", "reason"),
    [
        (answers(80), "promoted", "every step passed"),
        (answers(80, error=True), "rolled_back", "error rate"),
        (answers(80, right=0.4), "rolled_back", "accuracy"),
    ],
)
def test_the_real_controller_judges_a_canary_on_the_days_answers(
    tmp_path: Path, canary: _Answers, phase: str, reason: str
) -> None:
    # given v1 in production, a candidate v2, and the day's answers of each
    settings = load_settings(None, env={}, overrides=SMALL)
    registry = Registry(LocalStore(tmp_path), "m")
    for tag in "ab":
        registry.register({"model.joblib": tag.encode()}, run_id=tag)
    registry.move_alias(PRODUCTION, "v1", expected=None, reason="first")
    driver = DayDriver(answers(80), canary, seed=1, start=1_000_000.0)

    def sleep(seconds: float) -> None:
        driver.now += seconds

    # when the rollout controller runs on the driver, in simulated time
    controller = RolloutController(
        registry, driver, settings.rollout, clock=lambda: driver.now, sleep=sleep
    )
    controller.start("v2")
    state = controller.run()
    # then it ends as the answers deserve, and production follows
    assert state.phase == phase, state.reason
    assert state.reason.startswith(reason), state.reason
    assert registry.resolve(PRODUCTION) == ("v2" if phase == "promoted" else "v1")
    assert driver.now - 1_000_000.0 < 2 * 3600  # simulated seconds, not waited
    assert len(LATENCY_BOUNDS_MS) == len(driver.measure(0)[0].latency_counts)
