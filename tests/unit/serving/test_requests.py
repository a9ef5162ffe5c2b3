"""Request checks: every malformed or unscorable request is a BadRequest naming the problem."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from flywheel.config import ColumnTags
from flywheel.contract import CategoricalProfile, Contract, NumericProfile
from flywheel.serving.requests import BadRequest, RequestSchema

SCHEMA = RequestSchema(
    numeric=("income", "age"),
    categorical={"region": frozenset({"north", "south"})},
    max_rows=3,
)
NAMES = ["income", "age", "region"]


def test_both_json_forms_give_the_same_rows_in_model_order() -> None:
    by_rows = SCHEMA.checked(
        {"data": {"names": ["region", "age", "income"], "ndarray": [["north", 30, 50000.5]]}}
    )
    by_records = SCHEMA.checked({"jsonData": [{"income": 50000.5, "age": 30, "region": "north"}]})
    instances = SCHEMA.checked(
        {"jsonData": {"instances": [{"region": "north", "age": 30, "income": 50000.5}]}}
    )
    assert (
        [list(r) for r in by_rows] == [list(r) for r in by_records] == [list(r) for r in instances]
    )
    assert list(by_rows[0]) == [50000.5, 30, "north"]


def test_a_single_record_as_json_data_is_one_row() -> None:
    # given one record as an object, as SeldonClient.predict(json_data=...) sends it
    record = {"income": 50000.5, "age": 30, "region": "north"}
    # when it is read
    one = SCHEMA.checked({"jsonData": record})
    # then it is the same one row as the list form
    assert one == SCHEMA.checked({"jsonData": [record]}) == [[50000.5, 30, "north"]]


def test_an_error_quotes_at_most_a_short_prefix_of_a_huge_value() -> None:
    with pytest.raises(BadRequest) as error:
        SCHEMA.checked({"data": {"names": NAMES, "ndarray": [[1, 2, "x" * 100_000]]}})
    assert len(str(error.value)) < 300 and "100002 characters" in str(error.value)


def test_nulls_are_left_for_the_model_to_impute() -> None:
    assert SCHEMA.checked({"data": {"names": NAMES, "ndarray": [[None, 30, None]]}}) == [
        [None, 30, None]
    ]


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
        SCHEMA.checked(payload)
    assert message in str(error.value)


BATCH = RequestSchema(numeric=SCHEMA.numeric, categorical=SCHEMA.categorical, max_rows=1000)
GOOD = [50000.5, 30, "north"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["lots", 2, "north"], "row 17: feature income must be a number, got 'lots'"),
        ([1, True, "north"], "row 17: feature age must be a number, got True"),
        ([float("nan"), 2, "north"], "row 17: feature income must be finite, got nan"),
        ([1, float("-inf"), "north"], "row 17: feature age must be finite, got -inf"),
        ([10**400, 2, "north"], "row 17: feature income must be finite, got an integer of 401"),
        ([1, 2, "mars"], "row 17: feature region has unknown category 'mars'"),
        ([1, 2, 7], "row 17: feature region must be a string category, got 7"),
        ([1, 2, ["north"]], "row 17: feature region must be a string category, got ['north']"),
        ([[1], 2, "north"], "row 17: feature income must be a number, got [1]"),
    ],
)
def test_a_batch_is_checked_by_column_with_the_message_of_its_first_bad_value(
    bad: list[Any], message: str
) -> None:
    # given a batch of rows (checked column by column) whose row 17 has one bad value,
    # and row 18 another
    rows = [GOOD] * 17 + [bad, [1, 2, "venus"]] + [GOOD] * 10
    # when it is checked, then the refusal names the first, as the row-by-row check does
    with pytest.raises(BadRequest) as error:
        BATCH.checked({"data": {"names": NAMES, "ndarray": rows}})
    assert str(error.value).startswith(message)


def test_a_valid_batch_passes_the_column_checks_unchanged() -> None:
    # given 1,000 valid rows with missing values, integers and both forms
    rows = [[float(i), i if i % 3 else None, ("north", "south", None)[i % 3]] for i in range(1000)]
    records = [dict(zip(NAMES, r, strict=True)) for r in rows]
    # when checked, then they are the rows as sent, in model order
    assert BATCH.checked({"data": {"names": NAMES, "ndarray": rows}}) == rows
    assert BATCH.checked({"jsonData": records}) == rows


def test_an_integer_just_beyond_a_float_is_refused_alone_and_in_a_batch() -> None:
    # given an integer a float cannot hold that numpy would round to the largest float
    bad = [int(sys.float_info.max) + 1, 2, "north"]
    # when it is sent alone and as row 0 of a 17-row batch (checked column by column)
    messages = []
    for rows in ([bad], [bad] + [GOOD] * 16):
        with pytest.raises(BadRequest) as error:
            BATCH.checked({"data": {"names": NAMES, "ndarray": rows}})
        messages.append(str(error.value))
    # then both are refused with the same message
    assert messages[0] == messages[1]
    assert messages[0] == "row 0: feature income must be finite, got an integer of 309 digits"


def test_the_largest_float_itself_is_still_a_number_in_a_batch() -> None:
    rows = [[sys.float_info.max, -sys.float_info.max, "north"]] * 17
    assert BATCH.checked({"data": {"names": NAMES, "ndarray": rows}}) == rows


HASHED = ("3f9a" * 16, "c0de" * 16)  # a pii feature is served as its HMAC


def _pii_schema() -> RequestSchema:
    contract = Contract(
        time_column="day",
        label="defaulted",
        numeric={
            "income": NumericProfile(
                null_rate=0, min=0, max=1, mean=0.5, std=0.1, edges=(0, 1), fractions=(1,)
            )
        },
        categorical={
            "customer": CategoricalProfile(null_rate=0, fractions=dict.fromkeys(HASHED, 0.5)),
            "region": CategoricalProfile(null_rate=0, fractions={"north": 1.0}),
        },
        positive_rate=0.5,
        rows=2,
        batches=("b1",),
        columns={"customer": ColumnTags(pii=True)},
    )
    return RequestSchema.from_contract(contract, max_rows=100)


@pytest.mark.parametrize(
    ("customer", "message"),
    [
        ("900-12-3456", "row 0: feature customer has unknown category (pii: value not shown)"),
        (900123456, "row 0: feature customer must be a string category, got int (pii: value"),
    ],
)
@pytest.mark.parametrize("rows", [1, 17])
def test_a_refused_pii_value_is_not_quoted_nor_its_known_categories(
    customer: Any, message: str, rows: int
) -> None:
    # given a contract whose categorical feature customer is tagged pii
    schema = _pii_schema()
    assert schema.pii == {"customer"}
    # when a client sends the raw identifier, not its hash, alone or in a batch
    batch = [[1.0, customer, "north"]] + [[1.0, HASHED[0], "north"]] * (rows - 1)
    with pytest.raises(BadRequest) as error:
        schema.checked({"data": {"names": ["income", "customer", "region"], "ndarray": batch}})
    # then the refusal names the feature, but neither the value nor the known hashes
    text = str(error.value)
    assert text.startswith(message)
    assert "900" not in text and "known" not in text.replace("unknown", "")
    assert not any(h in text for h in HASHED)


def test_an_untagged_feature_still_quotes_its_value_beside_a_pii_one() -> None:
    with pytest.raises(BadRequest, match="unknown category 'mars'; known: north"):
        _pii_schema().checked(
            {"jsonData": {"income": 1.0, "customer": HASHED[1], "region": "mars"}}
        )
