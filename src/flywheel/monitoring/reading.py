"""Reading a version's prediction log into summaries: a day's stored summary, with the files
written since reduced into it (`summarise_day`), by worker processes (`Pool`) or, on the
cluster, by the hour partitions the chart's fan-out summarises (`partitions`,
`summarise_partition`).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from flywheel import logformat
from flywheel.config import Settings, StorageSettings
from flywheel.contract import Contract
from flywheel.errors import FlywheelError
from flywheel.monitoring import logs, summary, tables
from flywheel.monitoring.logs import Skipped
from flywheel.monitoring.records import WINDOW_SIZES
from flywheel.monitoring.summary import PARTS, DaySummary, WindowSummary, summary_key
from flywheel.monitoring.tables import LogFile
from flywheel.registry import Registry, RegistryError
from flywheel.storage import ObjectStore, StoreError, open_store

if TYPE_CHECKING:
    import pyarrow as pa

    from flywheel.monitoring.window import Window


log = logging.getLogger(__name__)


def windows(until: datetime, kind: Window, count: int) -> list[tuple[datetime, datetime]]:
    """The `count` complete windows that end at or before `until` (UTC), oldest first."""
    until = until.astimezone(UTC)
    size = WINDOW_SIZES[kind]
    if kind == "hour":
        end = until.replace(minute=0, second=0, microsecond=0)
    else:
        end = until.replace(hour=0, minute=0, second=0, microsecond=0)
    return [(end - (count - i) * size, end - (count - i - 1) * size) for i in range(count)]


class MonitoringError(FlywheelError, RuntimeError):
    """Monitoring could not run; the message says why and whether anything was recorded."""


def fingerprint(contract: Contract, window_seconds: int, sample_rows: int) -> str:
    """What a stored summary depends on: when any of it changes, the summary is made again."""
    import hashlib

    basis = {
        "format": summary.FORMAT,
        "window": window_seconds,
        "sample": sample_rows,
        "task": contract.task,
        "classes": [str(c) for c in contract.classes],
        "numeric": {n: list(p.edges) for n, p in contract.numeric.items()},
        "categorical": sorted(contract.categorical),
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


# Files are reduced together, up to this many rows at once: a minute's file holds a few
# hundred rows at a million a day, and reducing each alone cost more than reading it.
_BATCH_ROWS = 200_000


def _reduce_files(
    store: ObjectStore,
    files: list[LogFile],
    model: str,
    contract: Contract,
    window_seconds: int,
    sample_rows: int,
) -> tuple[dict[int, WindowSummary], Skipped]:
    """The log files' windows, and what in them was skipped."""
    import pyarrow as pa

    skipped = Skipped()
    day = DaySummary(window_seconds, sample_rows, "")
    pending: list[pa.Table] = []
    held = 0
    for file in files:
        for table in tables.prediction_tables(store, file, model, contract, skipped):
            pending.append(table)
            held += table.num_rows
            if held >= _BATCH_ROWS:
                day.add(
                    summary.reduce(pa.concat_tables(pending), contract, window_seconds, sample_rows)
                )
                pending, held = [], 0
    if pending:
        day.add(summary.reduce(pa.concat_tables(pending), contract, window_seconds, sample_rows))
    return day.windows, skipped


def _reduce_in_worker(
    uri: str,
    storage: StorageSettings,
    files: list[LogFile],
    model: str,
    contract: Contract,
    window_seconds: int,
    sample_rows: int,
) -> tuple[bytes, list[tuple[str, datetime, str, int]]]:
    """A worker process's share of the files, merged, as bytes the parent merges."""
    found, skipped = _reduce_files(
        open_store(uri, storage), files, model, contract, window_seconds, sample_rows
    )
    day = DaySummary(window_seconds, sample_rows, "", windows=found)
    return day.to_bytes(), [(v, at, reason, n) for (v, at, reason), n in skipped.counts.items()]


def summarise_day(
    settings: Settings,
    store: ObjectStore,
    version: str,
    day: date,
    contract: Contract,
    *,
    pool: Pool | None = None,
) -> tuple[DaySummary, bool]:
    """The summary of a version's log files of `day`: the stored one, with the files written
    since reduced into it (by the pool's processes, if any); and whether it changed."""
    policy = settings.monitoring
    window_seconds = int(WINDOW_SIZES[policy.window].total_seconds())
    mark = fingerprint(contract, window_seconds, policy.sample_rows)
    key = summary_key(settings.model_name, version, day)
    day_summary = DaySummary(window_seconds, policy.sample_rows, mark)
    data = store.read_optional(key)
    if data is not None:
        try:
            stored = DaySummary.from_bytes(data)
        except ValueError as error:
            log.warning("%s: %s; summarising its files again", key, error)
        else:
            if stored.fingerprint == mark:
                day_summary = stored
    folded = _fold_parts(store, key, day_summary)
    new = [
        f
        for f in tables.log_files(store, logs.PREDICTIONS, settings.model_name, version, day)
        if f.key not in day_summary.files
    ]
    if not new:
        return day_summary, folded
    found: list[tuple[dict[int, WindowSummary], list[tuple[str, datetime, str, int]]]] = []
    if pool is not None and len(new) > 1:
        found = _fan_out(settings, new, contract, window_seconds, pool)
    else:
        windows, skipped = _reduce_files(
            store, new, settings.model_name, contract, window_seconds, policy.sample_rows
        )
        found.append((windows, [(*k, n) for k, n in skipped.counts.items()]))
    for windows, lost in found:
        day_summary.add(windows)
        for _, at, reason, count in lost:
            day_summary.skip(at, reason, count)
    day_summary.files |= {f.key for f in new}
    return day_summary, True


def _fold_parts(store: ObjectStore, key: str, day: DaySummary) -> bool:
    """Merge in the partition summaries the cluster's fan-out stored beside the day's (a part
    made from files the day already holds is stale, and left out); whether any was."""
    folded = False
    for part_key in sorted(store.list(f"{key}{PARTS}")):
        try:
            part = DaySummary.from_bytes(store.read(part_key))
        except ValueError as error:
            log.warning("%s: %s; its files are read again", part_key, error)
            continue
        if part.fingerprint != day.fingerprint or part.files & day.files:
            continue
        day.absorb(part)
        day.folded.append(part_key)
        folded = True
    return folded


def partitions(
    settings: Settings,
    registry: Registry,
    *,
    until: datetime | None = None,
    now: datetime | None = None,
) -> list[dict[str, str]]:
    """The hours of log files that no summary holds yet, in the windows a look reads: what
    the chart's fan-out summarises in parallel, one step each (`summarise_partition`)."""
    now = now or datetime.now(UTC)
    policy = settings.monitoring
    spans = windows(until or now, policy.window, policy.windows)
    store = registry.store
    found: set[tuple[str, str, str]] = set()
    try:
        for manifest in registry.versions():
            version = manifest.version
            for day in logs.days(spans[0][0], spans[-1][1] + timedelta(days=1)):
                held = _held(store, summary_key(settings.model_name, version, day))
                for file in tables.log_files(
                    store, logs.PREDICTIONS, settings.model_name, version, day
                ):
                    if file.key not in held:
                        found.add((version, day.isoformat(), f"{file.written:%H}"))
    except StoreError as error:
        raise MonitoringError(
            f"cannot list {settings.model_name}'s logs in {settings.storage.uri}: {error}"
        ) from None
    return [{"version": v, "day": d, "hour": h} for v, d, h in sorted(found)]


def _held(store: ObjectStore, key: str, but: str = "") -> set[str]:
    """The log files the day's stored summary, or a part beside it, already holds (an
    unreadable one holds none: its files are summarised again)."""
    held: set[str] = set()
    for found in [key, *(p for p in store.list(f"{key}{PARTS}") if p != but)]:
        data = store.read_optional(found)
        try:
            held |= DaySummary.from_bytes(data).files if data is not None else set()
        except ValueError:
            continue
    return held


def summarise_partition(
    settings: Settings, registry: Registry, version: str, day: date, hour: int
) -> str:
    """Summarise one version's log files written in one hour that no summary holds yet, and
    store the part beside the day's summary, for the next look to fold in; returns its key."""
    policy = settings.monitoring
    window_seconds = int(WINDOW_SIZES[policy.window].total_seconds())
    store = registry.store
    try:
        contract = Contract.from_json(registry.read(version, "contract.json"))
        key = summary_key(settings.model_name, version, day)
        part_key = f"{key}{PARTS}{hour:02d}{logformat.SUFFIX}"
        # This hour's part, from an earlier try, is made again.
        held = _held(store, key, but=part_key)
        part = DaySummary(
            window_seconds,
            policy.sample_rows,
            fingerprint(contract, window_seconds, policy.sample_rows),
        )
        files = [
            f
            for f in tables.log_files(store, logs.PREDICTIONS, settings.model_name, version, day)
            if f.written.hour == hour and f.key not in held
        ]
        found, skipped = _reduce_files(
            store, files, settings.model_name, contract, window_seconds, policy.sample_rows
        )
        part.add(found)
        for (_, at, reason), count in skipped.counts.items():
            part.skip(at, reason, count)
        part.files |= {f.key for f in files}
        store.write(part_key, part.to_bytes())
    except (StoreError, RegistryError) as error:
        raise MonitoringError(
            f"cannot summarise {version}'s logs of {day} {hour:02d}h in {settings.storage.uri}: "
            f"{error}; nothing was stored"
        ) from None
    return store.location(part_key)


@dataclass(frozen=True)
class Pool:
    """The worker processes of one look (`--workers`): the local twin of the chart's fan-out."""

    executor: Executor
    workers: int
    scorer: Executor | None = None  # the process the versions' models are loaded in

    def shares(self, files: list[LogFile]) -> list[list[LogFile]]:
        """`files` dealt out, one share a worker."""
        return [files[i :: self.workers] for i in range(self.workers) if files[i :: self.workers]]


def _fan_out(
    settings: Settings,
    files: list[LogFile],
    contract: Contract,
    window_seconds: int,
    pool: Pool,
) -> list[tuple[dict[int, WindowSummary], list[tuple[str, datetime, str, int]]]]:
    """The files reduced by the pool's processes, a share each."""
    jobs = [
        pool.executor.submit(
            _reduce_in_worker,
            settings.storage.uri,
            settings.storage,
            share,
            settings.model_name,
            contract,
            window_seconds,
            settings.monitoring.sample_rows,
        )
        for share in pool.shares(files)
    ]
    out = []
    for job in jobs:
        data, lost = job.result()
        out.append((DaySummary.from_bytes(data).windows, lost))
    return out
