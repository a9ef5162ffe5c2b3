"""Request checks: every malformed or unscorable request is a BadRequest naming the problem."""

from __future__ import annotations

import math
from typing import Any

import pytest

from flywheel.serving.requests import BadRequest, RequestSchema

SCHEMA = RequestSchema(
    numeric=("income", "age"),
    categorical={"region": frozenset({"north", "south"})},
    max_rows=3,
)
NAMES = ["income", "age", "region"]


def test_both_json_forms_give_the_same_frame() -> None:
    by_rows = SCHEMA.frame(
        {"data": {"names": ["region", "age", "income"], "ndarray": [["north", 30, 50000.5]]}}
    )
    by_records = SCHEMA.frame({"jsonData": [{"income": 50000.5, "age": 30, "region": "north"}]})
    instances = SCHEMA.frame(
        {"jsonData": {"instances": [{"income": 50000.5, "age": 30, "region": "north"}]}}
    )
    assert by_rows.to_dict() == by_records.to_dict() == instances.to_dict()
    assert list(by_rows.columns) == NAMES
    assert by_rows["age"].dtype == "float64"


def test_a_single_record_as_json_data_is_one_row() -> None:
    # given one record as an object, as SeldonClient.predict(json_data=...) sends it
    record = {"income": 50000.5, "age": 30, "region": "north"}
    # when it is read
    one = SCHEMA.frame({"jsonData": record})
    # then it is the same one-row frame as the list form
    assert one.to_dict() == SCHEMA.frame({"jsonData": [record]}).to_dict()


def test_an_error_quotes_at_most_a_short_prefix_of_a_huge_value() -> None:
    with pytest.raises(BadRequest) as error:
        SCHEMA.frame({"data": {"names": NAMES, "ndarray": [[1, 2, "x" * 100_000]]}})
    assert len(str(error.value)) < 300 and "100002 characters" in str(error.value)


def test_nulls_are_left_for_the_model_to_impute() -> None:
    frame = SCHEMA.frame({"data": {"names": NAMES, "ndarray": [[None, 30, None]]}})
    assert math.isnan(frame.loc[0, "income"]) and frame.loc[0, "region"] is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2, 3], "must be a JSON object, not list"),
        ({"strData": "x"}, 'neither "data" nor "jsonData"'),
        ({"data": {"tensor": {}}}, '"data" must hold "names" and "ndarray"'),
        ({"data": {"names": NAMES, "ndarray": []}}, "the request holds no rows"),
        ({"jsonData": []}, "the request holds no rows"),
        ({"data": {"names": NAMES, "ndarray": [[1, 2, "north"]] * 4}}, "holds 4 rows; at most 3"),
        ({"data": {"names": NAMES, "ndarray": [[1, 2]]}}, "row 0 has 2 values; the model takes 3"),
        ({"data": {"names": NAMES, "ndarray": [5]}}, "row 0 must be a list"),
        (
            {"data": {"names": ["income", "age", "zone"], "ndarray": [[1, 2, "x"]]}},
            "unknown feature(s) zone",
        ),
        ({"data": {"names": ["income", "age"], "ndarray": [[1, 2]]}}, "missing feature(s) region"),
        (
            {"data": {"names": NAMES, "ndarray": [["lots", 2, "north"]]}},
            "feature income must be a number, got 'lots'",
        ),
        (
            {"data": {"names": NAMES, "ndarray": [[True, 2, "north"]]}},
            "feature income must be a number, got True",
        ),
        (
            {"data": {"names": NAMES, "ndarray": [[float("nan"), 2, "north"]]}},
            "feature income must be finite, got nan",
        ),
        (
            {"data": {"names": NAMES, "ndarray": [[1, float("inf"), "north"]]}},
            "feature age must be finite, got inf",
        ),
        (
            {"data": {"names": NAMES, "ndarray": [[1, 2, "mars"]]}},
            "feature region has unknown category 'mars'",
        ),
        (
            {"data": {"names": NAMES, "ndarray": [[1, 2, 7]]}},
            "feature region must be a string category, got 7",
        ),
        ({"jsonData": [{"income": 1, "age": 2}]}, "record 0: missing feature(s) region"),
        (
            {"jsonData": [{"income": 1, "age": 2, "region": "north", "x": 1}]},
            "record 0: unknown feature(s) x",
        ),
        ({"jsonData": "rows"}, '"jsonData" must be a record, a list of records'),
        (
            {"data": {"names": NAMES, "ndarray": [[10**400, 2, "north"]]}},
            "feature income must be finite, got an integer of 401 digits",
        ),
        (
            {"data": {"names": NAMES, "ndarray": [[1, 2, "x" * 100_000]]}},
            "feature region has unknown category 'xxxx",
        ),
    ],
)
def test_bad_requests_name_the_problem(payload: Any, message: str) -> None:
    with pytest.raises(BadRequest) as error:
        SCHEMA.frame(payload)
    assert message in str(error.value)
