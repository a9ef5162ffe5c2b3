"""The rollout Lease against a real kube-apiserver: one controller acts, and a killed one's
Lease passes to the next only once it has expired."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import RolloutSettings
from flywheel.registry import Registry
from flywheel.rollout.analysis import Window
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.kubernetes import load_client
from flywheel.rollout.lease import KubernetesLease, lease_name
from flywheel.rollout.lock import ControllerBusy
from flywheel.storage import LocalStore

pytestmark = pytest.mark.integration

SECONDS = 2
# The lease is what these tests hold, not the analysis: no step waits for labels.
POLICY = RolloutSettings(steps=(10, 100), accuracy="off", min_requests=100, min_requests_to_fail=10)

# A controller process that takes the Lease, says so, and renews it until it is killed.
HOLDER = """
import sys, time
from flywheel.rollout.kubernetes import load_client
from flywheel.rollout.lease import KubernetesLease
lease = KubernetesLease(sys.argv[1], sys.argv[2], api_client=load_client(sys.argv[3]),
                        seconds=float(sys.argv[4]), holder="controller-a")
lease.acquire()
print("holding", flush=True)
time.sleep(600)
"""


class Recording:
    """A driver that remembers what it was told and measures too little traffic to judge."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def set_traffic(self, stable: str, canary: str, canary_weight: int, *, slot: str = "a") -> None:
        self.calls.append(("traffic", stable, canary, str(canary_weight)))

    def measure(self, since: float) -> tuple[Window, Window]:
        return Window(requests=1000), Window(requests=1)

    def finish(self, serving: str, *, slot: str = "a") -> None:
        self.calls.append(("finish", serving))


def _lease(kube: Any, namespace: str) -> dict[str, Any]:
    raw = kube.kubectl("get", "lease", lease_name("m"), "-n", namespace, "-o", "json").stdout
    spec: dict[str, Any] = json.loads(raw)["spec"]
    return spec


def test_a_second_controller_waits_for_the_lease_and_takes_over_once_it_expired(
    kube: Any, namespace: str, tmp_path: Path
) -> None:
    # given a canary of v2 under way
    registry = Registry(LocalStore(tmp_path / "store"), "m")
    for tag in "ab":
        registry.register({"model.joblib": tag.encode()}, run_id=tag)
    registry.move_alias("production", "v1", expected=None, reason="first", actor="test")
    RolloutController(registry, Recording(), POLICY).start("v2")
    # and controller A, another process, holding the model's Lease
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            namespace,
            lease_name("m"),
            str(kube.kubeconfig),
            str(SECONDS),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        spec = _lease(kube, namespace)
        assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == ("controller-a", SECONDS)
        # when controller B tries to drive the rollout
        lease = KubernetesLease(
            namespace,
            lease_name("m"),
            api_client=load_client(str(kube.kubeconfig)),
            seconds=SECONDS,
        )
        driver = Recording()
        b = RolloutController(registry, driver, POLICY, sleep=lambda _: None, lock=lease)
        # then it cannot act, not even after waiting longer than the Lease lasts: A renews it
        with pytest.raises(ControllerBusy, match="held by controller-a"):
            b.tick()
        with pytest.raises(ControllerBusy, match="held by controller-a"):
            b.hold(wait=3 * SECONDS)
        assert driver.calls == []
        # when A is killed, leaving its Lease behind
        holder.kill()
        holder.wait()
        killed = time.monotonic()
        # then B takes the Lease over once it was left unrenewed for its duration, not before
        b.hold(wait=5 * SECONDS)
        waited = time.monotonic() - killed
        assert SECONDS * 0.5 <= waited <= 4 * SECONDS, waited
        try:
            spec = _lease(kube, namespace)
            assert spec["holderIdentity"] == lease.holder
            assert spec["leaseTransitions"] == 2
            # and drives the rollout: its step goes on from its recorded start, and the
            # next look sets the traffic again
            started = registry.store.list(f"rollouts/{registry.model_name}")
            state = b.tick()
            assert state.phase == "progressing" and state.step == 0
            assert registry.store.list(f"rollouts/{registry.model_name}") == started
            b.tick()
            assert driver.calls == [("traffic", "v1", "v2", "10")]
        finally:
            b.let_go()
        # and letting go frees the Lease at once
        assert _lease(kube, namespace).get("holderIdentity") is None
        follower = KubernetesLease(
            namespace, lease_name("m"), api_client=load_client(str(kube.kubeconfig))
        )
        assert follower.try_acquire()
        follower.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
