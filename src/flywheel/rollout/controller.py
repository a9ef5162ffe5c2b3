"""The rollout controller: canary steps, analysis, and promotion or rollback, with no human.

The controller's state lives in the object store as create-only revisions
(`rollouts/<model>/<rev>.json`), like the registry's aliases. Every change is
written before it is acted on, so a controller that is killed at any point and
restarted reads where it was and carries on:

- a step's decision is recorded before the state moves on; a resumed controller
  that finds the decision of its step follows it instead of judging again;
- an ending (promoted or rolled back) is saved as the state's `ending` before the
  alias or the traffic is touched, then acted on, then confirmed as the phase; a
  resumed controller completes the ending instead of resuming the old weight;
- a resumed step goes on from its recorded start: its clock is the wall clock, so a
  controller that keeps crashing cannot keep a canary live past the step's timeout;
- a look that cannot measure (the metrics server or the API server failing, no
  series where traffic flows) is recorded as inconclusive, and after
  `checks.max_inconclusive` of them in a row the canary is rolled back;
- every look is recorded with what it measured, not only each step's decision;
- each record carries the rollout's id, so one that was written before a crash is
  not written again.

Only one controller acts on a model's rollout at a time: the one holding its lock
(`flywheel.rollout.lock`, or a Lease on a cluster). A controller without the lock
may still end a rollout by hand: it saves the ending, and the holder acts on it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from flywheel.config import RolloutSettings, Task
from flywheel.contract import Contract
from flywheel.registry import PRODUCTION, AliasConflict, Registry, version_number
from flywheel.rollout.analysis import Verdict, Window, analyse
from flywheel.rollout.driver import Driver
from flywheel.rollout.lock import ControllerBusy, Lock
from flywheel.rollout.slots import SLOTS
from flywheel.rollout.state import (
    Ending,
    RolloutConflict,
    RolloutError,
    RolloutState,
    iso_now,
)
from flywheel.storage import ObjectExists

log = logging.getLogger(__name__)


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
        lock: Lock | None = None,
        on_record: Callable[[str, dict[str, object]], None] | None = None,
    ) -> None:
        self.registry = registry
        self.store = registry.store
        self.driver = driver
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.on_tick = on_tick
        self.lock = lock
        # Told every record once it is written: the controller's metrics follow them.
        self.on_record = on_record
        self.prefix = f"rollouts/{registry.model_name}"
        # The revisions this controller wrote or picked up; any other one is resumed.
        self._known: set[tuple[str, int]] = set()
        self._tasks: dict[str, Task] = {}

    # --- state ------------------------------------------------------------------

    def state(self) -> RolloutState | None:
        """The latest revision of the rollout state, if any."""
        keys = self.store.list(self.prefix)
        return RolloutState.model_validate_json(self.store.read(keys[-1])) if keys else None

    def _save(
        self, state: RolloutState, previous: RolloutState | None, *, locked: bool = True
    ) -> RolloutState:
        if locked:
            self._check()
        revision = (previous.revision if previous else 0) + 1
        new = state.model_copy(update={"revision": revision, "updated_at": iso_now()})
        try:
            self.store.write(
                f"{self.prefix}/{revision:08d}.json",
                new.model_dump_json(indent=2).encode(),
                create_only=True,
            )
        except ObjectExists:
            raise RolloutConflict(
                "another controller changed this rollout at the same moment"
            ) from None
        self._known.add((new.rollout_id, new.revision))
        return new

    def _record(self, state: RolloutState, kind: str, body: dict[str, object]) -> None:
        self._check()
        self.registry.add_record(
            state.canary, kind, {"kind": kind, "rollout_id": state.rollout_id, **body}
        )
        if self.on_record:
            self.on_record(kind, body)

    def _records(self, state: RolloutState, kind: str) -> list[dict[str, Any]]:
        """This rollout's records of one kind (a resumed controller writes none twice)."""
        return [
            r
            for r in self.registry.records(state.canary, kind)
            if r.get("rollout_id") == state.rollout_id
        ]

    # --- the lock -----------------------------------------------------------------

    def holding(self, wait: float = 0.0) -> AbstractContextManager[None]:
        """Hold the rollout's lock for a block (ControllerBusy if another controller does)."""
        return self.lock.holding(wait) if self.lock is not None else contextlib.nullcontext()

    def hold(self, wait: float = 0.0) -> None:
        """Take the rollout's lock, or keep it, renewed until `let_go` (a long-running loop)."""
        if self.lock is not None:
            self.lock.acquire(wait)

    def let_go(self) -> None:
        """Release the rollout's lock, if this controller holds it."""
        if self.lock is not None:
            self.lock.release()

    @contextlib.contextmanager
    def _acting(self) -> Iterator[None]:
        # Held for this call alone, unless the caller holds it already (a running loop).
        with self.holding():
            yield

    def _check(self) -> None:
        """Stop before acting if the lock lapsed (its renewals failed): another may act now."""
        if self.lock is not None and not self.lock.held():
            raise ControllerBusy(
                f"{self.lock.name}: this controller no longer holds the lock; it stopped before acting"
            )

    def _set_traffic(self, state: RolloutState, weight: int) -> str | None:
        assert state.stable is not None  # only a first model has none, and it never has traffic
        self._check()
        return self.driver.set_traffic(state.stable, state.canary, weight, slot=state.stable_slot)

    def _serve(self, serving: str, slot: str) -> None:
        self._check()
        self.driver.finish(serving, slot=slot)

    def task(self, version: str) -> Task:
        """What the version predicts, which decides what the canary compares: its
        contract's task (binary for a version registered without a contract)."""
        if version not in self._tasks:
            raw = self.registry.read_optional(version, "contract.json")
            self._tasks[version] = "binary" if raw is None else Contract.from_json(raw).task
        return self._tasks[version]

    def judged_by(self, state: RolloutState) -> RolloutSettings:
        """The policy a rollout is judged by to its end: the one it started under. A
        configuration changed mid-rollout (a `helm upgrade` restarting the controller)
        applies from the next rollout, so a step cannot change its weight or lose its
        accuracy requirement under a canary already at it."""
        return state.policy or self.policy

    def production_slot(self) -> str:
        """The slot production serves from: where the last rollout left it."""
        state = self.state()
        if state is None:
            return SLOTS[0]
        return state.serving_slot if state.done else state.stable_slot

    # --- starting -----------------------------------------------------------------

    def start(self, canary: str) -> RolloutState:
        """Start a canary of `canary` against production (or promote it if there is none)."""
        self._startable(canary)  # refused with the reason before any lock is taken
        with self._acting():
            canary, stable, current = self._startable(canary)
            if stable is None:
                return self._direct(
                    canary,
                    None,
                    current,
                    "nothing was in production: the first model goes straight in",
                    None,
                )
            state = self._save(self._new(canary, stable, self.policy.weights[0], current), current)
            self._started(state)
            self._set_traffic(state, state.weight)
            log.info("canary %s at %d%% against %s", canary, state.weight, stable)
            return state

    def start_pod(self, pod_hash: str, change: str) -> RolloutState:
        """Start a canary of a new serving pod (`change` says how it differs), under the
        version in production: the canary's slot runs it, stable's keeps its pod."""
        with self._acting():
            current = self.state()
            if current is not None and not current.done:
                raise RolloutError(
                    f"a rollout of {current.canary} is already in progress; the new pod waits"
                )
            production = self.registry.resolve(PRODUCTION)
            if production is None:
                raise RolloutError("nothing is in production to canary a new pod under")
            state = self._new(production, production, self.policy.weights[0], current)
            state = self._save(
                state.model_copy(
                    update={
                        "rollout_id": f"{production}-pod-{int(self.clock())}",
                        "pod": change,
                        "pod_hash": pod_hash,
                        "reason": f"canary of the serving pod under {production}: {change}",
                    }
                ),
                current,
            )
            self._started(state)
            self._set_traffic(state, state.weight)
            log.info("canary of the serving pod (%s) at %d%%", change, state.weight)
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
        self, version: str, *, actor: str, reason: str = "deployed directly by hand"
    ) -> RolloutState:
        """Send all traffic to `version` now, with no canary steps; recorded like any rollout,
        with `actor` (the person and their command) as who moved production."""
        self._startable(version)
        with self._acting():
            version, stable, current = self._startable(version)
            return self._direct(version, stable, current, reason, actor)

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

    def _new(
        self, canary: str, stable: str | None, weight: int, previous: RolloutState | None
    ) -> RolloutState:
        now = self.clock()
        return RolloutState(
            # Production serves from where the last rollout left it.
            stable_slot=SLOTS[0] if previous is None else previous.serving_slot,
            rollout_id=f"{canary}-{int(now)}",
            model_name=self.registry.model_name,
            stable=stable,
            canary=canary,
            phase="progressing",
            step=0,
            weight=weight,
            step_started=now,
            started_at=iso_now(),
            updated_at=iso_now(),
            reason=f"canary of {canary} against {stable}",
            policy=self.policy,
        )

    def _direct(
        self,
        version: str,
        stable: str | None,
        current: RolloutState | None,
        reason: str,
        actor: str | None,
    ) -> RolloutState:
        # Saved as a rollout at 100% that is being promoted, so a crash in between is finished.
        state = self._save(
            self._new(version, stable, 100, current).model_copy(
                update={
                    "reason": reason,
                    "ending": "promoted",
                    "direct": True,
                    "decided_by": actor,
                }
            ),
            current,
        )
        return self._complete(state)

    # --- running ------------------------------------------------------------------

    def run(self) -> RolloutState:
        """Tick, holding the lock, until the rollout is promoted or rolled back."""
        with self.holding():
            while True:
                try:
                    state = self.tick()
                except RolloutConflict as conflict:
                    # A decision taken by hand meanwhile: read it at the next tick.
                    log.info("%s; reading the rollout again", conflict)
                    self.sleep(self.policy.interval_seconds)
                    continue
                if state.done:
                    return state

    def tick(self) -> RolloutState:
        """One look at the canary: wait, advance a step, promote, or roll back."""
        with self._acting():
            # Read under the lock: a state read before it may be a revision behind.
            state = self.state()
            if state is None:
                raise RolloutError(f"no rollout of {self.registry.model_name} to continue")
            if state.done:
                # Ended elsewhere (`flywheel rollback` from another shell): apply it here too.
                serving = state.canary if state.phase == "promoted" else state.stable
                if serving is not None:
                    self._serve(serving, state.serving_slot)
                return state
            if state.ending is not None:
                # Decided, by this controller before it died or by hand: see it through.
                return self._complete(state)
            production = self.registry.resolve(PRODUCTION)
            if production == state.canary and state.pod is None:
                # Promoted outside the controller: finish the job instead of judging again.
                return self._end(
                    state, "promoted", "production already pointed at the canary when resumed"
                )
            if production != state.stable:
                return self._end(
                    state,
                    "rolled_back",
                    f"production was moved to {production} outside this rollout",
                )
            if (state.rollout_id, state.revision) not in self._known:
                return self._resume(state)
            return self._look(state)

    def _resume(self, state: RolloutState) -> RolloutState:
        """Pick up a rollout this controller did not leave: started elsewhere, or by a
        controller that died in the middle of a step."""
        self._started(state)
        decided = [
            r for r in self._records(state, "rollout-step") if r.get("step") == state.step + 1
        ]
        if decided:
            # Killed between recording the step's decision and acting on it: follow it.
            record = decided[0]
            log.info(
                "%s step %d was decided before a restart: %s",
                state.canary,
                state.step + 1,
                record["decision"],
            )
            stable = record.get("stable") or {}
            measured = {k: v for k, v in stable.items() if k in Window.model_fields}
            return self._decide(state, record["decision"], record["reason"], Window(**measured))
        # The step goes on from its recorded start, on the wall clock: a controller that
        # keeps dying cannot extend it. The next look applies the traffic again.
        self._known.add((state.rollout_id, state.revision))
        holder = f" by {self.lock.holder}" if self.lock is not None else ""
        self._record(
            state,
            "rollout-resume",
            {
                "step": state.step + 1,
                "elapsed_seconds": round(self.clock() - state.step_started, 3),
                "reason": f"picked up{holder}: the controller that drove it stopped "
                "(killed, or its lock expired); the step goes on from its recorded start",
            },
        )
        log.info(
            "resumed %s at %d%%, %.0fs into step %d",
            state.canary,
            state.weight,
            self.clock() - state.step_started,
            state.step + 1,
        )
        return state

    def _started(self, state: RolloutState) -> None:
        """Write the start record that a controller killed just after the start left out."""
        if not state.direct and not self._records(state, "rollout-start"):
            pod = {"pod": state.pod} if state.pod is not None else {}
            self._record(
                state,
                "rollout-start",
                {"stable": state.stable, "steps": list(self.judged_by(state).weights), **pod},
            )

    def _look(self, state: RolloutState) -> RolloutState:
        assert state.stable is not None  # only a first model has none, and it never progresses
        elapsed = self.clock() - state.step_started
        try:
            restored = self._set_traffic(state, state.weight)
            stable, canary = self.driver.measure(state.step_started)
            task = self.task(state.canary)
        except (RolloutConflict, ControllerBusy):
            raise
        except RolloutError as error:
            # The metrics server or the API server failed: this look judges nothing.
            return self._inconclusive(state, str(error), elapsed)
        except Exception as error:
            # A failure the driver did not foresee is a look that could not measure too:
            # were it to stop the controller, each restart would resume the step and
            # fail again, and its timeout would never be reached.
            log.exception("%s: the driver failed", state.canary)
            return self._inconclusive(state, f"{type(error).__name__}: {error}", elapsed)
        policy = self.judged_by(state)
        # One yardstick a step, so each check runs one confidence sequence a step, as its
        # share of the budget assumes: stable's own window, except at 100%, where stable
        # serves nothing and what it did in the last step that sent it traffic stands in.
        yardstick = stable
        if state.weight >= 100 and state.baseline is not None:
            yardstick = state.baseline
        accuracy = policy.step_accuracy(state.step)
        verdict = analyse(yardstick, canary, policy, elapsed, accuracy, task)
        if self.on_tick:
            self.on_tick(state, verdict)
        measured = {
            "step": state.step + 1,
            "weight": state.weight,
            "elapsed_seconds": round(elapsed, 3),
            "reason": verdict.reason,
            "stable": {
                "version": state.stable,
                "from_earlier_step": yardstick is not stable,
                **yardstick.model_dump(mode="json"),
            },
            "canary": {"version": state.canary, **canary.model_dump(mode="json")},
            "checks": [c.model_dump(mode="json") for c in verdict.checks],
        }
        note = {"restored": restored} if restored else {}
        self._record(state, "rollout-look", {"action": verdict.action, **measured, **note})
        if state.inconclusive:
            state = self._save(state.model_copy(update={"inconclusive": 0}), state)
        if verdict.action == "wait":
            self.sleep(self.policy.interval_seconds)
            return state
        # Recorded before the state moves: the record is the decision a resumed controller follows.
        held = {"accuracy": accuracy, **policy.checks.model_dump(mode="json")}
        self._record(
            state, "rollout-step", {"decision": verdict.action, **measured, "policy": held}
        )
        return self._decide(state, verdict.action, verdict.reason, yardstick)

    def _inconclusive(self, state: RolloutState, why: str, elapsed: float) -> RolloutState:
        """A look that could not measure: recorded, counted, and the canary rolled back once
        `checks.max_inconclusive` of them come in a row or the step's time is up."""
        policy = self.judged_by(state)
        count, limit = state.inconclusive + 1, policy.checks.max_inconclusive
        step = state.step + 1
        self._record(
            state,
            "rollout-look",
            {
                "step": step,
                "weight": state.weight,
                "elapsed_seconds": round(elapsed, 3),
                "action": "inconclusive",
                "reason": why,
                "inconclusive": count,
                "limit": limit,
            },
        )
        log.warning("%s: look %d/%d could not measure: %s", state.canary, count, limit, why)
        if count >= limit:
            reason = f"{count} looks in a row could not measure (the limit is {limit}): {why}"
        elif elapsed > policy.step_timeout_seconds:
            reason = f"step {step} timed out after {elapsed:.0f}s while its looks could not measure: {why}"
        else:
            state = self._save(state.model_copy(update={"inconclusive": count}), state)
            self.sleep(self.policy.interval_seconds)
            return state
        self._record(
            state,
            "rollout-step",
            {"step": step, "weight": state.weight, "decision": "rollback", "reason": reason},
        )
        return self._end(state, "rolled_back", reason)

    def _decide(
        self, state: RolloutState, action: str, reason: str, yardstick: Window
    ) -> RolloutState:
        """Act on a step's recorded decision."""
        if action == "rollback":
            return self._end(state, "rolled_back", reason)
        steps = self.judged_by(state).weights
        if state.step + 1 < len(steps):
            weight = steps[state.step + 1]
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
            self._set_traffic(state, weight)
            log.info("canary %s advanced to %d%%", state.canary, weight)
            return state
        return self._end(state, "promoted", "every step passed")

    # --- endings ------------------------------------------------------------------

    def _end(self, state: RolloutState, ending: Ending, reason: str) -> RolloutState:
        """Decide the end: saved before anything moves, so a controller killed while
        acting on it completes it when restarted. The controller decides it, not a person."""
        return self._complete(
            self._save(
                state.model_copy(update={"ending": ending, "reason": reason, "decided_by": None}),
                state,
            )
        )

    def _complete(self, state: RolloutState) -> RolloutState:
        """Act on the saved ending, then confirm it; every part is safe to do again."""
        assert state.ending is not None
        serving: str | None
        if state.ending == "promoted":
            if self.registry.resolve(PRODUCTION) != state.canary:
                self._check()
                try:
                    self.registry.move_alias(
                        PRODUCTION,
                        state.canary,
                        expected=state.stable,
                        reason=f"rollout: {state.reason}",
                        actor=state.actor,
                    )
                except AliasConflict as error:
                    return self._end(state, "rolled_back", f"could not promote: {error}")
            if state.stable is not None and not state.direct:
                # The warm canary takes all the traffic first; the old slot is retired after,
                # so serving capacity never drops and no promoted pod restarts.
                self._set_traffic(state, 100)
            serving = state.canary
        else:
            if state.stable is not None:
                self._set_traffic(state, 0)
            serving = state.stable
        if serving is not None:
            self._serve(serving, state.serving_slot)
        self._started(state)
        kind = f"rollout-{state.ending.replace('_', '-')}"
        if not self._records(state, kind):
            self._record(
                state, kind, {"reason": state.reason, "stable": state.stable, "actor": state.actor}
            )
        final = self._save(
            state.model_copy(
                update={"phase": state.ending, "weight": 100 if state.ending == "promoted" else 0}
            ),
            state,
        )
        log.info("%s %s: %s", state.canary, state.ending.replace("_", " "), state.reason)
        return final

    # --- by hand --------------------------------------------------------------------

    def promote(self, reason: str = "promoted by hand", *, actor: str) -> RolloutState:
        """Promote the rollout in progress now, skipping the remaining steps; `actor` (the
        person and their command) is saved with the decision and names who moved production.

        If another controller holds the lock, the decision is saved and that
        controller acts on it at its next tick; the state returned is not done yet.
        """
        return self._by_hand("promoted", reason, actor)

    def rollback(self, reason: str = "rolled back by hand", *, actor: str) -> RolloutState:
        """Roll back the rollout in progress now (see `promote` for `actor` and a held lock)."""
        return self._by_hand("rolled_back", reason, actor)

    def _by_hand(self, ending: Ending, reason: str, actor: str) -> RolloutState:
        try:
            with self._acting():
                return self._complete(self._decided(ending, reason, actor))
        except ControllerBusy:
            state = self._decided(ending, reason, actor)
            log.info(
                "%s: the controller holding the lock ends the rollout", self.registry.model_name
            )
            return state

    def _decided(self, ending: Ending, reason: str, actor: str) -> RolloutState:
        """The rollout in progress with `ending` saved (a few tries if a controller writes too)."""
        for _ in range(3):
            state = self._in_progress()
            if state.ending == ending:
                return state
            if state.ending is not None:
                raise RolloutError(
                    f"{state.canary} is already being {state.ending.replace('_', ' ')}: {state.reason}"
                )
            try:
                # Saved even without the lock: a create-only revision, which the holder reads.
                return self._save(
                    state.model_copy(
                        update={"ending": ending, "reason": reason, "decided_by": actor}
                    ),
                    state,
                    locked=False,
                )
            except RolloutConflict:
                continue
        raise RolloutConflict(f"the rollout of {self.registry.model_name} kept changing; try again")

    def _in_progress(self) -> RolloutState:
        state = self.state()
        if state is None or state.done:
            raise RolloutError(f"no rollout of {self.registry.model_name} is in progress")
        return state
