"""The two slots a model is served from on a cluster: the SeldonDeployment's predictors.

Predictors are named by slot, never by role. Seldon copies a predictor's name and
labels onto its pods, so a promotion that renamed the canary to `stable` would
restart every pod of the version it promotes. Instead the canary's slot takes all
the traffic and serves on as production, and the old slot is retired; which slot
is stable is the rollout controller's state.
"""

from __future__ import annotations

SLOTS = ("a", "b")


def other_slot(slot: str) -> str:
    """The slot a canary of a version served from `slot` goes into."""
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]
