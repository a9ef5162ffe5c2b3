"""Where a rollout's traffic goes: the driver the controller acts and measures through."""

from __future__ import annotations

from typing import Protocol

from flywheel.rollout.analysis import Window
from flywheel.rollout.slots import SLOTS
from flywheel.rollout.state import RolloutError


class Inconclusive(RolloutError):
    """A look could not measure (the metrics server is down or refused, the API server
    failed, or no series exists where traffic should flow): the look judges nothing."""


class Driver(Protocol):
    """Where the traffic actually goes: local microservices or a SeldonDeployment.

    A driver that runs each version in a slot of its own (a SeldonDeployment's
    predictors, `flywheel.rollout.slots`) serves stable from `slot` and the canary
    from the other one; a driver that routes by version ignores the slots.
    """

    def set_traffic(
        self, stable: str, canary: str, canary_weight: int, *, slot: str = SLOTS[0]
    ) -> str | None:
        """Send `canary_weight` percent of requests to `canary`, the rest to `stable` (in `slot`);
        say so when that undid a change made outside the controller (a hand edit)."""

    def measure(self, since: float) -> tuple[Window, Window]:
        """What the stable and canary predictors did since `since` (epoch seconds)."""

    def finish(self, serving: str, *, slot: str = SLOTS[0]) -> None:
        """Serve only `serving`, from `slot`, from now on (the promoted canary, or stable
        after a rollback); the other slot is retired."""


class StateOnlyDriver:
    """Moves no traffic: for a process that only reads or records rollout decisions.

    `flywheel promote`, `rollback`, `rollout status` and `rollout wait` with the
    local driver change or read the state in the store; the `flywheel deploy`
    process that runs the servers applies it at its next tick.
    """

    def set_traffic(
        self, stable: str, canary: str, canary_weight: int, *, slot: str = SLOTS[0]
    ) -> None:
        return None

    def measure(self, since: float) -> tuple[Window, Window]:
        return Window(), Window()

    def finish(self, serving: str, *, slot: str = SLOTS[0]) -> None:
        return None
