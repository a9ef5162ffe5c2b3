"""The rollout lock in a real local store: one controller acts, the others wait or hand over."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from flywheel.config import RolloutSettings
from flywheel.registry import Registry
from flywheel.rollout.analysis import Window
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.lock import ControllerBusy, Holding, StoreLock
from flywheel.rollout.processes import identity
from flywheel.storage import LocalStore

# The lock is what these tests hold, not the analysis: no step waits for labels.
POLICY = RolloutSettings(steps=(10, 100), accuracy="off", min_requests=100, min_requests_to_fail=10)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recording:
    """A driver that remembers what it was told; every look sees too little traffic."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def set_traffic(self, stable: str, canary: str, canary_weight: int, *, slot: str = "a") -> None:
        self.calls.append(("traffic", stable, canary, str(canary_weight)))

    def measure(self, since: float) -> tuple[Window, Window]:
        return Window(requests=1000), Window(requests=1)

    def finish(self, serving: str, *, slot: str = "a") -> None:
        self.calls.append(("finish", serving))


@pytest.fixture
def store(registry: Registry, tmp_path: Path) -> LocalStore:
    """The store of the conftest's registry: model m, v1 in production, v2 registered."""
    return LocalStore(tmp_path)


def lock(store: LocalStore, clock: Clock, holder: str) -> StoreLock:
    return StoreLock.for_rollout(
        store, "m", seconds=30, holder=holder, clock=clock, renew_in_background=False
    )


def controller(store: LocalStore, lock: StoreLock, driver: Recording) -> RolloutController:
    return RolloutController(Registry(store, "m"), driver, POLICY, sleep=lambda _: None, lock=lock)


def test_a_second_controller_cannot_act_while_the_first_holds_the_lock(store: LocalStore) -> None:
    # given controller A holding the rollout's lock, with a canary under way
    clock = Clock()
    a_driver, b_driver = Recording(), Recording()
    a = controller(store, lock(store, clock, "a"), a_driver)
    a.hold()
    a.start("v2")
    # when controller B, on the same store, tries to drive it
    b = controller(store, lock(store, clock, "b"), b_driver)
    # then it is refused, naming A, and moves nothing
    with pytest.raises(ControllerBusy, match="the rollout of m is held by a "):
        b.tick()
    assert b_driver.calls == []
    # and a rollback by hand through B is saved for A, which carries it out
    pending = b.rollback("operator said so", actor="test")
    assert (pending.phase, pending.ending) == ("progressing", "rolled_back")
    assert b_driver.calls == []
    final = a.tick()
    assert final.phase == "rolled_back" and final.reason == "operator said so"
    assert a_driver.calls[-2:] == [("traffic", "v1", "v2", "0"), ("finish", "v1")]
    assert Registry(store, "m").resolve("production") == "v1"


def test_a_promotion_by_hand_carried_out_by_the_holder_is_in_the_persons_name(
    store: LocalStore,
) -> None:
    # given controller A holding the lock with a canary under way
    clock = Clock()
    a = controller(store, lock(store, clock, "a"), Recording())
    a.hold()
    a.start("v2")
    # when ada promotes it through B, then A carries it out, and production's revision
    # names ada, not A's rollout
    b = controller(store, lock(store, clock, "b"), Recording())
    assert (
        b.promote("looks fine", actor="ada (flywheel promote)").decided_by
        == "ada (flywheel promote)"
    )
    assert a.tick().phase == "promoted"
    moved = Registry(store, "m").history("production")[-1]
    assert (moved.version, moved.actor, moved.reason) == (
        "v2",
        "ada (flywheel promote)",
        "rollout: looks fine",
    )


def test_the_lock_is_taken_over_only_once_it_expired(store: LocalStore) -> None:
    # given A holding the lock, and then going silent (no renewals)
    clock = Clock()
    a, b = lock(store, clock, "a"), lock(store, clock, "b")
    a.acquire()
    assert a.held()
    # when B looks, and again just before a whole lock duration passed
    assert not b.try_acquire()
    clock.now += 29
    assert not b.try_acquire()
    # then A stopped counting on it already (two thirds in), and B takes it once it expired
    assert not a.held()
    clock.now += 1
    assert b.try_acquire() and b.held()
    assert b.owner() == "b"
    # and A can neither renew it nor act
    assert not a.try_acquire()
    with pytest.raises(ControllerBusy, match="held by b"):
        a.acquire()


def test_a_renewed_lock_never_expires_and_a_released_one_is_free_at_once(
    store: LocalStore,
) -> None:
    clock = Clock()
    a, b = lock(store, clock, "a"), lock(store, clock, "b")
    a.acquire()
    for _ in range(10):
        # B watches the lock for longer than its duration, but A renews it meanwhile
        assert not b.try_acquire()
        clock.now += 20
        assert a.try_acquire()
    # old revisions are pruned as it is renewed
    assert len(store.list("locks/rollout-m")) <= 3
    a.release()
    assert b.try_acquire()


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_at_once(store: LocalStore) -> None:
    # given the lock written by a process of this host that has since exited
    clock = Clock()
    child = subprocess.Popen(["sleep", "30"])
    dead = identity(child.pid)
    child.kill()
    child.wait()
    assert dead is not None
    b = lock(store, clock, "b")
    holding = Holding(
        holder="killed",
        renewed=time.time(),
        seconds=30,
        host=b.host,
        pid=dead.pid,
        started=dead.started,
    )
    assert b._write(holding, None)
    # when another controller asks for it, then it takes it over without waiting
    assert b.try_acquire()


def test_a_live_holder_of_this_host_keeps_its_lock(store: LocalStore) -> None:
    # given the lock held by another lock object of this very (living) process
    clock = Clock()
    a, b = lock(store, clock, "a"), lock(store, clock, "b")
    a.acquire()
    # then it is not mistaken for a dead one
    assert not b.try_acquire()


def test_renewals_in_the_background_keep_the_lock_while_its_holder_runs(
    store: LocalStore,
) -> None:
    # given A holding a short lock with its renewals running, and B waiting for it
    a = StoreLock.for_rollout(store, "m", seconds=0.6, holder="a")
    b = StoreLock.for_rollout(store, "m", seconds=0.6, holder="b")
    a.acquire()
    try:
        # then B gives up after waiting three lock durations
        with pytest.raises(ControllerBusy, match="held by a"):
            b.acquire(wait=1.8)
        assert a.held()
    finally:
        a.release()
    # and once A lets go, B gets it at once
    started = time.monotonic()
    b.acquire(wait=1)
    b.release()
    assert time.monotonic() - started < 0.5
