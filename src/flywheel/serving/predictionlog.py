"""Asynchronous prediction logging to the object store as batched JSON Lines.

The request thread only serialises its record and appends it to a buffer bounded
in bytes, and never waits: when the record does not fit, it is dropped and
counted. A background thread writes batches to
`predictions/<model>/<version>/<day>/<time>-<pid>-<seq>.jsonl`. A batch being
written still counts against the bound until its write ends, so memory stays
under `max_bytes` (plus one record's serialisation) whatever happens downstream;
if the store is down, the batch is dropped and counted too. `close()` writes
what is left (the served model calls it when its worker shuts down).
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

from flywheel.config import LOG_MAX_BYTES
from flywheel.storage import ObjectStore

log = logging.getLogger(__name__)

# A few megabytes: at about 500 bytes a one-row record, several thousand requests
# of backlog, enough for the writer's flush interval at any rate one worker serves.
DEFAULT_MAX_BYTES = LOG_MAX_BYTES
# json.dumps(entry, default=str) builds an encoder on every call; one serves every record.
_ENCODER = json.JSONEncoder(default=str)


class PredictionLogger:
    """A bounded, non-blocking log of requests and responses."""

    def __init__(
        self,
        store: ObjectStore,
        model_name: str,
        version: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        batch_size: int = 1000,
        flush_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        # What the batch file names are dated by; a simulation passes its simulated clock.
        self.clock = clock
        self.prefix = f"predictions/{model_name}/{version}"
        self.max_bytes = max_bytes
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.logged = 0
        self.dropped = 0
        self.failed_writes = 0
        self._buffer: list[bytes] = []
        # Bytes buffered plus bytes of the batch being written: what the bound holds.
        self._held = 0
        self._sequence = 0
        self._lock = threading.Lock()
        # Held through a whole flush: a flush returns only once every record buffered before
        # it is written, including a batch the timer's flush took just before (a replay
        # answers only after its record is in the store).
        self._flushing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()

    def record(self, entry: dict[str, Any]) -> None:
        """Buffer one record without blocking; drop and count it when it does not fit."""
        if self._pid != os.getpid():
            self._start()
        # Serialised here, so that the bound is in real bytes, not in records of any size.
        line = _ENCODER.encode(entry).encode() + b"\n"
        with self._lock:
            if self._held + len(line) > self.max_bytes:
                self.dropped += 1
            else:
                self._buffer.append(line)
                self._held += len(line)

    def _start(self) -> None:
        # Threads do not survive gunicorn's fork, so each worker starts its own.
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._buffer = []
            self._held = 0
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
        """Write everything buffered so far; return once it is written (or dropped)."""
        with self._flushing:
            with self._lock:
                batch, self._buffer = self._buffer, []
            for start in range(0, len(batch), self.batch_size):
                self._write(batch[start : start + self.batch_size])

    def _write(self, batch: list[bytes]) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        size = sum(len(line) for line in batch)
        with self._lock:
            self._sequence += 1
            key = f"{self.prefix}/{now:%Y-%m-%d}/{now:%H%M%S%f}-{os.getpid()}-{self._sequence:06d}.jsonl"
        try:
            self.store.write(key, b"".join(batch))
        except Exception as error:  # the store being down must never reach a request
            with self._lock:
                self._held -= size
                self.dropped += len(batch)
                self.failed_writes += 1
            log.warning("dropped %d prediction log records: %s", len(batch), error)
            return
        with self._lock:
            self._held -= size
            self.logged += len(batch)

    @property
    def backlog(self) -> int:
        """Records waiting to be written."""
        return len(self._buffer)

    @property
    def held_bytes(self) -> int:
        """Bytes buffered or being written: never more than `max_bytes`."""
        return self._held

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and write what is buffered; safe to call more than once."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        # Whatever a request recorded after the thread's last flush.
        self.flush()
