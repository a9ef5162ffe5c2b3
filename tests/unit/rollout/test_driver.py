"""The driver boundary: a process that only reads or records decisions moves no traffic."""

from __future__ import annotations

from flywheel.rollout.analysis import Window
from flywheel.rollout.driver import Driver, Inconclusive, StateOnlyDriver
from flywheel.rollout.state import RolloutError


def test_a_state_only_driver_moves_nothing_and_measures_nothing() -> None:
    driver: Driver = StateOnlyDriver()
    # no hand edit is ever undone, so nothing is reported restored
    assert driver.set_traffic("v1", "v2", 50, slot="b") is None
    stable, canary = driver.measure(since=0.0)
    assert stable == canary == Window()
    assert stable.requests == 0  # a look through it can never pass a check
    assert driver.finish("v2", slot="a") is None


def test_a_look_that_cannot_measure_is_a_rollout_error_the_controller_records() -> None:
    # The controller records any RolloutError from a look as inconclusive; Inconclusive
    # is the drivers' name for it, so it must be one.
    assert issubclass(Inconclusive, RolloutError)
    assert str(Inconclusive("no series")) == "no series"
