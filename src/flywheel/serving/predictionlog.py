"""Asynchronous prediction logging to the object store as Parquet files (`flywheel.logformat`).

The request thread only appends its record to a buffer bounded in bytes, and never
waits: when the record does not fit, it is dropped and counted. A background thread
writes the buffer as one Parquet file a minute (`flush_seconds`), or as soon as
`file_bytes` are buffered, whichever comes first, to
`predictions/<model>/<version>/<day>/<HHMMSSffffff>-<pid>-<seq>.parquet`, dated by the
logger's clock. A file being written still counts against the bound until its write
ends, so memory stays under `max_bytes` whatever happens downstream; if the store is
down, the file's records are dropped and counted too. `close()` writes what is left (the
served model calls it when its worker shuts down).

The buffer holds the records themselves (serialising each one on the request thread
cost more than scoring a small request), so what they hold is estimated, cheaply and on
the generous side (`record_bytes`). With `share` below 1, only the requests whose
`logformat.sampled` key is in that share are logged: the feedback log keeps the same
ids, so a logged prediction's label is logged too. The others are counted in
`sampled_out`, apart from what was dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flywheel import logformat
from flywheel.config import LOG_MAX_BYTES
from flywheel.storage import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

# A few megabytes: at about 2,200 bytes a one-row record (as estimated), nearly 2,000
# requests of backlog.
DEFAULT_MAX_BYTES = LOG_MAX_BYTES
# What a buffered record is counted as (`record_bytes`), each part on the generous side of
# what CPython holds for it:
RECORD_BYTES = 1024  # its dict, its time and latency, its id's object, its lists' headers
ROW_BYTES = 64  # a row's list (56 bytes) and its slot in the list of rows
VALUE_BYTES = 64  # a value (a float takes 24 bytes, a string 49) and its slot in its row
NAME_BYTES = 8  # a feature name's slot: the names are the served model's schema's
# A string's length is counted on top. Measured: a one-row record of 12 features (3 of
# them categories) and 2 outputs holds 1,850 bytes and is counted as 2,190; one of 25 rows
# 19,000, counted as 27,000. The estimate takes each row's length and looks at each value
# only for its type: about 1 µs for a one-row request and 16 for 25 rows, where the JSON
# encoding of each record it replaces took 6 and 115.


def rows_bytes(rows: Sequence[Any]) -> int:
    """The estimated bytes of a list of rows (lists of values) or of values."""
    size = 0
    for row in rows:
        if isinstance(row, list | tuple):
            size += ROW_BYTES + VALUE_BYTES * len(row)
            for value in row:
                if value.__class__ is str:
                    size += len(value)
        else:
            size += VALUE_BYTES + (len(row) if row.__class__ is str else 0)
    return size


def record_bytes(entry: dict[str, Any]) -> int:
    """The estimated bytes a buffered record holds: its rows and values, its id and a
    fixed part, each on the generous side of what CPython takes."""
    size = RECORD_BYTES + len(str(entry.get("request_id", "")))
    size += NAME_BYTES * len(entry.get("features") or ())
    for name in ("inputs", "outputs", "labels"):
        rows = entry.get(name)
        if rows:
            size += rows_bytes(rows)
    return size


@dataclass
class _File:
    """Records buffered for one file, and their estimated bytes."""

    records: list[dict[str, Any]] = field(default_factory=list)
    held: int = 0


class BufferedLog:
    """A bounded, non-blocking log of records, written as Parquet files below `prefix`."""

    kind = "log"

    def __init__(
        self,
        store: ObjectStore,
        prefix: str,
        model_name: str,
        version: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        file_bytes: int | None = None,
        flush_seconds: float = 60.0,
        share: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"the logged share of requests is between 0 and 1, not {share}")
        self.store = store
        # What the file names are dated by; a simulation passes its simulated clock.
        self.clock = clock
        self.prefix = prefix
        self.metadata = {"model": model_name, "version": version}
        self.max_bytes = max_bytes
        # A file is written once this much is buffered, without waiting for the minute:
        # half the bound by default, so requests keep coming in while it is written.
        self.file_bytes = min(max_bytes, file_bytes or max_bytes // 2)
        self.flush_seconds = flush_seconds
        self.share = share
        self.logged = 0
        self.dropped = 0
        self.sampled_out = 0
        self.failed_writes = 0
        self._files: list[_File] = []
        self._waiting = 0  # records buffered
        self._buffered = 0  # their estimated bytes
        # Bytes buffered plus bytes of the files being written: what the bound holds.
        self._held = 0
        self._sequence = 0
        self._lock = threading.Lock()
        # Held through a whole flush: a flush returns only once every record buffered before
        # it is written, including a file the timer's flush took just before (a replay
        # answers only after its record is in the store).
        self._flushing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        # Set by close(), and by record() once per file when the buffer reaches file_bytes.
        self._wake = threading.Event()
        # pyarrow's first table and file take a second (its imports, pandas' among them):
        # taken now, when the model loads, not by the writer in the middle of traffic.
        logformat.to_parquet(logformat.feedback_table([]))

    def record(self, entry: dict[str, Any]) -> None:
        """Buffer one record without blocking; drop and count it when it does not fit, and
        leave it out (counted) when its request is not in the logged share."""
        if self._pid != os.getpid():
            self._start()
        if self.share < 1.0 and not logformat.sampled(
            logformat.request_key(str(entry.get("request_id", ""))), self.share
        ):
            with self._lock:
                self.sampled_out += 1
            return
        size = record_bytes(entry)
        with self._lock:
            if self._held + size > self.max_bytes:
                self.dropped += 1
                return
            if not self._files or self._files[-1].held >= self.file_bytes:
                self._files.append(_File())
            file = self._files[-1]
            file.records.append(entry)
            file.held += size
            self._held += size
            self._waiting += 1
            full = self._buffered < self.file_bytes <= self._buffered + size
            self._buffered += size
        if full:
            self._wake.set()

    def _start(self) -> None:
        # Threads do not survive gunicorn's fork, so each worker starts its own.
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._files = []
            self._waiting = self._buffered = self._held = 0
            self._stop.clear()
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name=self.kind, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # The writer wakes on a timer, or once a file's worth is buffered, never per
        # record: waking a thread for every request makes the request thread wait for
        # the GIL (milliseconds each time).
        due = time.monotonic() + self.flush_seconds
        while not self._stop.is_set():
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            if time.monotonic() >= due or self._buffered >= self.file_bytes:
                self.flush()
                due = time.monotonic() + self.flush_seconds
        self.flush()

    def flush(self) -> None:
        """Write everything buffered so far; return once it is written (or dropped)."""
        with self._flushing:
            with self._lock:
                files, self._files = self._files, []
                self._waiting = self._buffered = 0
            while files:
                self._write(files.pop(0))

    def _write(self, file: _File) -> None:
        records, file.records = file.records, []
        count = len(records)
        now = datetime.fromtimestamp(self.clock(), UTC)
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        key = (
            f"{self.prefix}/{now:%Y-%m-%d}/{now:%H%M%S%f}-{os.getpid()}-{sequence:06d}"
            f"{logformat.SUFFIX}"
        )
        try:
            table, skipped = self._convert(records)
            del records  # the table, then the file's bytes, stand for them from here
            if skipped < count:
                data = logformat.to_parquet(table, self.metadata)
                del table
                self.store.write(key, data)
        except Exception as error:  # the store being down must never reach a request
            with self._lock:
                self._held -= file.held
                self.dropped += count
                self.failed_writes += 1
            log.warning("dropped %d %s records: %s", count, self.kind, error)
            return
        with self._lock:
            self._held -= file.held
            self.logged += count - skipped
            self.dropped += skipped

    def _convert(self, records: list[dict[str, Any]]) -> tuple[pa.Table, int]:
        """The records as one table, and how many were left out: a record that does not
        convert (a value of no column's type) is dropped alone, not with its whole file."""
        try:
            return self._table(records), 0
        except Exception as error:
            import pyarrow as pa

            tables = []
            for entry in records:
                try:
                    tables.append(self._table([entry]))
                except Exception:
                    continue
            log.warning(
                "dropped %d %s records that do not convert to Parquet: %s",
                len(records) - len(tables),
                self.kind,
                error,
            )
            if not tables:
                return self._table([]), len(records)
            return pa.concat_tables(tables), len(records) - len(tables)

    def _table(self, records: Sequence[dict[str, Any]]) -> pa.Table:
        raise NotImplementedError

    @property
    def backlog(self) -> int:
        """Records waiting to be written."""
        return self._waiting

    @property
    def held_bytes(self) -> int:
        """Estimated bytes buffered or being written: never more than `max_bytes`."""
        return self._held

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and write what is buffered; safe to call more than once."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        # Whatever a request recorded after the thread's last flush.
        self.flush()


class PredictionLogger(BufferedLog):
    """A bounded, non-blocking log of requests and responses, typed by the served contract."""

    kind = "prediction-log"

    def __init__(
        self,
        store: ObjectStore,
        model_name: str,
        version: str,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        width: int,
        **options: Any,
    ) -> None:
        super().__init__(
            store, f"predictions/{model_name}/{version}", model_name, version, **options
        )
        # The columns: each feature typed as the contract has it, and `width` outputs a row.
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.width = width

    def _table(self, records: Sequence[dict[str, Any]]) -> pa.Table:
        return logformat.prediction_table(records, self.numeric, self.categorical, self.width)
