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
import queue
import threading
import time
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
        batch_size: int = 500,
        flush_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.prefix = f"predictions/{model_name}/{version}"
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.logged = 0
        self.dropped = 0
        self.failed_writes = 0
        self._sequence = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()

    def record(self, entry: dict[str, Any]) -> None:
        """Queue one record without blocking; drop and count it when the queue is full."""
        self._ensure_thread()
        try:
            self.queue.put_nowait(entry)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def _ensure_thread(self) -> None:
        # Threads do not survive gunicorn's fork, so each worker starts its own.
        if self._thread is None or self._pid != os.getpid():
            with self._lock:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._stop.clear()
                    self._thread = threading.Thread(
                        target=self._run, name="prediction-log", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._drain(block=True)
        while not self.queue.empty():
            self._drain(block=False)

    def _drain(self, *, block: bool) -> None:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.batch_size:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or (not block and self.queue.empty()):
                break
            try:
                batch.append(self.queue.get(timeout=timeout if block else 0.01))
            except queue.Empty:
                break
        if batch:
            self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        with self._lock:
            self._sequence += 1
            key = f"{self.prefix}/{now:%Y-%m-%d}/{now:%H%M%S%f}-{os.getpid()}-{self._sequence:06d}.jsonl"
        body = "".join(json.dumps(entry, default=str) + "\n" for entry in batch).encode()
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
        return self.queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
