"""The log's files as monitoring reads them: each one a typed table (`prediction_table`,
`feedback_table`, a day's many at a time with `prediction_tables`), conformed to the version's
contract; what cannot be used is counted under its reason (`logs.Skipped`) and skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from flywheel import logformat
from flywheel.contract import Contract
from flywheel.monitoring.logs import (
    FILE_NAME,
    MALFORMED,
    NO_REQUEST_ID,
    UNKNOWN_VERSION,
    UNREADABLE,
    WRONG_TYPE,
    Skipped,
    foreign,
    is_label,
    json_lines,
    parquet_file,
    prediction_of,
    problem_of,
    written_at,
)
from flywheel.storage import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class LogFile:
    """One file of a log: where it is, whose it is, and when it was written."""

    key: str
    version: str
    written: datetime

    @property
    def parquet(self) -> bool:
        """True for the Parquet format, False for JSON Lines."""
        return self.key.endswith(logformat.SUFFIX)


def log_files(store: ObjectStore, log: str, model: str, version: str, day: date) -> list[LogFile]:
    """The files of one version's log written on one UTC day, oldest first."""
    prefix = f"{log}/{model}/"
    out = []
    for key in store.list(f"{prefix}{version}/{day.isoformat()}/"):
        match = FILE_NAME.match(key[len(prefix) :])
        if match:
            _, name, clock, _ = match.groups()
            out.append(LogFile(key, version, written_at(name, clock)))
    return sorted(out, key=lambda f: (f.written, f.key))


def monitored(schema: pa.Schema) -> pa.Schema:
    """A log's columns as monitoring reads them: every one but the request id's text, which
    its 64-bit key stands for (36 characters a row are most of a row's bytes)."""
    import pyarrow as pa

    return pa.schema([f for f in schema if f.name != logformat.REQUEST_ID])


@functools.lru_cache(maxsize=16)
def _monitored_schema(
    numeric: tuple[str, ...], categorical: tuple[str, ...], width: int, answers: bool = False
) -> pa.Schema:
    """`monitored` prediction columns of a contract's features, made once, not once a file;
    with `answers`, only a row's key, place, time and outputs (what labels join)."""
    import pyarrow as pa

    schema = monitored(logformat.prediction_schema(numeric, categorical, width))
    if not answers:
        return schema
    named = (logformat.KEY, logformat.ROW, logformat.TIME)
    return pa.schema([f for f in schema if f.name in named or f.name.startswith(logformat.OUTPUT)])


def _conform(table: pa.Table, wanted: pa.Schema) -> pa.Table | None:
    """The table with exactly `wanted`'s columns, cast; a missing input or latency column is
    null, a missing output NaN. None when a column cannot be read as its type."""
    import pyarrow as pa
    import pyarrow.types as types

    if table.schema.remove_metadata().equals(wanted):  # as serving writes it: nothing to cast
        return table
    columns = []
    for column_field in wanted:
        if column_field.name not in table.column_names:
            if column_field.name in (logformat.KEY, logformat.ROW, logformat.TIME):
                return None
            fill = float("nan") if column_field.name.startswith(logformat.OUTPUT) else None
            columns.append(pa.array([fill] * table.num_rows, type=column_field.type))
            continue
        column = table.column(column_field.name)
        kind = column.type
        if types.is_dictionary(kind):
            kind = kind.value_type
            column = column.cast(kind)
        numeric = types.is_integer(kind) or types.is_floating(kind) or types.is_null(kind)
        text = types.is_string(kind) or types.is_large_string(kind) or types.is_null(kind)
        if (types.is_string(column_field.type) and not text) or (
            not types.is_string(column_field.type) and not numeric
        ):
            return None
        try:
            columns.append(column.cast(column_field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    return pa.Table.from_arrays(columns, schema=pa.schema(list(wanted)))


def _usable(table: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """The rows with a request key and a finite time; the others counted by reason."""
    import numpy as np
    import pyarrow.compute as pc

    key, time = table.column(logformat.KEY), table.column(logformat.TIME)
    if key.null_count == 0 and time.null_count == 0 and np.isfinite(time.to_numpy()).all():
        return table, {}  # as serving writes it: every row
    has_id = pc.is_valid(key)
    timed = pc.and_(pc.is_valid(time), pc.is_finite(pc.fill_null(time, float("nan"))))
    lost = {
        NO_REQUEST_ID: table.num_rows - pc.sum(has_id).as_py() if table.num_rows else 0,
        MALFORMED: pc.sum(pc.and_(has_id, pc.invert(timed))).as_py() or 0,
    }
    return table.filter(pc.and_(has_id, timed)), {k: int(v) for k, v in lost.items() if v}


def _fits(schema: pa.Schema, contract: Contract, model: str, version: str) -> bool:
    """Whether a file of `schema` has `contract`'s monitored columns in types they can be
    read as (or is another version's, which reading leaves out anyway), judged from the
    types alone."""
    whole = _monitored_schema(
        tuple(contract.numeric), tuple(contract.categorical), contract.problem.width
    )
    empty = schema.empty_table()
    present = [f.name for f in whole if f.name in schema.names]
    return foreign(empty, model, version) or _conform(empty.select(present), whole) is not None


def _typed(
    data: bytes,
    file: LogFile,
    model: str,
    schema: pa.Schema,
    skipped: Skipped,
    fit: Contract | None = None,
) -> pa.Table | None:
    """A Parquet log file's usable rows in `schema`'s columns (only those are read); what is
    not usable is counted. With `fit`, a file whose columns do not fit that contract is left
    out as reading them all would leave it out (of the wrong type), though they are not
    read."""
    found = parquet_file(data, [f.name for f in schema])
    if found is None:
        skipped.add(file.version, file.written, UNREADABLE)
        return None
    table, whole = found
    if fit is not None and not _fits(whole, fit, model, file.version):
        skipped.add(file.version, file.written, WRONG_TYPE, table.num_rows)
        return None
    return _typed_table(table, file, model, schema, skipped)


def _typed_table(
    table: pa.Table, file: LogFile, model: str, schema: pa.Schema, skipped: Skipped
) -> pa.Table | None:
    """`_typed` of a table read."""
    if foreign(table, model, file.version):
        skipped.add(file.version, file.written, UNKNOWN_VERSION, table.num_rows)
        return None
    typed = _conform(table, schema)
    if typed is None:
        skipped.add(file.version, file.written, WRONG_TYPE, table.num_rows)
        return None
    typed, lost = _usable(typed)
    for reason, count in lost.items():
        skipped.add(file.version, file.written, reason, count)
    return typed if typed.num_rows else None


# A day's compacted file can hold millions of rows: it is read by row groups, by ranges
# (`ObjectStore.reader`), never held whole in memory nor copied to local disk.
COMPACTED = "compacted"


def compacted_name(day: date) -> str:
    """The name of a day's compacted file: dated at the day's last instant, so that it sorts
    after every file it holds."""
    return f"{day.isoformat()}/235959999999-0-{COMPACTED}{logformat.SUFFIX}"


def prediction_tables(
    store: ObjectStore,
    file: LogFile,
    model: str,
    contract: Contract,
    skipped: Skipped,
    *,
    answers: bool = False,
) -> Iterator[pa.Table]:
    """`prediction_table`, a compacted day's file read row group by row group."""
    if COMPACTED not in file.key:
        table = prediction_table(store, file, model, contract, skipped, answers=answers)
        if table is not None:
            yield table
        return
    width = contract.problem.width
    wanted = _monitored_schema(tuple(contract.numeric), tuple(contract.categorical), width, answers)
    yield from _compacted(store, file, model, wanted, skipped, contract if answers else None)


def _compacted(
    store: ObjectStore,
    file: LogFile,
    model: str,
    wanted: pa.Schema,
    skipped: Skipped,
    fit: Contract | None = None,
) -> Iterator[pa.Table]:
    """A compacted day's file as `_typed` reads a file, read by ranges a row group at a
    time: it can hold millions of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with store.reader(file.key) as opened:
        try:
            source = pq.ParquetFile(opened)
            meta = source.schema_arrow.metadata
            names = [f.name for f in wanted if f.name in source.schema_arrow.names]
            if fit is not None and not _fits(source.schema_arrow, fit, model, file.version):
                # Of the wrong type, as the whole rows read would show: left out alike.
                skipped.add(file.version, file.written, WRONG_TYPE, source.metadata.num_rows)
                return
            for group in range(source.num_row_groups):
                part = source.read_row_group(group, columns=names).replace_schema_metadata(meta)
                typed = _typed_table(part, file, model, wanted, skipped)
                if typed is not None:
                    yield typed
        except (pa.ArrowException, OSError, ValueError):
            skipped.add(file.version, file.written, UNREADABLE)


def prediction_table(
    store: ObjectStore,
    file: LogFile,
    model: str,
    contract: Contract,
    skipped: Skipped,
    *,
    answers: bool = False,
) -> pa.Table | None:
    """One prediction file as a table of `contract`'s typed columns (`logformat`); None when
    nothing in it is usable, and what is not is counted in `skipped`. With `answers`, only
    each row's key, place, time and outputs are read."""
    numeric, categorical = list(contract.numeric), list(contract.categorical)
    width = contract.problem.width
    wanted = _monitored_schema(tuple(numeric), tuple(categorical), width, answers)
    data = store.read(file.key)
    if not file.parquet:
        entries = []
        for entry in json_lines(data):
            problem = problem_of(entry, model, file.version, (file.version,))
            if problem or entry is None or prediction_of(entry, file.version) is None:
                skipped.add(file.version, file.written, problem or MALFORMED)
            else:
                entries.append(entry)
        table = logformat.prediction_table(entries, numeric, categorical, width)
        return table.select(wanted.names) if table.num_rows else None
    return _typed(data, file, model, wanted, skipped, contract if answers else None)


def feedback_tables(
    store: ObjectStore, file: LogFile, model: str, skipped: Skipped
) -> Iterator[pa.Table]:
    """`feedback_table`, a compacted day's file read row group by row group."""
    if COMPACTED not in file.key:
        table = feedback_table(store, file, model, skipped)
        if table is not None:
            yield table
        return
    yield from _compacted(store, file, model, monitored(logformat.feedback_schema()), skipped)


def feedback_table(
    store: ObjectStore, file: LogFile, model: str, skipped: Skipped
) -> pa.Table | None:
    """One feedback file as a table of `logformat.feedback_schema()`; None when nothing in it
    is usable, and what is not is counted in `skipped`."""
    data = store.read(file.key)
    if not file.parquet:
        entries = []
        for entry in json_lines(data):
            problem = problem_of(entry, model, file.version, (file.version,))
            values = None if problem or entry is None else entry.get("labels")
            if entry is None or not isinstance(values, list) or not values:
                skipped.add(file.version, file.written, problem or MALFORMED)
            elif not all(map(is_label, values)):
                skipped.add(file.version, file.written, MALFORMED)
            else:
                entries.append(entry)
        table = logformat.feedback_table(entries)
        return table.drop_columns([logformat.REQUEST_ID]) if table.num_rows else None
    return _typed(data, file, model, monitored(logformat.feedback_schema()), skipped)
