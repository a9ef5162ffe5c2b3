"""The prediction log: never blocks a request, stays bounded, and counts what it drops."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from flywheel.serving.predictionlog import PredictionLogger
from flywheel.storage import LocalStore, StoreUnavailable


def _wait(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_records_are_written_as_json_lines_in_batches(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    logger = PredictionLogger(store, "m", "v1", batch_size=10, flush_seconds=0.1)
    for i in range(25):
        logger.record({"request_id": str(i), "outputs": [[0.1, 0.9]]})
    _wait(lambda: logger.logged == 25)
    keys = store.list("predictions/m/v1")
    assert len(keys) >= 3 and all(k.endswith(".jsonl") for k in keys)
    lines = [json.loads(line) for k in keys for line in store.read(k).decode().splitlines()]
    assert sorted(int(r["request_id"]) for r in lines) == list(range(25))
    logger.close()


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
    # given a log of at most 5,000 bytes whose store hangs on its first write
    store = StuckStore(tmp_path)
    logger = PredictionLogger(store, "m", "v1", max_bytes=5000, batch_size=10, flush_seconds=0.05)
    record = {"i": 0, "pad": "x" * 80}  # about 100 bytes a line
    # when 1,000 records arrive, some while a batch is stuck in flight
    started = time.monotonic()
    for i in range(1000):
        logger.record({**record, "i": i})
        if i == 20:
            _wait(lambda: logger.backlog == 0)  # the writer took them and is stuck
    # then no request waited on the store
    assert time.monotonic() - started < 1.0
    # and buffer plus batch in flight together stayed within the bound
    assert 4900 < logger.held_bytes <= 5000
    kept = logger.backlog + 21
    assert kept + logger.dropped == 1000 and kept < 5000 // 100
    # and once the store answers, every record kept is written
    store.release.set()
    logger.close()
    assert logger.logged == kept and logger.held_bytes == 0


def test_close_writes_what_is_buffered(tmp_path: Path) -> None:
    # given records buffered by a writer that would not wake for an hour
    store = LocalStore(tmp_path)
    logger = PredictionLogger(store, "m", "v1", flush_seconds=3600)
    for i in range(7):
        logger.record({"request_id": str(i)})
    assert store.list("predictions/m/v1") == []
    # when the log is closed (twice: every exit hook may call it)
    logger.close()
    logger.close()
    # then every record is in the store, once
    lines = [line for k in store.list("predictions/m/v1") for line in store.read(k).splitlines()]
    assert sorted(json.loads(line)["request_id"] for line in lines) == [str(i) for i in range(7)]


class DownStore(LocalStore):
    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        raise StoreUnavailable("cannot reach the S3 endpoint 127.0.0.1:1")


def test_a_store_that_is_down_drops_and_counts(tmp_path: Path) -> None:
    logger = PredictionLogger(DownStore(tmp_path), "m", "v1", batch_size=5, flush_seconds=0.05)
    for i in range(12):
        logger.record({"i": i})
    _wait(lambda: logger.dropped == 12)
    assert logger.failed_writes >= 3 and logger.logged == 0
    logger.close()


def test_a_flush_returns_only_once_what_was_buffered_before_it_is_written(
    tmp_path: Path,
) -> None:
    # given a record the timer's flush has taken and is still writing (the store hangs)
    store = StuckStore(tmp_path)
    logger = PredictionLogger(store, "m", "v1", flush_seconds=0.05)
    logger.record({"request_id": "r1"})
    _wait(lambda: logger.backlog == 0)
    # when a request's own flush runs meanwhile
    done = threading.Event()
    threading.Thread(target=lambda: (logger.flush(), done.set()), daemon=True).start()
    # then it waits for that write, rather than returning at once on an empty buffer
    assert not done.wait(0.3)
    store.release.set()
    assert done.wait(5) and logger.logged == 1
    logger.close()
