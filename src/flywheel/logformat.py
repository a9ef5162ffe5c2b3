"""The prediction and feedback logs' Parquet format: one table row per served row.

Serving writes it (`serving.predictionlog`), monitoring reads it (`monitoring.logs`), and
`make bench-monitor` writes its rows with the same functions. A prediction file has the
columns

    _request_id  string    the request's id (Seldon's puid, or one made up)
    _key         uint64    `request_key` of the id: a compact join key, and the sampling hash
    _row         int32     the row's place in its request
    _time        float64   when the request was served (Unix seconds)
    _latency_ms  float64   the request's scoring time (null when unknown)
    in.<name>    float64 for a numeric feature, string for a categorical one (typed from the
                 contract; null when missing)
    out.<i>      float64   the row's answer: a classifier's probability of its i-th class (the
                 model's classes_ order), a regression's predicted value as out.0

and a feedback file `_request_id`, `_key`, `_row`, `_time`, and the true label as
`_label_number` (a number or a bool) or `_label_text` (a class name). The model and version
are the file's (its path), and its key-value metadata repeats them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

REQUEST_ID = "_request_id"
KEY = "_key"
ROW = "_row"
TIME = "_time"
LATENCY = "_latency_ms"
LABEL_NUMBER = "_label_number"
LABEL_TEXT = "_label_text"
INPUT = "in."
OUTPUT = "out."
SUFFIX = ".parquet"
# A minute's file is small, and read whole by every look that has not summarised it: snappy
# decodes one (350 rows, 16 columns) in half zstd's time, for files a quarter larger. A day's
# compacted file, written once and rarely read, is zstd: a fifth smaller.
COMPRESSION = "snappy"
COMPACTED_COMPRESSION = "zstd"
_KEYS = 2**64


def request_key(request_id: str) -> int:
    """A request id's 64-bit key: the first 8 bytes of its BLAKE2b digest. Uniform over
    [0, 2**64), so a share of keys is a share of requests chosen at random."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def sampled(key: int, share: float) -> bool:
    """Whether a request of `key` is in the logged `share` of requests: the same answer for
    its prediction and its feedback, so a logged prediction's label is logged too."""
    return share >= 1.0 or key < int(share * _KEYS)


def input_column(feature: str) -> str:
    """The column of one feature's served values."""
    return f"{INPUT}{feature}"


def output_column(i: int) -> str:
    """The column of the i-th output of each row."""
    return f"{OUTPUT}{i}"


def prediction_schema(numeric: Sequence[str], categorical: Sequence[str], width: int) -> pa.Schema:
    """The columns of a prediction file for these features and `width` outputs per row."""
    import pyarrow as pa

    return pa.schema(
        [
            (REQUEST_ID, pa.string()),
            (KEY, pa.uint64()),
            (ROW, pa.int32()),
            (TIME, pa.float64()),
            (LATENCY, pa.float64()),
            *((input_column(f), pa.float64()) for f in numeric),
            *((input_column(f), pa.string()) for f in categorical),
            *((output_column(i), pa.float64()) for i in range(width)),
        ]
    )


FEEDBACK_COLUMNS = (REQUEST_ID, KEY, ROW, TIME, LABEL_NUMBER, LABEL_TEXT)


def feedback_schema() -> pa.Schema:
    """The columns of a feedback file."""
    import pyarrow as pa

    return pa.schema(
        [
            (REQUEST_ID, pa.string()),
            (KEY, pa.uint64()),
            (ROW, pa.int32()),
            (TIME, pa.float64()),
            (LABEL_NUMBER, pa.float64()),
            (LABEL_TEXT, pa.string()),
        ]
    )


def prediction_table(
    entries: Sequence[dict[str, Any]],
    numeric: Sequence[str],
    categorical: Sequence[str],
    width: int,
) -> pa.Table:
    """Log records as serving makes them (request_id, time, latency_ms, features, inputs,
    outputs) as one table, a row per served row. Inputs are looked up by the record's feature
    names; a value that does not fit its column's type is null."""
    import pyarrow as pa

    ids: list[str] = []
    keys: list[int] = []
    rows: list[int] = []
    times: list[float] = []
    latencies: list[float | None] = []
    numbers: dict[str, list[float | None]] = {f: [] for f in numeric}
    texts: dict[str, list[str | None]] = {f: [] for f in categorical}
    outputs: list[list[float]] = [[] for _ in range(width)]
    for entry in entries:
        request_id = str(entry["request_id"])
        key = request_key(request_id)
        places = {name: i for i, name in enumerate(entry["features"])}
        for r, (values, answer) in enumerate(zip(entry["inputs"], entry["outputs"], strict=True)):
            ids.append(request_id)
            keys.append(key)
            rows.append(r)
            times.append(float(entry["time"]))
            latencies.append(entry.get("latency_ms"))
            for name, column in numbers.items():
                at = places.get(name)
                column.append(_number(values[at]) if at is not None else None)
            for name, text in texts.items():
                at = places.get(name)
                value = values[at] if at is not None else None
                text.append(value if isinstance(value, str) else None)
            answer = answer if isinstance(answer, list | tuple) else [answer]
            for i in range(width):
                outputs[i].append(float(answer[i]) if i < len(answer) else float("nan"))
    schema = prediction_schema(numeric, categorical, width)
    columns: list[Any] = [ids, keys, rows, times, latencies]
    columns += [numbers[f] for f in numeric] + [texts[f] for f in categorical] + outputs
    return pa.Table.from_arrays(
        [pa.array(c, type=field.type) for c, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


def feedback_table(entries: Sequence[dict[str, Any]]) -> pa.Table:
    """Feedback records (request_id, time, labels) as one table, a row per labelled row."""
    import pyarrow as pa

    ids: list[str] = []
    keys: list[int] = []
    rows: list[int] = []
    times: list[float] = []
    numbers: list[float | None] = []
    texts: list[str | None] = []
    for entry in entries:
        request_id = str(entry["request_id"])
        key = request_key(request_id)
        for r, label in enumerate(entry["labels"]):
            ids.append(request_id)
            keys.append(key)
            rows.append(r)
            times.append(float(entry["time"]))
            numbers.append(None if isinstance(label, str) else float(label))
            texts.append(label if isinstance(label, str) else None)
    schema = feedback_schema()
    columns = [ids, keys, rows, times, numbers, texts]
    return pa.Table.from_arrays(
        [pa.array(c, type=field.type) for c, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


def to_parquet(table: pa.Table, metadata: dict[str, str] | None = None) -> bytes:
    """The table as a compressed Parquet file, with `metadata` (model, version) in its footer."""
    import pyarrow.parquet as pq

    if metadata:
        table = table.replace_schema_metadata(
            {
                **(table.schema.metadata or {}),
                **{k.encode(): v.encode() for k, v in metadata.items()},
            }
        )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=COMPRESSION)
    return sink.getvalue()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
