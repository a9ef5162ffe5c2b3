"""The rollout controller: canary steps, analysis, and promotion or rollback, with no human.

The controller's state lives in the object store as create-only revisions
(`rollouts/<model>/<rev>.json`), like the registry's aliases. Every action first
writes the state it is moving to, then acts, so a controller that is killed and
restarted reads where it was and carries on: it re-applies the traffic split,
and it recognises a promotion that happened just before it died.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from flywheel.config import RolloutSettings
from flywheel.errors import FlywheelError
from flywheel.registry import PRODUCTION, AliasConflict, Registry, version_number
from flywheel.rollout.analysis import Verdict, Window, analyse
from flywheel.storage import ObjectExists

log = logging.getLogger(__name__)

Phase = Literal["progressing", "promoted", "rolled_back"]


class RolloutError(FlywheelError, RuntimeError):
    """A rollout cannot start or continue; nothing was changed."""


class Driver(Protocol):
    """Where the traffic actually goes: local microservices or a SeldonDeployment."""

    def set_traffic(self, stable: str, canary: str, canary_weight: int) -> None:
        """Send `canary_weight` percent of requests to `canary`, the rest to `stable`."""

    def measure(self, since: float) -> tuple[Window, Window]:
        """What the stable and canary predictors did since `since` (epoch seconds)."""

    def finish(self, serving: str) -> None:
        """Serve only `serving` from now on (the promoted canary, or stable after a rollback)."""


class RolloutState(BaseModel):
    """One revision of a model's rollout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout_id: str
    model_name: str
    stable: str | None
    canary: str
    phase: Phase
    step: int
    weight: int
    step_started: float
    started_at: str
    updated_at: str
    reason: str
    revision: int = 0
    # What the stable model did in the last step that sent it traffic: the yardstick
    # for steps that send it little or none (the 100% step).
    baseline: Window | None = None

    @property
    def done(self) -> bool:
        """Promoted or rolled back."""
        return self.phase != "progressing"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RolloutController:
    """Drives one model's canary rollouts through a Driver."""

    def __init__(
        self,
        registry: Registry,
        driver: Driver,
        policy: RolloutSettings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        on_tick: Callable[[RolloutState, Verdict | None], None] | None = None,
    ) -> None:
        self.registry = registry
        self.store = registry.store
        self.driver = driver
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.on_tick = on_tick
        self.prefix = f"rollouts/{registry.model_name}"

    # --- state ------------------------------------------------------------------

    def state(self) -> RolloutState | None:
        """The latest revision of the rollout state, if any."""
        keys = self.store.list(self.prefix)
        return RolloutState.model_validate_json(self.store.read(keys[-1])) if keys else None

    def _save(self, state: RolloutState, previous: RolloutState | None) -> RolloutState:
        revision = (previous.revision if previous else 0) + 1
        new = state.model_copy(update={"revision": revision, "updated_at": _now()})
        try:
            self.store.write(
                f"{self.prefix}/{revision:08d}.json",
                new.model_dump_json(indent=2).encode(),
                create_only=True,
            )
        except ObjectExists:
            raise RolloutError(
                "another controller changed this rollout at the same moment"
            ) from None
        return new

    def _record(self, version: str, kind: str, body: dict[str, object]) -> None:
        self.registry.add_record(version, kind, body)

    # --- starting -----------------------------------------------------------------

    def start(self, canary: str) -> RolloutState:
        """Start a canary of `canary` against production (or promote it if there is none)."""
        canary, stable, current = self._startable(canary)
        if stable is None:
            return self._direct(
                canary, None, current, "nothing was in production: the first model goes straight in"
            )
        state = self._save(self._new(canary, stable, self.policy.steps[0]), current)
        self._record(canary, "rollout-start", {"stable": stable, "steps": list(self.policy.steps)})
        self.driver.set_traffic(stable, canary, state.weight)
        log.info("canary %s at %d%% against %s", canary, state.weight, stable)
        return state

    def in_progress(self, version: str) -> RolloutState | None:
        """The rollout of `version` still in progress (left by a killed process, or by a
        pipeline step that is being retried), if there is one."""
        current = self.state()
        if current is None or current.done or current.canary != f"v{version_number(version)}":
            return None
        return current

    def resume_or_start(self, version: str) -> RolloutState:
        """The rollout of `version` already in progress, else a new one."""
        return self.in_progress(version) or self.start(version)

    def deploy_direct(
        self, version: str, reason: str = "deployed directly by hand"
    ) -> RolloutState:
        """Send all traffic to `version` now, with no canary steps; recorded like any rollout."""
        version, stable, current = self._startable(version)
        return self._direct(version, stable, current, reason)

    def _startable(self, version: str) -> tuple[str, str | None, RolloutState | None]:
        """The version's name, production and the last state, if a rollout of it may start."""
        version = f"v{version_number(version)}"
        self.registry.manifest(version)
        current = self.state()
        if current is not None and not current.done:
            raise RolloutError(
                f"a rollout of {current.canary} is already in progress (step {current.step + 1}); "
                "promote or roll it back first"
            )
        stable = self.registry.resolve(PRODUCTION)
        if stable == version:
            raise RolloutError(f"{version} is already in production")
        return version, stable, current

    def _new(self, canary: str, stable: str | None, weight: int) -> RolloutState:
        now = self.clock()
        return RolloutState(
            rollout_id=f"{canary}-{int(now)}",
            model_name=self.registry.model_name,
            stable=stable,
            canary=canary,
            phase="progressing",
            step=0,
            weight=weight,
            step_started=now,
            started_at=_now(),
            updated_at=_now(),
            reason=f"canary of {canary} against {stable}",
        )

    def _direct(
        self, version: str, stable: str | None, current: RolloutState | None, reason: str
    ) -> RolloutState:
        # Saved as a rollout at 100% before acting, so a crash in between is resumed.
        state = self._save(
            self._new(version, stable, 100).model_copy(update={"reason": reason}),
            current,
        )
        return self._promote(state, reason)

    # --- running ------------------------------------------------------------------

    def run(self) -> RolloutState:
        """Tick until the rollout is promoted or rolled back."""
        while True:
            state = self.tick()
            if state.done:
                return state

    def tick(self) -> RolloutState:
        """One look at the canary: wait, advance a step, promote, or roll back."""
        state = self.state()
        if state is None:
            raise RolloutError(f"no rollout of {self.registry.model_name} to continue")
        if state.done:
            # Ended elsewhere (`flywheel rollback` from another shell): apply it here too.
            serving = state.canary if state.phase == "promoted" else state.stable
            if serving is not None:
                self.driver.finish(serving)
            return state
        production = self.registry.resolve(PRODUCTION)
        if production == state.canary:
            # Promoted just before a restart: finish the job instead of judging again.
            return self._finish(
                state, "promoted", "production already pointed at the canary when resumed"
            )
        if production != state.stable:
            return self._rollback(
                state, f"production was moved to {production} outside this rollout"
            )
        assert state.stable is not None  # only a first model has none, and it never progresses
        self.driver.set_traffic(state.stable, state.canary, state.weight)
        stable, canary = self.driver.measure(state.step_started)
        yardstick = stable
        if stable.requests < self.policy.min_requests and state.baseline is not None:
            yardstick = state.baseline
        verdict = analyse(yardstick, canary, self.policy, self.clock() - state.step_started)
        if self.on_tick:
            self.on_tick(state, verdict)
        if verdict.action == "wait":
            self.sleep(self.policy.interval_seconds)
            return state
        self._record(
            state.canary,
            "rollout-step",
            {
                "step": state.step + 1,
                "weight": state.weight,
                "decision": verdict.action,
                "reason": verdict.reason,
                "stable": {
                    "version": state.stable,
                    "from_earlier_step": yardstick is not stable,
                    **yardstick.model_dump(mode="json"),
                },
                "canary": {"version": state.canary, **canary.model_dump(mode="json")},
                "checks": [c.model_dump(mode="json") for c in verdict.checks],
                "policy": self.policy.checks.model_dump(mode="json"),
            },
        )
        if verdict.action == "rollback":
            return self._rollback(state, verdict.reason)
        if state.step + 1 < len(self.policy.steps):
            weight = self.policy.steps[state.step + 1]
            state = self._save(
                state.model_copy(
                    update={
                        "step": state.step + 1,
                        "weight": weight,
                        "step_started": self.clock(),
                        "reason": f"step {state.step + 1} passed",
                        "baseline": yardstick,
                    }
                ),
                state,
            )
            self.driver.set_traffic(state.stable or "", state.canary, weight)
            log.info("canary %s advanced to %d%%", state.canary, weight)
            return state
        return self._promote(state, "every step passed")

    # --- endings ------------------------------------------------------------------

    def _promote(self, state: RolloutState, reason: str) -> RolloutState:
        try:
            self.registry.move_alias(
                PRODUCTION, state.canary, expected=state.stable, reason=f"rollout: {reason}"
            )
        except AliasConflict as error:
            return self._rollback(state, f"could not promote: {error}")
        return self._finish(state, "promoted", reason)

    def _rollback(self, state: RolloutState, reason: str) -> RolloutState:
        if state.stable is not None:
            self.driver.set_traffic(state.stable, state.canary, 0)
        return self._finish(state, "rolled_back", reason)

    def _finish(self, state: RolloutState, phase: Phase, reason: str) -> RolloutState:
        serving = state.canary if phase == "promoted" else state.stable
        if serving is not None:
            self.driver.finish(serving)
        final = self._save(
            state.model_copy(
                update={
                    "phase": phase,
                    "weight": 100 if phase == "promoted" else 0,
                    "reason": reason,
                }
            ),
            state,
        )
        self._record(
            state.canary,
            f"rollout-{phase.replace('_', '-')}",
            {"reason": reason, "stable": state.stable},
        )
        log.info("%s %s: %s", state.canary, phase.replace("_", " "), reason)
        return final

    # --- by hand --------------------------------------------------------------------

    def promote(self, reason: str = "promoted by hand") -> RolloutState:
        """Promote the rollout in progress now, skipping the remaining steps."""
        state = self._in_progress()
        return self._promote(state, reason)

    def rollback(self, reason: str = "rolled back by hand") -> RolloutState:
        """Roll back the rollout in progress now."""
        state = self._in_progress()
        return self._rollback(state, reason)

    def _in_progress(self) -> RolloutState:
        state = self.state()
        if state is None or state.done:
            raise RolloutError(f"no rollout of {self.registry.model_name} is in progress")
        return state


class StateOnlyDriver:
    """Moves no traffic: for a process that only reads or records rollout decisions.

    `flywheel promote`, `rollback`, `rollout status` and `rollout wait` with the
    local driver change or read the state in the store; the `flywheel deploy`
    process that runs the servers applies it at its next tick.
    """

    def set_traffic(self, stable: str, canary: str, canary_weight: int) -> None:
        return None

    def measure(self, since: float) -> tuple[Window, Window]:
        return Window(), Window()

    def finish(self, serving: str) -> None:
        return None
