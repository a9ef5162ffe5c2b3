"""The simulation loop's parts that need no simulated days: its bad input and the registry's
injectable clock. The world it sets up is in test_world.py, the canary in test_canary.py, and
whole simulations are in tests/integration/test_simulation.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flywheel.config import load_settings
from flywheel.registry import PRODUCTION, Registry, stamped_by
from flywheel.rollout.local import DeployRefused
from flywheel.simulation.loop import simulate
from flywheel.simulation.traffic import SimulationError
from flywheel.storage import LocalStore
from harness.projects import SMALL


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scenario": "drifty"}, "unknown scenario 'drifty': one of stable, covariate_drift"),
        ({"days": 0}, "days must be 1 or more, not 0"),
        ({"days": -3}, "days must be 1 or more, not -3"),
        ({"policy": "weekly"}, "unknown policy 'weekly': one of triggers, signals, schedule"),
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


def test_the_registry_stamps_with_the_clock_given_and_the_wall_clock_otherwise(
    tmp_path: Path,
) -> None:
    # given a registry
    registry = Registry(LocalStore(tmp_path), "m")
    simulated = datetime(2026, 2, 3, 0, 0, tzinfo=UTC)
    # when one version is registered and promoted under a simulated clock, one without
    with stamped_by(lambda: simulated):
        registry.register({"model.joblib": b"a"}, run_id="a")
        registry.move_alias(PRODUCTION, "v1", expected=None, reason="first", actor="test")
    before = datetime.now(UTC)
    registry.register({"model.joblib": b"b"}, run_id="b")
    # then the first carries the simulated time, and the second the wall clock's
    assert registry.manifest("v1").created_at == "2026-02-03T00:00:00.000+00:00"
    alias = registry.alias(PRODUCTION)
    assert alias is not None and alias.at == "2026-02-03T00:00:00.000+00:00"
    assert datetime.fromisoformat(registry.manifest("v2").created_at) >= before.replace(
        microsecond=before.microsecond // 1000 * 1000
    )
