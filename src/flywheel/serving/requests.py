"""Prediction requests checked against a model's data contract, with errors that name the feature.

Accepted payloads (the Seldon protocol's two JSON forms for tabular rows):

    {"data": {"names": ["income", ...], "ndarray": [[52000.0, ...], ...]}}
    {"jsonData": [{"income": 52000.0, ...}, ...]}   (or {"jsonData": {"instances": [...]}})
    {"jsonData": {"income": 52000.0, ...}}          (one record, as SeldonClient sends json_data)

Anything else, and any value the model could not score correctly, is a BadRequest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flywheel.contract import Contract
from flywheel.errors import FlywheelError

_MAX_FLOAT = 1.7976931348623157e308
# Up to this many rows, values are checked one by one (quicker than by column for a few).
_FEW_ROWS = 16
# exact types: bool is an int subclass, and no number
_NUMBER_TYPES = frozenset({int, float, type(None)})


def _short(value: Any, limit: int = 80) -> str:
    """A value as an error message quotes it: a megabyte string is not echoed back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _unshown(value: Any) -> str:
    """A pii column's value as a message names it: its type, never the value (seldon-core
    logs a refusal's message, and the raw identifier must not reach the logs)."""
    return f"{type(value).__name__} (pii: value not shown)"


class BadRequest(FlywheelError, ValueError):
    """The request cannot be scored; the message says which feature and why."""


@dataclass(frozen=True)
class RequestSchema:
    """What a request must look like for one model version."""

    numeric: tuple[str, ...]
    categorical: dict[str, frozenset[str]]
    max_rows: int
    # Features tagged pii: a refusal never quotes their values or their known categories.
    pii: frozenset[str] = frozenset()

    @classmethod
    def from_contract(cls, contract: Contract, max_rows: int) -> RequestSchema:
        """Features and allowed categories from the contract stored with the model."""
        return cls(
            numeric=tuple(contract.numeric),
            categorical={n: frozenset(p.fractions) for n, p in contract.categorical.items()},
            max_rows=max_rows,
            pii=frozenset(n for n, tags in contract.columns.items() if tags.pii),
        )

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Feature names in model input order."""
        return (*self.numeric, *self.categorical)

    @cached_property
    def _keys(self) -> frozenset[str]:
        return frozenset(self.names)

    @cached_property
    def _allowed(self) -> tuple[frozenset[str | None], ...]:
        return tuple(allowed | {None} for allowed in self.categorical.values())

    def rows(self, payload: Any) -> list[Sequence[Any]]:
        """The request's rows as lists in `names` order, before value checks."""
        if not isinstance(payload, Mapping):
            raise BadRequest(f"the request must be a JSON object, not {type(payload).__name__}")
        if "data" in payload:
            data = payload["data"]
            if not isinstance(data, Mapping) or "ndarray" not in data:
                raise BadRequest('"data" must hold "names" and "ndarray" (a list of rows)')
            return self._from_ndarray(data.get("names"), data["ndarray"])
        if "jsonData" in payload:
            records = payload["jsonData"]
            if isinstance(records, Mapping):
                # {"instances": [...]}, unless "instances" is a feature: then one record.
                one = "instances" not in records or "instances" in self.names
                records = [records] if one else records["instances"]
            if not isinstance(records, list):
                raise BadRequest(
                    '"jsonData" must be a record, a list of records or {"instances": [...]}'
                )
            self._count(records)
            return [self._from_record(i, r) for i, r in enumerate(records)]
        raise BadRequest('the request has neither "data" nor "jsonData"')

    def _count(self, rows: Sequence[Any]) -> None:
        if not rows:
            raise BadRequest("the request holds no rows")
        if len(rows) > self.max_rows:
            raise BadRequest(
                f"the request holds {len(rows)} rows; at most {self.max_rows} are allowed"
            )

    def _from_ndarray(self, names: Any, ndarray: Any) -> list[Sequence[Any]]:
        if not isinstance(ndarray, list):
            raise BadRequest('"ndarray" must be a list of rows')
        self._count(ndarray)
        expected = self.names
        if names is None:
            order = list(range(len(expected)))
        else:
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise BadRequest('"names" must be a list of feature names')
            unknown = [n for n in names if n not in expected]
            missing = [n for n in expected if n not in names]
            if unknown:
                raise BadRequest(
                    f"unknown feature(s) {', '.join(unknown)}; expected {', '.join(expected)}"
                )
            if missing:
                raise BadRequest(f"missing feature(s) {', '.join(missing)}")
            if len(set(names)) != len(names):
                raise BadRequest('a feature name appears twice in "names"')
            order = [names.index(n) for n in expected]
        for i, row in enumerate(ndarray):
            if not isinstance(row, list):
                raise BadRequest(f"row {i} must be a list of {len(expected)} values")
            if len(row) != len(expected):
                raise BadRequest(
                    f"row {i} has {len(row)} values; the model takes {len(expected)}: {', '.join(expected)}"
                )
        if order == list(range(len(expected))):
            return list(ndarray)  # already in order: the rows themselves, not copies
        return [[row[j] for j in order] for row in ndarray]

    def _from_record(self, i: int, record: Any) -> Sequence[Any]:
        if isinstance(record, dict) and record.keys() == self._keys:
            return [record[n] for n in self.names]
        if not isinstance(record, Mapping):
            raise BadRequest(f"record {i} must be an object of feature: value")
        unknown = [k for k in record if k not in self.names]
        if unknown:
            raise BadRequest(f"record {i}: unknown feature(s) {', '.join(map(str, unknown))}")
        missing = [n for n in self.names if n not in record]
        if missing:
            raise BadRequest(f"record {i}: missing feature(s) {', '.join(missing)}")
        return [record[n] for n in self.names]

    def checked(self, payload: Any) -> list[Sequence[Any]]:
        """The request's rows in `names` order, every value checked: numbers are int or
        float (finite) or None, categories a known string or None."""
        rows = self.rows(payload)
        # Column by column in C for a batch; the first bad value, and its message, come
        # from the row-by-row check, which is also the quicker one for a few rows.
        if len(rows) <= _FEW_ROWS or not self._all_valid(rows):
            self._check(rows)
        return rows

    def _all_valid(self, rows: list[Sequence[Any]]) -> bool:
        """True when every value is valid; False when some may not be (never wrongly True)."""
        import numpy as np

        columns = list(zip(*rows, strict=True))
        n_numeric = len(self.numeric)
        for values in columns[:n_numeric]:
            if not set(map(type, values)) <= _NUMBER_TYPES:
                return False
            try:
                numbers = np.array(values, dtype=np.float64)
            except (OverflowError, TypeError, ValueError):  # an integer beyond a float
                return False
            if np.count_nonzero(~np.isfinite(numbers)) != values.count(None):
                return False
            # An integer just beyond a float's range converts to the largest float, not an
            # error: at that magnitude the row-by-row check decides.
            if np.any(np.abs(numbers) >= _MAX_FLOAT):
                return False
        for allowed, values in zip(self._allowed, columns[n_numeric:], strict=True):
            try:
                if not allowed.issuperset(values):
                    return False
            except TypeError:  # a list or an object: unhashable, and no category
                return False
        return True

    def _check(self, rows: list[Sequence[Any]]) -> None:
        n_numeric = len(self.numeric)
        for i, row in enumerate(rows):
            for name, value in zip(self.numeric, row[:n_numeric], strict=True):
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise BadRequest(
                        f"row {i}: feature {name} must be a number, got {_short(value)}"
                    )
                # An integer beyond a float's range (JSON allows 1e400 written out) is no
                # number the model can take either.
                if isinstance(value, int) and not -_MAX_FLOAT <= value <= _MAX_FLOAT:
                    raise BadRequest(
                        f"row {i}: feature {name} must be finite, got an integer of {len(str(abs(value)))} digits"
                    )
                if not math.isfinite(value):
                    raise BadRequest(f"row {i}: feature {name} must be finite, got {value}")
            for (name, allowed), value in zip(
                self.categorical.items(), row[n_numeric:], strict=True
            ):
                if value is None:
                    continue
                if not isinstance(value, str):
                    shown = _unshown(value) if name in self.pii else _short(value)
                    raise BadRequest(
                        f"row {i}: feature {name} must be a string category, got {shown}"
                    )
                if value not in allowed and name in self.pii:
                    raise BadRequest(
                        f"row {i}: feature {name} has unknown category (pii: value not shown)"
                    )
                if value not in allowed:
                    raise BadRequest(
                        f"row {i}: feature {name} has unknown category {_short(value)}; "
                        f"known: {', '.join(sorted(allowed))}"
                    )
