"""The controller's decisions, replayed from recorded metric sequences, and its crash recovery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.config import RolloutSettings
from flywheel.registry import Registry
from flywheel.rollout.analysis import Window
from flywheel.rollout.controller import RolloutController, RolloutError
from flywheel.storage import LocalStore

POLICY = RolloutSettings(
    steps=(10, 50, 100), min_requests=100, min_requests_to_fail=10, interval_seconds=1
)
GOOD = Window(
    requests=150,
    latency_counts=(0,) * 7 + (150,) + (0,) * 15,
    scores=(50, 40, 30, 20, 10, 0, 0, 0, 0, 0),
)
QUIET = Window(
    requests=20, latency_counts=(0,) * 7 + (20,) + (0,) * 15, scores=(7, 5, 4, 3, 1, 0, 0, 0, 0, 0)
)
FAILING = Window(requests=40, errors=12, latency_counts=(0,) * 7 + (40,) + (0,) * 15)


class ReplayDriver:
    """Plays back recorded (stable, canary) measurements and records what it was told.

    The driver is the boundary to real traffic; here it replays measurements so
    that the controller's decisions can be checked step by step.
    """

    def __init__(self, canary_windows: list[Window]) -> None:
        self.windows: Iterator[Window] = iter(canary_windows)
        self.calls: list[tuple[str, ...]] = []

    def set_traffic(self, stable: str, canary: str, canary_weight: int) -> None:
        if not self.calls or self.calls[-1] != ("traffic", stable, canary, str(canary_weight)):
            self.calls.append(("traffic", stable, canary, str(canary_weight)))

    def measure(self, since: float) -> tuple[Window, Window]:
        return GOOD.model_copy(update={"requests": 1000}), next(self.windows)

    def finish(self, serving: str) -> None:
        self.calls.append(("finish", serving))


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(LocalStore(tmp_path), "m")
    for tag in "ab":
        reg.register({"model.joblib": tag.encode()}, run_id=tag)
    reg.move_alias("production", "v1", expected=None, reason="first")
    return reg


def controller(registry: Registry, driver: ReplayDriver) -> RolloutController:
    return RolloutController(registry, driver, POLICY, sleep=lambda _: None)


def test_a_good_canary_walks_every_step_and_is_promoted(registry: Registry) -> None:
    driver = ReplayDriver([QUIET, GOOD, GOOD, GOOD])
    ctl = controller(registry, driver)
    ctl.start("v2")
    final = ctl.run()
    assert final.phase == "promoted" and registry.resolve("production") == "v2"
    assert driver.calls == [
        ("traffic", "v1", "v2", "10"),
        ("traffic", "v1", "v2", "50"),
        ("traffic", "v1", "v2", "100"),
        ("finish", "v2"),
    ]
    decisions = [r["decision"] for r in registry.records("v2") if "decision" in r]
    assert decisions == ["advance", "advance", "advance"]
    step = next(r for r in registry.records("v2") if r.get("decision"))
    assert step["checks"][0]["name"] == "error rate" and step["canary"]["version"] == "v2"
    assert registry.history("production")[-1].reason == "rollout: every step passed"


def test_a_failing_canary_is_rolled_back_and_production_is_untouched(registry: Registry) -> None:
    driver = ReplayDriver([GOOD, FAILING])
    ctl = controller(registry, driver)
    ctl.start("v2")
    final = ctl.run()
    assert final.phase == "rolled_back" and final.reason.startswith(
        "error rate: canary 12/40 failed"
    )
    assert registry.resolve("production") == "v1"
    assert driver.calls[-2:] == [("traffic", "v1", "v2", "0"), ("finish", "v1")]
    assert [r.get("decision") for r in registry.records("v2") if "decision" in r] == [
        "advance",
        "rollback",
    ]


def test_a_restarted_controller_resumes_at_the_recorded_step(registry: Registry) -> None:
    first = controller(registry, ReplayDriver([GOOD]))
    first.start("v2")
    first.tick()  # advanced to 50%, then "killed"
    resumed = ReplayDriver([GOOD, GOOD])
    again = controller(registry, resumed)
    assert again.state().step == 1  # type: ignore[union-attr]
    final = again.run()
    assert final.phase == "promoted"
    assert resumed.calls[0] == ("traffic", "v1", "v2", "50")  # re-applied the recorded split first


def test_a_promotion_interrupted_before_its_state_was_saved_is_finished(registry: Registry) -> None:
    # given v2 registered as the candidate, as the pipeline's register step leaves it
    registry.move_alias("candidate", "v2", expected=None, reason="blessed by the gate")
    ctl = controller(registry, ReplayDriver([]))
    ctl.start("v2")
    # and a controller that moved production, then died before writing "promoted"
    registry.move_alias("production", "v2", expected="v1", reason="rollout: every step passed")
    # when a new controller resumes
    driver = ReplayDriver([])
    final = controller(registry, driver).tick()
    # then it finishes the promotion without judging again or moving production twice
    assert final.phase == "promoted" and driver.calls == [("finish", "v2")]
    assert final.reason == "production already pointed at the canary when resumed"
    assert [h.version for h in registry.history("production")] == ["v1", "v2"]
    # and the candidate alias is the pipeline's, which a rollout leaves where it was
    assert (registry.resolve("production"), registry.resolve("candidate")) == ("v2", "v2")
    assert len(registry.history("candidate")) == 1


def test_production_moved_by_someone_else_ends_the_rollout(registry: Registry) -> None:
    registry.register({"model.joblib": b"c"}, run_id="c")
    ctl = controller(registry, ReplayDriver([]))
    ctl.start("v2")
    registry.move_alias("production", "v3", expected="v1", reason="by hand")
    final = controller(registry, ReplayDriver([])).tick()
    assert final.phase == "rolled_back" and "moved to v3 outside this rollout" in final.reason
    assert registry.resolve("production") == "v3"


def test_the_first_model_goes_straight_to_production(tmp_path: Path) -> None:
    reg = Registry(LocalStore(tmp_path), "m")
    reg.register({"model.joblib": b"a"}, run_id="a")
    driver = ReplayDriver([])
    state = controller(reg, driver).start("v1")
    assert state.phase == "promoted" and reg.resolve("production") == "v1"
    assert driver.calls == [("finish", "v1")]


def test_refusals_change_nothing(registry: Registry) -> None:
    ctl = controller(registry, ReplayDriver([]))
    with pytest.raises(RolloutError, match="v1 is already in production"):
        ctl.start("v1")
    ctl.start("v2")
    with pytest.raises(RolloutError, match="a rollout of v2 is already in progress"):
        ctl.start("v2")
    by_hand = ctl.rollback("operator said so")
    assert by_hand.phase == "rolled_back" and registry.resolve("production") == "v1"
    with pytest.raises(RolloutError, match="no rollout of m is in progress"):
        ctl.promote()
