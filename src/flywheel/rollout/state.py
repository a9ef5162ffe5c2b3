"""A rollout's state: one revision of it, as the controller writes it to the store.

The controller's state lives in the object store as create-only revisions
(`rollouts/<model>/<rev>.json`), like the registry's aliases: a writer that loses
the race for the next revision gets RolloutConflict and reads the state again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from flywheel.config import RolloutSettings
from flywheel.errors import FlywheelError
from flywheel.records import Record
from flywheel.rollout.analysis import Window
from flywheel.rollout.slots import SLOTS, other_slot

Phase = Literal["progressing", "promoted", "rolled_back"]
Ending = Literal["promoted", "rolled_back"]


class RolloutError(FlywheelError, RuntimeError):
    """A rollout cannot start or continue; nothing was changed."""


class RolloutConflict(RolloutError):
    """Another process wrote the rollout's next revision first; read it again."""


class RolloutState(Record):
    """One revision of a model's rollout."""

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
    # for the 100% step, which sends it none.
    baseline: Window | None = None
    # The end decided and saved before acting on it; `phase` confirms it once done.
    ending: Ending | None = None
    # Who decided the ending by hand (`ada (flywheel promote)`), named as the actor of the
    # alias revision it makes; None: the controller decided (`rollout <rollout id>`).
    decided_by: str | None = None
    # Deployed straight to production, with no canary steps (and no start record).
    direct: bool = False
    # Looks in a row that could not measure; the canary goes at checks.max_inconclusive.
    inconclusive: int = 0
    # The slot stable serves from; the canary runs in the other one.
    stable_slot: str = SLOTS[0]
    # A canary of the serving pod (a new image, new resources) under production's version,
    # rather than of a model version: what changed, and the new pod's hash.
    pod: str | None = None
    pod_hash: str | None = None
    # The canary policy it started under, kept to its end (None: written before it was).
    policy: RolloutSettings | None = None

    @property
    def done(self) -> bool:
        """Promoted or rolled back."""
        return self.phase != "progressing"

    @property
    def actor(self) -> str:
        """Who ends this rollout, as its alias revision and ending record name them."""
        return self.decided_by or f"rollout {self.rollout_id}"

    @property
    def canary_slot(self) -> str:
        """The slot the canary runs in."""
        return other_slot(self.stable_slot)

    @property
    def serving_slot(self) -> str:
        """The slot production serves from once this rollout ends as decided: a promoted
        canary serves on from its own slot; a direct deployment replaces stable in place."""
        if (self.ending or self.phase) == "promoted" and not self.direct:
            return self.canary_slot
        return self.stable_slot


def iso_now() -> str:
    """Now, in UTC, to the second: when a revision was written."""
    return datetime.now(UTC).isoformat(timespec="seconds")
