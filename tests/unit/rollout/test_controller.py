"""The controller's decisions, replayed from recorded metric sequences, and its crash recovery."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.config import RolloutSettings
from flywheel.registry import Registry
from flywheel.rollout.analysis import Window
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.driver import Inconclusive
from flywheel.rollout.state import RolloutError
from flywheel.storage import LocalStore
from harness.rollouts import FAILING, GOOD, POLICY, QUIET, STABLE, ReplayDriver


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
    # and production's new revision says the rollout moved it, and why
    assert _last_move(registry) == (
        "v2",
        f"rollout {final.rollout_id}",
        "rollout: every step passed",
    )
    (ending,) = registry.records("v2", "rollout-promoted")
    assert ending["actor"] == f"rollout {final.rollout_id}"


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
    registry.move_alias(
        "candidate", "v2", expected=None, reason="blessed by the gate", actor="test"
    )
    ctl = controller(registry, ReplayDriver([]))
    ctl.start("v2")
    # and a controller that moved production, then died before writing "promoted"
    registry.move_alias(
        "production", "v2", expected="v1", reason="rollout: every step passed", actor="test"
    )
    # when a new controller resumes
    driver = ReplayDriver([])
    final = controller(registry, driver).tick()
    # then it finishes the promotion without judging again or moving production twice: all
    # the traffic to the warm canary, then the old slot retired
    assert final.phase == "promoted"
    assert driver.calls == [("traffic", "v1", "v2", "100"), ("finish", "v2")]
    assert final.reason == "production already pointed at the canary when resumed"
    assert [h.version for h in registry.history("production")] == ["v1", "v2"]
    # and the candidate alias is the pipeline's, which a rollout leaves where it was
    assert (registry.resolve("production"), registry.resolve("candidate")) == ("v2", "v2")
    assert len(registry.history("candidate")) == 1


def test_production_moved_by_someone_else_ends_the_rollout(registry: Registry) -> None:
    registry.register({"model.joblib": b"c"}, run_id="c")
    ctl = controller(registry, ReplayDriver([]))
    ctl.start("v2")
    registry.move_alias("production", "v3", expected="v1", reason="by hand", actor="test")
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
    by_hand = ctl.rollback("operator said so", actor="test")
    assert by_hand.phase == "rolled_back" and registry.resolve("production") == "v1"
    with pytest.raises(RolloutError, match="no rollout of m is in progress"):
        ctl.promote(actor="test")


def _last_move(registry: Registry) -> tuple[str, str, str]:
    """Production's newest revision: to what, by whom and why."""
    moved = registry.history("production")[-1]
    return moved.version, moved.actor, moved.reason


def test_a_decision_by_hand_names_the_person_as_who_moved_production(
    registry: Registry,
) -> None:
    registry.register({"model.joblib": b"c"}, run_id="c")
    ctl = controller(registry, ReplayDriver([]))
    # given a canary of v2, when ada promotes it by hand
    ctl.start("v2")
    promoted = ctl.promote("the dashboards look fine", actor="ada (flywheel promote)")
    # then production's new revision names her, with her reason
    assert _last_move(registry) == (
        "v2",
        "ada (flywheel promote)",
        "rollout: the dashboards look fine",
    )
    assert promoted.decided_by == "ada (flywheel promote)"
    assert registry.records("v2", "rollout-promoted")[0]["actor"] == "ada (flywheel promote)"
    # and given a canary of v3, when bob rolls it back, then production does not move
    # and the rollback's record names him
    ctl.start("v3")
    ctl.rollback("paged", actor="bob (flywheel rollback)")
    assert len(registry.history("production")) == 2 and registry.resolve("production") == "v2"
    assert registry.records("v3", "rollout-rolled-back")[0]["actor"] == "bob (flywheel rollback)"


def test_a_direct_deployment_names_its_person_and_the_first_model_its_rollout(
    registry: Registry, tmp_path: Path
) -> None:
    # given v1 in production, when ada deploys v2 directly, then the revision names her
    ctl = controller(registry, ReplayDriver([]))
    ctl.deploy_direct("v2", actor="ada (flywheel deploy --direct)")
    assert _last_move(registry) == (
        "v2",
        "ada (flywheel deploy --direct)",
        "rollout: deployed directly by hand",
    )
    # and the first model of another registry, sent straight in, is the rollout's doing
    first = Registry(LocalStore(tmp_path / "first"), "m")
    first.register({"model.joblib": b"a"}, run_id="a")
    state = controller(first, ReplayDriver([])).start("v1")
    assert first.history("production")[-1].actor == f"rollout {state.rollout_id}"


def test_a_promotion_by_hand_that_cannot_move_production_is_the_controllers_rollback(
    registry: Registry,
) -> None:
    # given a canary of v2, and production moved to v3 meanwhile by someone else
    registry.register({"model.joblib": b"c"}, run_id="c")
    ctl = controller(registry, ReplayDriver([]))
    ctl.start("v2")
    registry.move_alias("production", "v3", expected="v1", reason="hotfix", actor="eve")
    # when ada promotes v2 by hand, then it is rolled back, and not in her name
    final = ctl.promote(actor="ada (flywheel promote)")
    assert final.phase == "rolled_back" and final.reason.startswith("could not promote")
    assert final.decided_by is None
    (ending,) = registry.records("v2", "rollout-rolled-back")
    assert ending["actor"] == f"rollout {final.rollout_id}"
    assert [h.actor for h in registry.history("production")] == ["test", "eve"]


# --- crash safety: the controller killed at each point, then resumed --------------


class Killed(BaseException):
    """The controller dies here, as under SIGKILL: no `except Exception` catches it."""


class Faults:
    """Numbers the controller's side effects and kills it at the chosen one, before or after."""

    def __init__(self, at: int | None = None, after: bool = False) -> None:
        self.at, self.after, self.count = at, after, 0
        self.points: list[str] = []

    def point(self, name: str, act: Callable[[], object]) -> None:
        self.count += 1
        self.points.append(name)
        if self.count == self.at and not self.after:
            raise Killed(f"before {name}")
        act()
        if self.count == self.at and self.after:
            raise Killed(f"after {name}")


class KillableStore(LocalStore):
    """A real local store whose writes (states, records, aliases) are kill points."""

    def __init__(self, root: Path, faults: Faults) -> None:
        super().__init__(root)
        self.faults = faults

    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        self.faults.point(
            f"write {key}", lambda: LocalStore.write(self, key, data, create_only=create_only)
        )


class Cluster:
    """What serves the traffic: it outlives every controller, as a SeldonDeployment does."""

    def __init__(self, serving: str) -> None:
        self.weights = {serving: 100}
        self.history = [self.weights]

    def route(self, weights: dict[str, int]) -> None:
        self.weights = weights
        self.history.append(weights)

    def canary_never_came_back(self, canary: str) -> bool:
        """The canary's share only grew, until it went to 0 and stayed there."""
        shares = [w.get(canary, 0) for w in self.history]
        gone = next((i for i in range(1, len(shares)) if shares[i] < shares[i - 1]), len(shares))
        return shares[:gone] == sorted(shares[:gone]) and not any(shares[gone:])


class ClusterDriver:
    """Moves the cluster's traffic (each change a kill point) and measures the canary by its
    weight, so a step judged again after a restart is judged alike."""

    def __init__(self, cluster: Cluster, faults: Faults, canary: dict[int, Window]) -> None:
        self.cluster, self.faults, self.canary = cluster, faults, canary
        self.weight = 0

    def set_traffic(self, stable: str, canary: str, canary_weight: int, *, slot: str = "a") -> None:
        def apply() -> None:
            self.cluster.route({stable: 100 - canary_weight, canary: canary_weight})
            self.weight = canary_weight

        self.faults.point(f"traffic {canary_weight}%", apply)

    def measure(self, since: float) -> tuple[Window, Window]:
        return STABLE, self.canary[self.weight]

    def finish(self, serving: str, *, slot: str = "a") -> None:
        self.faults.point(f"finish {serving}", lambda: self.cluster.route({serving: 100}))


HEALTHY = {10: GOOD, 50: GOOD, 100: GOOD}
FAILS_AT_50 = {10: GOOD, 50: FAILING}


def _rollout(
    root: Path, cluster: Cluster, faults: Faults, canary: dict[int, Window], by_hand: bool
) -> None:
    """What a controller process does: start or resume the canary of v2, then drive it."""
    ctl = RolloutController(
        Registry(KillableStore(root, faults), "m"),
        ClusterDriver(cluster, faults, canary),
        POLICY,
        sleep=lambda _: None,
    )
    state = ctl.state()
    if state is not None and state.done:
        return
    ctl.resume_or_start("v2")
    if not by_hand:
        ctl.run()
        return
    # One look (the first advances to 50%), then the operator's `flywheel rollback`,
    # given again if it was cut short and the rollout is still going.
    if not ctl.tick().done and ctl.state().ending is None:  # type: ignore[union-attr]
        ctl.rollback("operator said so", actor="test")
    if not ctl.state().done:  # type: ignore[union-attr]
        ctl.run()


def _records(registry: Registry, kind: str) -> list[dict[str, object]]:
    return [r for r in registry.records("v2") if r.get("kind") == kind]


SCENARIOS = {
    # name: (canary by weight, by hand, phase, serving, production history, step decisions)
    "healthy": (HEALTHY, False, "promoted", "v2", ["v1", "v2"], ["advance"] * 3),
    "failing": (FAILS_AT_50, False, "rolled_back", "v1", ["v1"], ["advance", "rollback"]),
    "by hand": (HEALTHY, True, "rolled_back", "v1", ["v1"], None),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_controller_killed_at_any_point_resumes_to_the_same_outcome(
    tmp_path: Path, scenario: str
) -> None:
    canary, by_hand, phase, serving, history, decisions = SCENARIOS[scenario]

    def given(root: Path) -> Cluster:
        # v1 in production and serving, v2 registered
        reg = Registry(LocalStore(root), "m")
        for tag in "ab":
            reg.register({"model.joblib": tag.encode()}, run_id=tag)
        reg.move_alias("production", "v1", expected=None, reason="first", actor="test")
        return Cluster("v1")

    # a run that nothing interrupts tells how many kill points there are
    counted = Faults()
    _rollout(tmp_path / "whole", given(tmp_path / "whole"), counted, canary, by_hand)
    points = counted.points
    assert any(p.startswith("traffic") for p in points) and any("rollouts/m/" in p for p in points)
    for at in range(1, len(points) + 1):
        for after in (False, True):
            root = tmp_path / f"{at}-{after}"
            cluster = given(root)
            # when the controller is killed before or after its at-th side effect
            with pytest.raises(Killed):
                _rollout(root, cluster, Faults(at, after), canary, by_hand)
            # and a new one resumes
            _rollout(root, cluster, Faults(), canary, by_hand)
            # then the outcome is the one a run without the crash reaches
            where = f"killed {'after' if after else 'before'} {points[at - 1]}"
            reg = Registry(LocalStore(root), "m")
            final = RolloutController(reg, ClusterDriver(cluster, Faults(), canary), POLICY).state()
            assert final is not None and final.phase == phase, where
            assert cluster.weights == {serving: 100}, where
            # and a canary that was being rolled back never got its traffic back
            assert cluster.canary_never_came_back("v2") or phase == "promoted", where
            assert [h.version for h in reg.history("production")] == history, where
            # with exactly one record of each decision
            assert len(_records(reg, "rollout-start")) == 1, where
            steps = _records(reg, "rollout-step")
            if decisions is not None:
                assert [s["decision"] for s in steps] == decisions, where
            # (by hand, the rollback may come before step 1 was decided: at most one each)
            assert [s["step"] for s in steps] == list(range(1, len(steps) + 1)), where
            ending = f"rollout-{phase.replace('_', '-')}"
            assert len(_records(reg, ending)) == 1, where
            other = "rollout-rolled-back" if phase == "promoted" else "rollout-promoted"
            assert _records(reg, other) == [], where


def test_a_resumed_step_keeps_its_clock_so_restarts_cannot_extend_it(
    registry: Registry,
) -> None:
    # given a canary started at t=0 by a controller that then died
    now = [0.0]
    first = RolloutController(
        registry, ReplayDriver([]), POLICY, clock=lambda: now[0], sleep=lambda _: None
    )
    first.start("v2")
    revisions = len(registry.store.list(f"rollouts/{registry.model_name}"))
    assert revisions == 1
    # when a new controller resumes past the step's timeout, the canary short of traffic
    now[0] = POLICY.step_timeout_seconds + 1
    driver = ReplayDriver([QUIET, GOOD])
    again = RolloutController(registry, driver, POLICY, clock=lambda: now[0], sleep=lambda _: None)
    resumed = again.tick()
    # then resuming wrote no revision and kept the step's start
    assert resumed.step_started == 0.0
    assert len(registry.store.list(f"rollouts/{registry.model_name}")) == revisions
    # and its first look rolls the canary back on the step's timeout, with one decision
    final = again.tick()
    assert final.phase == "rolled_back" and "canary requests in" in final.reason, final.reason
    assert [s["decision"] for s in _records(registry, "rollout-step")] == ["rollback"]
    assert registry.resolve("production") == "v1"


def test_a_decision_recorded_before_a_crash_is_followed_not_taken_again(
    registry: Registry,
) -> None:
    # given a controller that recorded step 1's "advance", then died before saving step 2
    first = controller(registry, ReplayDriver([GOOD]))
    first.start("v2")
    first._save = lambda *_: (_ for _ in ()).throw(Killed("before the save"))  # type: ignore[method-assign]
    with pytest.raises(Killed):
        first.tick()
    assert [r["decision"] for r in _records(registry, "rollout-step")] == ["advance"]
    # when a new controller resumes with a canary that now looks bad
    driver = ReplayDriver([GOOD, GOOD])
    again = controller(registry, driver)
    state = again.tick()
    # then it advances as recorded, without judging step 1 again
    assert (state.step, state.weight) == (1, 50)
    assert driver.calls == [("traffic", "v1", "v2", "50")]
    assert [r["step"] for r in _records(registry, "rollout-step")] == [1]


LABELLED_STABLE = STABLE.model_copy(update={"labelled": 1000, "correct": 800})


class LabelledDriver(ReplayDriver):
    """Replays canary windows against a stable side that has labels (80% right)."""

    def measure(self, since: float) -> tuple[Window, Window]:
        return LABELLED_STABLE, next(self.windows)


def test_each_steps_record_says_whether_accuracy_was_required_and_checked(
    registry: Registry,
) -> None:
    # given an optional first step and a required second one
    policy = POLICY.model_copy(
        update={
            "steps": RolloutSettings(
                steps=(10, {"weight": 50, "accuracy": "required"})  # type: ignore[arg-type]
            ).steps,
            "accuracy": "on",
        }
    )
    # when the canary has no labels at the first step, too few then enough at the second
    few = GOOD.model_copy(update={"labelled": 30, "correct": 24})
    enough = GOOD.model_copy(update={"labelled": 300, "correct": 245})
    driver = LabelledDriver([GOOD, few, few, enough])
    ctl = RolloutController(registry, driver, policy, sleep=lambda _: None)
    ctl.start("v2")
    assert ctl.run().phase == "promoted"
    # then the first passed without accuracy, and its record says it was not checked
    first, second = [r for r in registry.records("v2") if r.get("decision")]
    assert first["policy"]["accuracy"] == "optional"
    assert first["reason"].startswith("every check passed but accuracy, not checked")
    assert {c["name"]: c["status"] for c in first["checks"]}["accuracy"] == "skipped"
    # and the second waited for the labels (two looks), then judged them
    assert second["policy"]["accuracy"] == "required" and second["reason"] == "every check passed"
    assert {c["name"]: c["status"] for c in second["checks"]}["accuracy"] == "pass"
    assert second["canary"]["labelled"] == 300


def test_a_required_step_whose_labels_never_come_is_rolled_back_at_its_timeout(
    registry: Registry,
) -> None:
    policy = POLICY.model_copy(
        update={
            "steps": RolloutSettings(steps=({"weight": 10, "accuracy": "required"},)).steps,  # type: ignore[arg-type]
            "accuracy": "on",
            "step_timeout_seconds": 30.0,
        }
    )
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    driver = LabelledDriver([GOOD] * 40)
    ctl = RolloutController(registry, driver, policy, clock=lambda: now[0], sleep=sleep)
    ctl.start("v2")
    final = ctl.run()
    assert final.phase == "rolled_back" and registry.resolve("production") == "v1"
    assert final.reason.startswith("accuracy is required at this step and was not checked in 31s")


class Unmeasurable(ReplayDriver):
    """A driver whose metrics server fails for the looks listed, then answers again."""

    def __init__(self, canary_windows: list[Window], failing: set[int]) -> None:
        super().__init__(canary_windows)
        self.failing, self.looks = failing, 0

    def measure(self, since: float) -> tuple[Window, Window]:
        self.looks += 1
        if self.looks in self.failing:
            raise Inconclusive("cannot query Prometheus at http://prometheus:9090: refused")
        return super().measure(since)


def test_looks_that_cannot_measure_roll_the_canary_back_at_the_limit(
    registry: Registry,
) -> None:
    # given a metrics server that answers once, then never again
    limit = POLICY.checks.max_inconclusive
    driver = Unmeasurable([QUIET], failing=set(range(2, 100)))
    ctl = controller(registry, driver)
    ctl.start("v2")
    # when the controller runs
    final = ctl.run()
    # then the canary is rolled back at the limit, naming why, and production is unchanged
    assert final.phase == "rolled_back", final.reason
    assert final.reason.startswith(f"{limit} looks in a row could not measure"), final.reason
    assert "cannot query Prometheus" in final.reason
    assert registry.resolve("production") == "v1" and driver.calls[-1] == ("finish", "v1")
    # and every look is recorded: one that measured, then each inconclusive one, counted
    looks = _records(registry, "rollout-look")
    assert [look["action"] for look in looks] == ["wait"] + ["inconclusive"] * limit
    assert looks[0]["canary"]["requests"] == QUIET.requests and "checks" in looks[0]
    assert [look["inconclusive"] for look in looks[1:]] == list(range(1, limit + 1))
    # with one decision for the step
    assert [s["decision"] for s in _records(registry, "rollout-step")] == ["rollback"]


def test_a_look_that_measures_again_resets_the_count(registry: Registry) -> None:
    # given a metrics server that fails just short of the limit twice, with a good look between
    limit = POLICY.checks.max_inconclusive
    failing = set(range(1, limit)) | set(range(limit + 1, 2 * limit))
    driver = Unmeasurable([GOOD, GOOD, GOOD], failing=failing)
    ctl = controller(registry, driver)
    ctl.start("v2")
    # then the canary is judged on the looks that measured and promoted
    assert ctl.run().phase == "promoted"
    assert [
        look["inconclusive"]
        for look in _records(registry, "rollout-look")
        if look["action"] == "inconclusive"
    ] == [*range(1, limit), *range(1, limit)]


class SlotDriver(ReplayDriver):
    """Records which slot each call names, as a SeldonDeployment's driver needs them."""

    def set_traffic(self, stable: str, canary: str, canary_weight: int, *, slot: str = "a") -> None:
        self.calls.append(("traffic", f"{stable}@{slot}", str(canary_weight)))

    def finish(self, serving: str, *, slot: str = "a") -> None:
        self.calls.append(("finish", f"{serving}@{slot}"))


def test_a_promoted_canary_serves_on_from_its_slot_and_the_next_canary_takes_the_other(
    registry: Registry,
) -> None:
    registry.register({"model.joblib": b"c"}, run_id="c")
    # given v1 in slot a and a canary of v2 that passes every step
    driver = SlotDriver([GOOD, GOOD, GOOD])
    ctl = controller(registry, driver)
    assert ctl.start("v2").stable_slot == "a"
    assert ctl.run().phase == "promoted"
    # then the promotion moved all traffic to slot b, then served v2 from b alone
    assert driver.calls[-2:] == [("traffic", "v1@a", "100"), ("finish", "v2@b")]
    assert ctl.production_slot() == "b"
    # and the next canary runs in slot a against v2 in b; rolled back, production stays in b
    failing = SlotDriver([FAILING])
    nxt = controller(registry, failing)
    assert nxt.start("v3").stable_slot == "b"
    assert nxt.run().phase == "rolled_back"
    assert failing.calls[-2:] == [("traffic", "v2@b", "0"), ("finish", "v2@b")]
    assert nxt.production_slot() == "b"


class CutShort(ReplayDriver):
    """A metrics server that dies mid-answer: an error the driver did not foresee."""

    def measure(self, since: float) -> tuple[Window, Window]:
        raise http.client.IncompleteRead(b'{"status": "succ')


def test_a_driver_failing_in_a_way_it_did_not_foresee_is_an_inconclusive_look(
    registry: Registry,
) -> None:
    # given a driver whose measurement fails with an error that is no RolloutError
    ctl = controller(registry, CutShort([]))
    ctl.start("v2")
    # when the controller runs, then the looks are inconclusive and the canary goes at the limit
    final = ctl.run()
    assert final.phase == "rolled_back", final.reason
    assert "IncompleteRead" in final.reason
    assert registry.resolve("production") == "v1"


def test_a_policy_changed_mid_rollout_applies_from_the_next_rollout(registry: Registry) -> None:
    # given a canary at 50%, the step where its policy requires accuracy
    started = RolloutSettings.model_validate(
        {
            **POLICY.model_dump(),
            "steps": (10, 25, {"weight": 50, "accuracy": "required"}, 100),
            "accuracy": "on",
        }
    )
    first = RolloutController(registry, ReplayDriver([GOOD, GOOD]), started, sleep=lambda _: None)
    first.start("v2")
    first.tick()
    state = first.tick()
    assert state.weight == 50
    # when the controller restarts under a policy that requires accuracy at 25% instead
    changed = RolloutSettings.model_validate(
        {
            **POLICY.model_dump(),
            "steps": (10, {"weight": 25, "accuracy": "required"}, 100),
            "accuracy": "on",
        }
    )
    restarted = RolloutController(registry, ReplayDriver([GOOD] * 5), changed, sleep=lambda _: None)
    for _ in range(5):
        state = restarted.tick()
    # then the canary is still held at 50%, waiting for the labels its own policy requires,
    # not promoted past a step whose requirement the new policy moved away
    assert (state.phase, state.weight) == ("progressing", 50), state.reason
    assert restarted.judged_by(state) == started
    (look, *_) = reversed(_records(registry, "rollout-look"))
    accuracy = next(c for c in look["checks"] if c["name"] == "accuracy")
    assert accuracy["status"] == "pending"


class GrowingStable(ReplayDriver):
    """Stable's window growing look by look, as it does at the start of a step."""

    def __init__(self, stables: list[Window], canary: Window) -> None:
        super().__init__([canary] * len(stables))
        self.stables = iter(stables)

    def measure(self, since: float) -> tuple[Window, Window]:
        return next(self.stables), next(self.windows)


def test_each_step_is_judged_against_one_yardstick_however_stables_window_grows(
    registry: Registry,
) -> None:
    # given a canary past its first step (a baseline of stable kept), and at the next step a
    # stable window that grows from below min_requests to above it while the canary waits
    ctl = controller(registry, ReplayDriver([GOOD]))
    ctl.start("v2")
    assert ctl.tick().step == 1
    small = STABLE.model_copy(
        update={"requests": 50, "latency_counts": (0,) * 7 + (50,) + (0,) * 15}
    )
    ctl.driver = GrowingStable([small, STABLE], QUIET)
    ctl.tick()
    ctl.tick()
    # then both looks of the step measured against stable's own window, never switching
    # between it and the earlier step's (two confidence sequences on one share of the budget)
    looks = [r for r in _records(registry, "rollout-look") if r["step"] == 2]
    assert [look["stable"]["from_earlier_step"] for look in looks] == [False, False]
    assert [look["stable"]["requests"] for look in looks] == [50, STABLE.requests]
