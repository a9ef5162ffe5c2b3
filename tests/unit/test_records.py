"""The base of every stored record: frozen, closed to unknown keys, not strict."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flywheel.records import Record


class _Point(Record):
    name: str
    values: tuple[float, ...] = ()


def test_a_record_is_frozen() -> None:
    point = _Point(name="a")
    with pytest.raises(ValidationError, match="Instance is frozen"):
        point.name = "b"  # type: ignore[misc]


def test_a_record_refuses_an_unknown_key() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        _Point.model_validate_json('{"name": "a", "colour": "red"}')


def test_a_record_coerces_as_pydantic_does_by_default() -> None:
    # given a list and ints where the record holds a tuple of floats (strict would refuse the list)
    point = _Point.model_validate({"name": "a", "values": [1, 2]})
    # then they are taken, as records built from computed values need
    assert point.values == (1.0, 2.0)
    assert _Point.model_validate_json(point.model_dump_json()) == point
