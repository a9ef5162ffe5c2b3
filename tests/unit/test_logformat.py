"""The logs' Parquet format: typed columns from the contract, compact keys, deterministic sampling."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import logformat


def _entry(request_id: str, inputs: list[list[object]], outputs: list[list[float]]) -> dict:
    return {
        "request_id": request_id,
        "time": 1767225600.5,
        "latency_ms": 1.25,
        "features": ["income", "region"],
        "inputs": inputs,
        "outputs": outputs,
    }


def test_a_request_is_one_row_per_served_row_with_typed_columns() -> None:
    # given a two-row request and a one-row one
    entries = [
        _entry("a", [[52000.0, "north"], [None, None]], [[0.2, 0.8], [0.6, 0.4]]),
        _entry("b", [[7, "south"]], [[1.0, 0.0]]),
    ]
    # when they are written and read back
    data = logformat.to_parquet(
        logformat.prediction_table(entries, ["income"], ["region"], 2), {"version": "v3"}
    )
    table = pq.read_table(io.BytesIO(data))
    # then each row is one table row, typed, and the file names its version
    assert table.num_rows == 3
    assert table.schema.field("in.income").type == pa.float64()
    assert table.schema.field("in.region").type == pa.string()
    assert table.column("in.income").to_pylist() == [52000.0, None, 7.0]
    assert table.column("_row").to_pylist() == [0, 1, 0]
    assert table.column("out.1").to_pylist() == [0.8, 0.4, 0.0]
    assert table.schema.metadata[b"version"] == b"v3"


def test_a_value_of_the_wrong_type_is_null_not_an_error() -> None:
    entries = [_entry("a", [["52000", 3]], [[0.5, 0.5]])]
    table = logformat.prediction_table(entries, ["income"], ["region"], 2)
    assert table.column("in.income").to_pylist() == [None]
    assert table.column("in.region").to_pylist() == [None]


def test_feedback_keeps_numbers_and_class_names_apart() -> None:
    table = logformat.feedback_table(
        [{"request_id": "a", "time": 2.0, "labels": [1, "late", True]}]
    )
    assert table.column("_label_number").to_pylist() == [1.0, None, 1.0]
    assert table.column("_label_text").to_pylist() == [None, "late", None]
    assert set(table.column("_key").to_pylist()) == {logformat.request_key("a")}


def test_the_key_is_stable_and_sampling_agrees_for_prediction_and_feedback() -> None:
    keys = [logformat.request_key(f"request-{i}") for i in range(20_000)]
    assert logformat.request_key("request-0") == keys[0]  # the same id, the same key
    share = sum(logformat.sampled(k, 0.25) for k in keys) / len(keys)
    assert 0.23 < share < 0.27  # a quarter of requests, chosen by the hash
    assert all(logformat.sampled(k, 1.0) for k in keys[:100])
    assert not any(logformat.sampled(k, 0.0) for k in keys[:100])
