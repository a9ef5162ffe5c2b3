"""Housekeeping of what monitoring reads: a finished day's small log files compacted into one,
and logs, summaries and window records older than `monitoring.retention_days` removed.

`flywheel monitor` runs both at the end of a look that records, after its records and
summaries are stored, so a failure here never costs a report. Compaction is safe at every
step: the summary that holds the day's files learns the compacted file's key first, the
compacted file is written whole (streamed to the store, where it appears only once
complete), and only then are the small files removed; a look in between reads every row
once, whichever files it finds. Nothing is copied to local disk: an earlier compacted file
is read by ranges, a row group at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from flywheel import logformat
from flywheel.config import Settings
from flywheel.monitoring import logs, tables
from flywheel.monitoring.records import PREFIX as RECORDS
from flywheel.monitoring.summary import SUMMARIES, DaySummary, labels_key, summary_key
from flywheel.monitoring.tables import LogFile
from flywheel.storage import ObjectNotFound, ObjectStore, Sink, StoreError

log = logging.getLogger(__name__)

# After a day ends, how long its files may still be arriving (a worker's last flush).
SETTLED = timedelta(hours=1)
_ROW_GROUP = 250_000  # rows: a row group read back is a few tens of megabytes


@dataclass(frozen=True)
class Housekeeping:
    """What one run compacted and removed."""

    compacted: tuple[str, ...] = ()
    removed: int = 0


def settled_days(days: Collection[date], now: datetime) -> list[date]:
    """The days whose files can no longer change."""
    return sorted(
        d
        for d in days
        if datetime.combine(d, datetime.min.time(), UTC) + timedelta(days=1) + SETTLED <= now
    )


def compact(
    settings: Settings, store: ObjectStore, versions: Collection[str], days: Collection[date]
) -> Housekeeping:
    """Compact each version's prediction and feedback files of each of `days` that its stored
    summary already holds into one file per version, log and day."""
    written: list[str] = []
    removed = 0
    for version in versions:
        for day in days:
            for kind in (logs.PREDICTIONS, logs.FEEDBACK):
                done = _compact_day(settings, store, kind, version, day)
                if done is not None:
                    written.append(done[0])
                    removed += done[1]
    return Housekeeping(tuple(written), removed)


def _compact_day(
    settings: Settings, store: ObjectStore, kind: str, version: str, day: date
) -> tuple[str, int] | None:
    """One day's files of one log compacted; the new file's key and how many files it
    replaced, or None when there was nothing to do."""
    model = settings.model_name
    holder = (summary_key if kind == logs.PREDICTIONS else labels_key)(model, version, day)
    held = _held(store, kind, holder)
    if held is None:
        return None  # nothing summarised the day yet: the next look does it first
    files = tables.log_files(store, kind, model, version, day)
    target = f"{kind}/{model}/{version}/{tables.compacted_name(day)}"
    sources = [f for f in files if f.parquet and (f.key in held or f.key == target)]
    small = [f for f in sources if f.key != target]
    if not small or (len(small) < 2 and len(sources) == len(small)):
        return None  # nothing to gain
    _hold(store, kind, holder, target)
    with store.writer(target) as out:
        kept = _write(store, sources, out, model, version)
        if not kept:
            out.discard()
            return None
    for file in kept:
        if file.key != target:
            store.delete(file.key)
    replaced = sum(f.key != target for f in kept)
    log.info("compacted %d %s files of %s %s into %s", replaced, kind, version, day, target)
    return target, replaced


def _write(
    store: ObjectStore, sources: list[LogFile], out: Sink, model: str, version: str
) -> list[LogFile]:
    """The sources' rows into one Parquet file written to `out`, in row groups of up to
    `_ROW_GROUP` rows; the sources it holds (a file that cannot be read, or of other
    columns, stays where it is). A minute's file is read from memory; an earlier compacted
    file, which can be large, by ranges a row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: pq.ParquetWriter | None = None
    kept: list[LogFile] = []
    pending: list[pa.Table] = []

    def flush() -> None:
        if writer is not None and pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP)
            pending.clear()

    try:
        for file in sources:
            with contextlib.ExitStack() as opened:
                try:
                    if tables.COMPACTED in file.key:
                        source = pq.ParquetFile(opened.enter_context(store.reader(file.key)))
                    else:
                        source = pq.ParquetFile(pa.BufferReader(store.read(file.key)))
                    schema = source.schema_arrow.remove_metadata()
                    if writer is None:
                        meta = {b"model": model.encode(), b"version": version.encode()}
                        writer = pq.ParquetWriter(
                            out,
                            schema.with_metadata(meta),
                            compression=logformat.COMPACTED_COMPRESSION,
                        )
                    if not schema.equals(writer.schema.remove_metadata()):
                        continue
                    if source.metadata.num_rows >= _ROW_GROUP:  # a compacted day's file
                        flush()
                        for group in range(source.num_row_groups):
                            writer.write_table(
                                source.read_row_group(group).replace_schema_metadata(
                                    writer.schema.metadata
                                ),
                                row_group_size=_ROW_GROUP,
                            )
                    else:  # whole, so that a file that breaks halfway adds nothing
                        pending.append(
                            source.read().replace_schema_metadata(writer.schema.metadata)
                        )
                        if sum(t.num_rows for t in pending) >= _ROW_GROUP:
                            flush()
                except (pa.ArrowException, OSError, ValueError) as error:
                    if tables.COMPACTED in file.key:  # its rows may be half written: stop
                        raise StoreError(f"cannot read {file.key} to compact it: {error}") from None
                    continue
            kept.append(file)
        flush()
    finally:
        if writer is not None:
            writer.close()
    return kept


def _held(store: ObjectStore, kind: str, holder: str) -> set[str] | None:
    """The files the stored summary (or kept labels) at `holder` holds; None when none is."""
    data = store.read_optional(holder)
    if data is None:
        return None
    if kind == logs.FEEDBACK:
        table = logs.parquet_table(data)
        meta = (table.schema.metadata or {}) if table is not None else {}
        return set(json.loads(meta[b"files"])) if b"files" in meta else None
    try:
        return DaySummary.from_bytes(data).files
    except ValueError:
        return None


def _hold(store: ObjectStore, kind: str, holder: str, key: str) -> None:
    """Make the stored summary (or kept labels) at `holder` hold `key` too."""
    data = store.read(holder)
    if kind == logs.FEEDBACK:
        table = logs.parquet_table(data)
        assert table is not None  # _held read it
        files = set(json.loads((table.schema.metadata or {})[b"files"])) | {key}
        store.write(holder, logformat.to_parquet(table, {"files": json.dumps(sorted(files))}))
        return
    day = DaySummary.from_bytes(data)
    if key not in day.files:
        day.files.add(key)
        store.write(holder, day.to_bytes())


def expire(settings: Settings, store: ObjectStore, versions: Collection[str], now: datetime) -> int:
    """Remove every log file, summary and window record of a day older than
    `monitoring.retention_days`, at most once a day; how many objects were removed."""
    keep_days = settings.monitoring.retention_days
    if keep_days is None:
        return 0
    model = settings.model_name
    cutoff = (now - timedelta(days=keep_days)).date()
    marker = f"{SUMMARIES}/{model}/retention.json"
    try:
        done = date.fromisoformat(json.loads(store.read(marker))["cutoff"])
    except (ObjectNotFound, ValueError, KeyError, TypeError):
        done = None
    if done is not None and done >= cutoff:
        return 0
    removed = 0
    for version in versions:
        for prefix in (
            f"{logs.PREDICTIONS}/{model}/{version}/",
            f"{logs.FEEDBACK}/{model}/{version}/",
            f"{SUMMARIES}/{model}/{version}/",
            f"{SUMMARIES}/{model}/feedback/{version}/",
        ):
            for key in store.list(prefix):
                if _day(key[len(prefix) : len(prefix) + 10]) < cutoff:
                    store.delete(key)
                    removed += 1
        prefix = f"{RECORDS}/{model}/{version}/"
        for key in store.list(prefix):
            start = key[len(prefix) :].split("/")
            if len(start) == 3 and _day(start[1][:8], "%Y%m%d") < cutoff:
                store.delete(key)
                removed += 1
    store.write(marker, json.dumps({"cutoff": cutoff.isoformat()}).encode())
    return removed


def _day(text: str, form: str = "%Y-%m-%d") -> date:
    """A key's day; a key with none is never old enough to remove."""
    try:
        return datetime.strptime(text, form).date()
    except ValueError:
        return date.max


def tidy(
    settings: Settings,
    store: ObjectStore,
    versions: Collection[str],
    days: Collection[date],
    now: datetime,
) -> Housekeeping:
    """Compaction of the settled `days`, then expiry (both logged, neither raised: the look's
    records are stored already, and the next look tries again)."""
    try:
        done = compact(settings, store, versions, settled_days(days, now))
        return Housekeeping(done.compacted, done.removed + expire(settings, store, versions, now))
    except StoreError as error:
        log.warning("housekeeping stopped (%s): the next look tries again", error)
        return Housekeeping()
