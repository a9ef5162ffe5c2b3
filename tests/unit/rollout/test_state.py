"""A rollout's state: where production serves from as each rollout ends, and the steps."""

from __future__ import annotations

import pytest

from flywheel.config import RolloutSettings
from flywheel.rollout.state import Ending, Phase, RolloutState, iso_now


def _state(phase: Phase = "progressing", **update: object) -> RolloutState:
    return RolloutState(
        rollout_id="v2-1",
        model_name="m",
        stable="v1",
        canary="v2",
        phase=phase,
        step=0,
        weight=10,
        step_started=0.0,
        started_at=iso_now(),
        updated_at=iso_now(),
        reason="canary of v2 against v1",
        stable_slot="b",
    ).model_copy(update=update)


def test_the_canary_runs_in_the_slot_stable_does_not() -> None:
    assert _state().canary_slot == "a"
    assert _state(stable_slot="a").canary_slot == "b"


@pytest.mark.parametrize(
    ("phase", "ending", "direct", "slot"),
    [
        ("progressing", None, False, "b"),  # undecided: production is stable's
        ("promoted", None, False, "a"),  # a promoted canary serves on from its own slot
        ("progressing", "promoted", False, "a"),  # decided, not yet confirmed: the same
        ("rolled_back", None, False, "b"),
        ("progressing", "rolled_back", False, "b"),
        ("promoted", None, True, "b"),  # a direct deployment replaces stable in place
    ],
)
def test_production_serves_from_the_slot_the_decided_ending_leaves_it_in(
    phase: Phase, ending: Ending | None, direct: bool, slot: str
) -> None:
    assert _state(phase, ending=ending, direct=direct).serving_slot == slot


def test_only_a_promoted_or_rolled_back_rollout_is_done() -> None:
    assert not _state().done
    assert not _state(ending="promoted").done  # decided, still to be acted on
    assert _state("promoted").done
    assert _state("rolled_back").done


def test_each_steps_weight_is_read_from_a_number_or_a_step_object() -> None:
    policy = RolloutSettings(steps=(10, {"weight": 50, "accuracy": "required"}, 100))
    assert policy.weights == (10, 50, 100)


def test_a_revision_reads_back_as_it_was_written() -> None:
    state = _state(ending="rolled_back", inconclusive=3, pod="image x -> y", pod_hash="abc")
    assert RolloutState.model_validate_json(state.model_dump_json()) == state
