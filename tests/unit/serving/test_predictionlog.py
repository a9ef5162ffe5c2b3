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


def test_a_stuck_store_never_blocks_and_the_backlog_is_bounded(tmp_path: Path) -> None:
    store = StuckStore(tmp_path)
    logger = PredictionLogger(store, "m", "v1", capacity=50, batch_size=10, flush_seconds=0.05)
    started = time.monotonic()
    for i in range(1000):
        logger.record({"i": i})
    assert time.monotonic() - started < 1.0  # 1000 records, no waiting on the store
    assert logger.backlog <= 50
    assert logger.dropped >= 1000 - 50 - 10
    store.release.set()
    logger.close()


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
