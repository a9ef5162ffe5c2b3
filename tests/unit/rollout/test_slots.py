"""The two slots a model is served from."""

from __future__ import annotations

from flywheel.rollout.slots import SLOTS, other_slot


def test_each_slot_has_the_other_as_its_canarys() -> None:
    assert SLOTS == ("a", "b")
    assert [other_slot(s) for s in SLOTS] == ["b", "a"]
    assert other_slot(other_slot("a")) == "a"
