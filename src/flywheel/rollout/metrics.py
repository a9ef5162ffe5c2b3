"""The rollout controller's metrics: what it looked at and decided, and where the rollout is.

Two sources, both what the controller already computes. `RolloutMetrics` follows
the records the controller writes (every look with each check's value and
threshold, each step's decision, each ending) through its `on_record` hook, so the
counters are this process's since it started, as Prometheus counters are. The
rollout's position (weight, step, phase) is its state in the store, read when
scraped (`state_samples`): every replica reports the same rollout, and only the
one holding the lock says it leads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flywheel.config import RolloutSettings
from flywheel.exposition import Metric, Sample
from flywheel.rollout.slots import SLOTS
from flywheel.rollout.state import RolloutState

ACTIONS = ("wait", "advance", "rollback", "inconclusive")
DECISIONS = ("advance", "rollback")
ENDINGS = ("promoted", "rolled_back")
STATUSES = ("pass", "fail", "pending", "skipped")

METRICS: dict[str, Metric] = {
    "flywheel_rollout_controller_up": Metric("1 while the rollout controller runs"),
    "flywheel_rollout_controller_leader": Metric(
        "1 while this controller holds the rollout's lock (a Lease on a cluster) and acts on it"
    ),
    "flywheel_rollout_looks_total": Metric("Looks at the canary, by action", "counter"),
    "flywheel_rollout_decisions_total": Metric("Step decisions, by decision", "counter"),
    "flywheel_rollout_endings_total": Metric("Rollouts ended, by ending", "counter"),
    "flywheel_rollout_last_look_timestamp_seconds": Metric("When the controller last looked"),
    "flywheel_rollout_check_value": Metric("A canary check's measured value at the last look"),
    "flywheel_rollout_check_threshold": Metric("A canary check's threshold at the last look"),
    "flywheel_rollout_check_status": Metric("1 for a canary check's status at the last look"),
    "flywheel_rollout_info": Metric("The newest rollout: its id, versions and phase"),
    "flywheel_rollout_in_progress": Metric("1 while a rollout is progressing"),
    "flywheel_rollout_canary_weight_percent": Metric(
        "Percent of requests sent to the canary (100 once promoted, 0 once rolled back)"
    ),
    "flywheel_rollout_step": Metric("The rollout's step, from 1"),
    "flywheel_rollout_steps": Metric("Steps in the rollout policy"),
    "flywheel_rollout_step_started_timestamp_seconds": Metric("When the current step started"),
    "flywheel_rollout_step_timeout_seconds": Metric("How long a step may run before it ends"),
    "flywheel_rollout_inconclusive_looks": Metric("Looks in a row that could not measure"),
    "flywheel_rollout_inconclusive_limit": Metric(
        "Looks in a row that cannot measure before the canary is rolled back"
    ),
    "flywheel_serving_slot_info": Metric(
        "The version each SeldonDeployment predictor serves, and its role"
    ),
}


class RolloutMetrics:
    """The counters and the last look of one controller process, fed by its records."""

    def __init__(self, model: str, clock: Callable[[], float] = time.time) -> None:
        self.model = model
        self.clock = clock
        self._lock = threading.Lock()  # the loop records while a scrape reads
        self._looks = dict.fromkeys(ACTIONS, 0)
        self._decisions = dict.fromkeys(DECISIONS, 0)
        self._endings = dict.fromkeys(ENDINGS, 0)
        self._last_look: float | None = None
        self._checks: list[dict[str, Any]] = []
        self._leader = False

    def record(self, kind: str, body: Mapping[str, Any]) -> None:
        """One record the controller wrote (its `on_record` hook)."""
        with self._lock:
            if kind == "rollout-look":
                action = str(body.get("action"))
                self._looks[action] = self._looks.get(action, 0) + 1
                self._last_look = self.clock()
                if action != "inconclusive":
                    self._checks = list(body.get("checks", []))
            elif kind == "rollout-step":
                decision = str(body.get("decision"))
                self._decisions[decision] = self._decisions.get(decision, 0) + 1
            elif kind in ("rollout-promoted", "rollout-rolled-back"):
                ending = kind.removeprefix("rollout-").replace("-", "_")
                self._endings[ending] = self._endings.get(ending, 0) + 1
            elif kind == "rollout-start":
                self._checks = []

    def observe_leader(self, leader: bool) -> None:
        """Whether this process holds the rollout's lock now."""
        with self._lock:
            self._leader = leader

    def samples(self) -> list[Sample]:
        """Everything this process counted, and its last look."""
        model = {"model": self.model}
        with self._lock:
            found = [
                Sample("flywheel_rollout_controller_up", model, 1.0),
                Sample("flywheel_rollout_controller_leader", model, float(self._leader)),
                Sample("flywheel_rollout_last_look_timestamp_seconds", model, self._last_look),
            ]
            for name, counts, label in (
                ("flywheel_rollout_looks_total", self._looks, "action"),
                ("flywheel_rollout_decisions_total", self._decisions, "decision"),
                ("flywheel_rollout_endings_total", self._endings, "ending"),
            ):
                found += [Sample(name, {**model, label: k}, v) for k, v in counts.items()]
            for check in self._checks:
                labels = {**model, "check": str(check["name"])}
                found.append(Sample("flywheel_rollout_check_value", labels, check.get("measured")))
                found.append(Sample("flywheel_rollout_check_threshold", labels, check["threshold"]))
                found += [
                    Sample(
                        "flywheel_rollout_check_status",
                        {**labels, "status": status},
                        float(check["status"] == status),
                    )
                    for status in STATUSES
                ]
        return found


def state_samples(
    model: str,
    deployment: str,
    state: RolloutState | None,
    production: str | None,
    policy: RolloutSettings,
) -> Iterable[Sample]:
    """Where the newest rollout is, and which version each predictor (slot) of the
    SeldonDeployment `deployment` serves: the executor's series name the predictor, not
    the version, so the dashboard joins them on this."""
    labels = {"model": model}
    yield Sample("flywheel_rollout_steps", labels, len(policy.steps))
    yield Sample("flywheel_rollout_step_timeout_seconds", labels, policy.step_timeout_seconds)
    yield Sample("flywheel_rollout_inconclusive_limit", labels, policy.checks.max_inconclusive)
    if state is None:
        yield Sample("flywheel_rollout_in_progress", labels, 0.0)
        if production is not None:
            yield _slot(labels, deployment, state, production, "production")
        return
    info = {
        **labels,
        "rollout_id": state.rollout_id,
        "canary": state.canary,
        "stable": state.stable or "",
        "phase": state.phase,
    }
    yield Sample("flywheel_rollout_info", info, 1.0)
    yield Sample("flywheel_rollout_in_progress", labels, float(not state.done))
    yield Sample("flywheel_rollout_canary_weight_percent", labels, state.weight)
    yield Sample("flywheel_rollout_step", labels, state.step + 1)
    yield Sample("flywheel_rollout_step_started_timestamp_seconds", labels, state.step_started)
    yield Sample("flywheel_rollout_inconclusive_looks", labels, state.inconclusive)
    if not state.done and state.stable is not None:
        yield _slot(labels, deployment, state, state.stable, "stable", state.stable_slot)
        yield _slot(labels, deployment, state, state.canary, "canary", state.canary_slot)
    elif production is not None:
        yield _slot(labels, deployment, state, production, "production")


def _slot(
    model: Mapping[str, str],
    deployment: str,
    state: RolloutState | None,
    version: str,
    role: str,
    slot: str | None = None,
) -> Sample:
    if slot is None:
        # Production serves from where the last rollout left it.
        slot = state.serving_slot if state is not None else SLOTS[0]
    labels = {
        **model,
        "deployment_name": deployment,
        "predictor_name": slot,
        "version": version,
        "role": role,
    }
    return Sample("flywheel_serving_slot_info", labels, 1.0)
