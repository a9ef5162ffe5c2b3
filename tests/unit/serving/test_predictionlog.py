"""The prediction log: Parquet files typed by the contract, one a minute or per few megabytes;
never blocks a request, stays bounded, and counts what it drops and what it leaves out."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel import logformat
from flywheel.serving.predictionlog import PredictionLogger, record_bytes
from flywheel.storage import LocalStore, ObjectStore, StoreUnavailable

NUMERIC = ("income", "age")
CATEGORICAL = ("region",)


def _logger(store: ObjectStore, **options: Any) -> PredictionLogger:
    return PredictionLogger(
        store, "m", "v1", numeric=NUMERIC, categorical=CATEGORICAL, width=2, **options
    )


def _entry(i: int, rows: int = 1) -> dict[str, Any]:
    """A record as the served model makes it."""
    return {
        "request_id": f"request-{i}",
        "model": "m",
        "version": "v1",
        "time": 1767225600.0 + i,
        "latency_ms": 1.5,
        "features": [*NUMERIC, *CATEGORICAL],
        "inputs": [[52000.0 + i, 40, "north"] for _ in range(rows)],
        "outputs": [[0.25, 0.75] for _ in range(rows)],
    }


def _tables(store: LocalStore, prefix: str = "predictions/m/v1") -> list[pa.Table]:
    return [pq.read_table(io.BytesIO(store.read(key))) for key in store.list(prefix)]


def _ids(store: LocalStore, prefix: str = "predictions/m/v1") -> list[str]:
    return sorted(i for t in _tables(store, prefix) for i in t.column("_request_id").to_pylist())


def _wait(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_records_are_written_as_parquet_with_the_contracts_typed_columns(tmp_path: Path) -> None:
    # given a logger of a contract with two numeric features and a categorical one
    store = LocalStore(tmp_path)
    logger = _logger(store, flush_seconds=0.1)
    # when 25 two-row requests are logged
    for i in range(25):
        logger.record(_entry(i, rows=2))
    _wait(lambda: logger.logged == 25)
    logger.close()
    # then the files are Parquet below predictions/<model>/<version>/<day>/, dated today
    keys = store.list("predictions/m/v1")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert keys and all(k.endswith(".parquet") and f"/v1/{day}/" in k for k in keys)
    table = pa.concat_tables(_tables(store))
    # with a table row per served row, each column typed as the contract has it
    assert table.num_rows == 50
    assert table.schema.field("in.income").type == pa.float64()
    assert table.schema.field("in.age").type == pa.float64()
    assert table.schema.field("in.region").type == pa.string()
    assert table.schema.field("out.1").type == pa.float64()
    assert table.schema.field("_key").type == pa.uint64()
    assert sorted(set(table.column("_request_id").to_pylist())) == sorted(
        f"request-{i}" for i in range(25)
    )
    assert set(table.column("in.region").to_pylist()) == {"north"}
    assert set(table.column("out.1").to_pylist()) == {0.75}
    # and each file says whose log it is
    (metadata,) = {tuple(sorted(t.schema.metadata.items())) for t in _tables(store)}
    assert dict(metadata) == {b"model": b"m", b"version": b"v1"}


def test_a_quiet_minute_is_one_file(tmp_path: Path) -> None:
    # given a writer that writes once an interval, far below its size threshold
    store = LocalStore(tmp_path)
    logger = _logger(store, flush_seconds=0.5)
    # when a few requests come within the interval
    for i in range(10):
        logger.record(_entry(i))
    _wait(lambda: logger.logged == 10)
    # then they are in one file, written once the interval was over
    assert len(store.list("predictions/m/v1")) == 1
    logger.close()
    assert len(store.list("predictions/m/v1")) == 1  # nothing left to write


def test_a_file_is_written_as_soon_as_its_size_threshold_is_buffered(tmp_path: Path) -> None:
    # given a writer that would not wake for an hour, and files of about 20 records
    store = LocalStore(tmp_path)
    size = record_bytes(_entry(0))
    logger = _logger(store, flush_seconds=3600, file_bytes=20 * size, max_bytes=1000 * size)
    # when 19 records come
    for i in range(19):
        logger.record(_entry(i))
    time.sleep(0.3)
    # then nothing is written: they are under the threshold
    assert store.list("predictions/m/v1") == []
    # and once the 20th comes, they are written without waiting for the interval
    logger.record(_entry(19))
    _wait(lambda: logger.logged == 20)
    # as are the next 20, in a file of their own
    for i in range(20, 40):
        logger.record(_entry(i))
    _wait(lambda: logger.logged == 40)
    assert [t.num_rows for t in _tables(store)] == [20, 20]
    logger.close()


def test_the_estimate_is_above_what_a_record_holds() -> None:
    def held(value: object, seen: set[int]) -> int:
        if id(value) in seen:
            return 0
        seen.add(id(value))
        size = sys.getsizeof(value)
        if isinstance(value, dict):
            size += sum(held(k, seen) + held(v, seen) for k, v in value.items())
        elif isinstance(value, list):
            size += sum(held(v, seen) for v in value)
        return size

    names = [f"feature_{i}" for i in range(12)]
    for rows in (1, 25, 1000):
        body = [[float(j) * 1.5 for j in range(9)] + ["mortgage", "rent", "self_employed"]] * rows
        entry = {
            **_entry(0),
            "request_id": "a" * 32,
            "features": list(names),
            "inputs": json.loads(json.dumps(body)),  # new objects, as a parsed request's
            "outputs": json.loads(json.dumps([[0.123456, 0.876544]] * rows)),
        }
        # (the feature names, model and version are shared with the served model's schema)
        shared = {id(n) for n in names} | {id(entry["model"]), id(entry["version"])}
        actual = held(entry, shared)
        assert actual <= record_bytes(entry) <= 1.6 * actual


class StuckStore(LocalStore):
    """A store whose writes hang until released, like a server that stopped answering."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()

    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        self.release.wait()
        super().write(key, data, create_only=create_only)


def test_a_stuck_store_never_blocks_and_memory_stays_under_the_byte_bound(
    tmp_path: Path,
) -> None:
    # given a log of at most 50 records' worth whose store hangs on its first write
    store = StuckStore(tmp_path)
    size = record_bytes(_entry(0))
    bound = 50 * size
    logger = _logger(store, max_bytes=bound, flush_seconds=0.05)
    # when 1,000 records arrive, some while a file is stuck in flight
    started = time.monotonic()
    for i in range(1000):
        logger.record(_entry(i))
        if i == 20:
            _wait(lambda: logger.backlog == 0)  # the writer took them and is stuck
    # then no request waited on the store
    assert time.monotonic() - started < 1.0
    # and buffer plus file in flight together stayed within the bound, which is full
    assert bound - size < logger.held_bytes <= bound
    kept = logger.backlog + 21
    assert kept + logger.dropped == 1000 and 45 < kept <= 50
    # and once the store answers, every record kept is written
    store.release.set()
    logger.close()
    assert logger.logged == kept and logger.held_bytes == 0
    assert len(_ids(store)) == kept


def test_close_writes_what_is_buffered(tmp_path: Path) -> None:
    # given records buffered by a writer that would not wake for an hour
    store = LocalStore(tmp_path)
    logger = _logger(store, flush_seconds=3600)
    for i in range(7):
        logger.record(_entry(i))
    assert store.list("predictions/m/v1") == []
    # when the log is closed (twice: every exit hook may call it)
    logger.close()
    logger.close()
    # then every record is in the store, once, in one file
    assert _ids(store) == sorted(f"request-{i}" for i in range(7))
    assert len(store.list("predictions/m/v1")) == 1


class DownStore(LocalStore):
    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        raise StoreUnavailable("cannot reach the S3 endpoint 127.0.0.1:1")


def test_a_store_that_is_down_drops_and_counts(tmp_path: Path) -> None:
    size = record_bytes(_entry(0))
    logger = _logger(DownStore(tmp_path), file_bytes=5 * size, flush_seconds=0.05)
    for i in range(12):
        logger.record(_entry(i))
    _wait(lambda: logger.dropped == 12)
    assert logger.failed_writes >= 3 and logger.logged == 0 and logger.held_bytes == 0
    logger.close()


def test_a_record_that_does_not_convert_is_dropped_alone(tmp_path: Path) -> None:
    # given a record whose answer is not a number, among good ones
    store = LocalStore(tmp_path)
    logger = _logger(store, flush_seconds=3600)
    logger.record(_entry(0))
    logger.record({**_entry(1), "outputs": [["yes", "no"]]})
    logger.record(_entry(2))
    # when they are written
    logger.close()
    # then the good ones are in the store, and only the bad one is dropped
    assert _ids(store) == ["request-0", "request-2"]
    assert (logger.logged, logger.dropped, logger.failed_writes) == (2, 1, 0)


def test_a_flush_returns_only_once_what_was_buffered_before_it_is_written(
    tmp_path: Path,
) -> None:
    # given a record the timer's flush has taken and is still writing (the store hangs)
    store = StuckStore(tmp_path)
    logger = _logger(store, flush_seconds=0.05)
    logger.record(_entry(1))
    _wait(lambda: logger.backlog == 0)
    # when a request's own flush runs meanwhile
    done = threading.Event()
    threading.Thread(target=lambda: (logger.flush(), done.set()), daemon=True).start()
    # then it waits for that write, rather than returning at once on an empty buffer
    assert not done.wait(0.3)
    store.release.set()
    assert done.wait(5) and logger.logged == 1
    logger.close()


def test_a_forked_worker_writes_its_own_records_with_its_own_writer(tmp_path: Path) -> None:
    # given a log with a record buffered, as gunicorn's master could hold one
    store = LocalStore(tmp_path)
    logger = _logger(store, flush_seconds=3600)
    logger.record(_entry(0))
    # when a worker is forked from it, and logs a request of its own and exits
    pid = os.fork()
    if pid == 0:  # the worker: threads do not survive the fork, its writer is its own
        code = 2
        try:
            logger.record(_entry(1))
            logger.close()
            code = 0 if (logger.logged, logger.held_bytes) == (1, 0) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    # then the worker wrote its own record, and not the one it inherited
    assert os.waitstatus_to_exitcode(status) == 0
    assert _ids(store) == ["request-1"]
    # and the parent still writes its own
    logger.close()
    assert _ids(store) == ["request-0", "request-1"]
    assert len({k.rsplit("-", 2)[1] for k in store.list("predictions/m/v1")}) == 2  # two pids


def test_a_sampled_log_keeps_a_deterministic_share_and_counts_the_rest(tmp_path: Path) -> None:
    # given two logs of a fifth of requests
    first, second = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    loggers = [_logger(store, share=0.2, flush_seconds=3600) for store in (first, second)]
    # when the same 2,000 requests come to both
    for logger in loggers:
        for i in range(2000):
            logger.record(_entry(i))
        logger.close()
    # then each logged the same requests: those whose key is in the share
    expected = sorted(
        f"request-{i}"
        for i in range(2000)
        if logformat.sampled(logformat.request_key(f"request-{i}"), 0.2)
    )
    assert _ids(first) == _ids(second) == expected
    assert 300 < len(expected) < 500
    # and the rest are counted apart from what was dropped
    for logger in loggers:
        assert logger.logged == len(expected) and logger.sampled_out == 2000 - len(expected)
        assert logger.dropped == 0


def test_a_share_outside_0_to_1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        _logger(LocalStore(tmp_path), share=1.5)
