"""Asynchronous prediction logging to the object store as batched JSON Lines.

The request thread only appends to a bounded queue and never waits: when the
queue is full the record is dropped and counted. A background thread writes
batches to `predictions/<model>/<version>/<day>/<time>-<pid>-<seq>.jsonl`. If the
store is down, that batch is dropped and counted too, so memory stays bounded by
the queue size plus one batch whatever happens downstream.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flywheel.storage import ObjectStore

log = logging.getLogger(__name__)


class PredictionLogger:
    """A bounded, non-blocking log of requests and responses."""

    def __init__(
        self,
        store: ObjectStore,
        model_name: str,
        version: str,
        *,
        capacity: int = 10_000,
        batch_size: int = 1000,
        flush_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        # What the batch file names are dated by; a simulation passes its simulated clock.
        self.clock = clock
        self.prefix = f"predictions/{model_name}/{version}"
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.logged = 0
        self.dropped = 0
        self.failed_writes = 0
        self._buffer: list[dict[str, Any]] = []
        self._sequence = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()

    def record(self, entry: dict[str, Any]) -> None:
        """Buffer one record without blocking; drop and count it when the buffer is full."""
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            if len(self._buffer) >= self.capacity:
                self.dropped += 1
            else:
                self._buffer.append(entry)

    def _start(self) -> None:
        # Threads do not survive gunicorn's fork, so each worker starts its own.
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._buffer = []
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # The writer wakes on a timer, never per record: waking a thread for every
        # request makes the request thread wait for the GIL (milliseconds each time).
        while not self._stop.wait(self.flush_seconds):
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Write everything buffered so far."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        for start in range(0, len(batch), self.batch_size):
            self._write(batch[start : start + self.batch_size])

    def _write(self, batch: list[dict[str, Any]]) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        with self._lock:
            self._sequence += 1
            key = f"{self.prefix}/{now:%Y-%m-%d}/{now:%H%M%S%f}-{os.getpid()}-{self._sequence:06d}.jsonl"
        lines = []
        for i, entry in enumerate(batch):
            lines.append(json.dumps(entry, default=str))
            if i % 50 == 49:
                time.sleep(0)  # let request threads have the GIL between chunks of work
        body = ("\n".join(lines) + "\n").encode()
        try:
            self.store.write(key, body)
        except Exception as error:  # the store being down must never reach a request
            with self._lock:
                self.dropped += len(batch)
                self.failed_writes += 1
            log.warning("dropped %d prediction log records: %s", len(batch), error)
            return
        with self._lock:
            self.logged += len(batch)

    @property
    def backlog(self) -> int:
        """Records waiting to be written."""
        return len(self._buffer)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
