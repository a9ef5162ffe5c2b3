"""Delayed labels for the sampled requests: the feedback log's files read, a day's kept labels
stored, and only the feedback that can join a sample kept (`Keep`, `sampled_labels`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from flywheel import logformat
from flywheel.config import Settings, StorageSettings
from flywheel.monitoring import logs
from flywheel.monitoring.logs import Label, Skipped
from flywheel.monitoring.reading import Pool
from flywheel.monitoring.summary import WindowSummary, labels_key
from flywheel.monitoring.tables import LogFile, feedback_tables, log_files
from flywheel.storage import ObjectStore, open_store

if TYPE_CHECKING:
    import pyarrow as pa


log = logging.getLogger(__name__)
# Feedback more than this newer than a prediction's window is still looked for: a prediction
# file is written within a minute, so an hour is ample.
GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class Keep:
    """Which feedback can join a sample: its key is in one, or below the threshold of one
    that does not hold every row (its request may yet be logged there); all of it when every
    sample holds its whole window (`every`)."""

    sampled: npt.NDArray[np.uint64]  # sorted, unique
    below: int
    every: bool

    def __call__(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        if self.every:
            return np.ones(len(keys), dtype=bool)
        # A binary search of the sorted sample: np.isin sorted the sample again for each of
        # a day's 2,880 feedback files.
        at = np.minimum(np.searchsorted(self.sampled, keys), max(len(self.sampled) - 1, 0))
        found = self.sampled[at] == keys if len(self.sampled) else np.zeros(len(keys), bool)
        return found | (keys < np.uint64(self.below))


def _read_labels(
    store: ObjectStore, files: list[LogFile], model: str, keep: Keep, skipped: Skipped
) -> list[pa.Table]:
    """The feedback of `files` that `keep` keeps, a file at a time."""
    import pyarrow as pa

    out = []
    for file in files:
        for table in feedback_tables(store, file, model, skipped):
            out.append(table.filter(pa.array(keep(table.column(logformat.KEY).to_numpy()))))
    return out


def _labels_in_worker(
    uri: str, storage: StorageSettings, files: list[LogFile], model: str, keep: Keep
) -> tuple[bytes, list[tuple[str, datetime, str, int]]]:
    """A worker process's share of the feedback files, as the Parquet bytes of what it keeps."""
    import pyarrow as pa

    skipped = Skipped()
    tables = _read_labels(open_store(uri, storage), files, model, keep, skipped)
    table = pa.concat_tables(tables) if tables else pa.table({})
    lost = [(v, at, reason, n) for (v, at, reason), n in skipped.counts.items()]
    return logformat.to_parquet(table), lost


def _kept_labels(
    store: ObjectStore,
    settings: Settings,
    version: str,
    day: date,
    keep: Keep,
    skipped: Skipped,
    pool: Pool | None,
) -> tuple[pa.Table | None, bool, set[str]]:
    """The labels of a version's feedback files of `day` that can join a sample: the stored
    ones, and those of files written since (read by the pool's processes, if any); whether
    anything changed; and the files read."""
    import pyarrow as pa

    key = labels_key(settings.model_name, version, day)
    tables: list[pa.Table] = []
    files: set[str] = set()
    data = store.read_optional(key)
    if data is not None:
        stored = logs.parquet_table(data)
        if stored is not None and stored.schema.metadata and b"files" in stored.schema.metadata:
            files = set(json.loads(stored.schema.metadata[b"files"]))
            tables.append(stored.replace_schema_metadata(None))
    new = [
        f
        for f in log_files(store, logs.FEEDBACK, settings.model_name, version, day)
        if f.key not in files
    ]
    if pool is not None and len(new) > 1:
        jobs = [
            pool.executor.submit(
                _labels_in_worker,
                settings.storage.uri,
                settings.storage,
                share,
                settings.model_name,
                keep,
            )
            for share in pool.shares(new)
        ]
        for job in jobs:
            data, lost = job.result()
            found = logs.parquet_table(data)
            if found is not None and found.num_rows:
                tables.append(found.replace_schema_metadata(None))
            for v, at, reason, count in lost:
                skipped.add(v, at, reason, count)
    else:
        tables += _read_labels(store, new, settings.model_name, keep, skipped)
    files |= {f.key for f in new}
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None, bool(new), files
    table = pa.concat_tables(tables, promote_options="permissive")
    before = table.num_rows
    table = table.filter(pa.array(keep(table.column(logformat.KEY).to_numpy())))
    return table, bool(new) or table.num_rows != before, files


def sampled_labels(
    settings: Settings,
    store: ObjectStore,
    known: Collection[str],
    samples: Collection[WindowSummary],
    start: datetime,
    labelled_until: datetime,
    now: datetime,
    skipped: Skipped,
    changed: dict[str, bytes],
    pool: Pool | None,
    *,
    count_unlogged: bool = True,
) -> dict[str, tuple[Label, ...]]:
    """The labels of the sampled requests, by `request_name` (a request's newest feedback wins).

    Feedback is kept when its key is in a sample, or below the threshold of a sample that
    does not hold every row (its request may yet be logged there), or all of it when every
    sample holds its whole window; the rest can never join a
    sample and is dropped. Feedback for a request that was never logged is counted when it is
    certain: its key is below every sample's threshold, it is older than the grace a
    prediction file has to be written, and it came late enough that its request would be in
    the windows read (unless not `count_unlogged`: the join of every label counts them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    sampled = np.unique(
        np.concatenate(
            [w.sample.column(logformat.KEY).to_numpy() for w in samples if w.sample.num_rows]
            or [np.zeros(0, dtype=np.uint64)]
        )
    )
    partial = [w.threshold for w in samples if not w.complete]
    # Every sample holds all its window's rows: so few that all feedback is kept.
    keep = Keep(sampled, max(partial, default=0), every=not partial)
    tables = []
    for version in known:
        for day in logs.days(start, labelled_until):
            table, fresh, files = _kept_labels(store, settings, version, day, keep, skipped, pool)
            if table is not None:
                in_range = table.filter(
                    pc.less(table.column(logformat.TIME), labelled_until.timestamp())
                )
                tables.append((version, in_range))
            if fresh:
                stored = table if table is not None else pa.table({})
                changed[labels_key(settings.model_name, version, day)] = logformat.to_parquet(
                    stored, {"files": json.dumps(sorted(files))}
                )
    by_id: dict[str, tuple[float, dict[int, Label]]] = {}
    certain = min((w.threshold for w in samples), default=0)
    counted_from = (start + timedelta(days=settings.monitoring.label_delay_days)).timestamp()
    for version, table in tables:
        rows = table.to_pydict()
        matched = np.isin(np.asarray(rows[logformat.KEY], dtype=np.uint64), sampled)
        for i, key in enumerate(rows[logformat.KEY]):
            rid = request_name(key)
            at = rows[logformat.TIME][i]
            if not matched[i]:
                if (
                    count_unlogged
                    and key < certain
                    and counted_from <= at < (now - GRACE).timestamp()
                ):
                    skipped.add(version, datetime.fromtimestamp(at, UTC), logs.NEVER_LOGGED)
                continue
            text = rows[logformat.LABEL_TEXT][i]
            label: Label = text if text is not None else rows[logformat.LABEL_NUMBER][i]
            newest, values = by_id.setdefault(rid, (at, {}))
            if at > newest:  # newer feedback replaces the request's labels
                values = {}
                by_id[rid] = (at, values)
            if at >= newest:
                values[rows[logformat.ROW][i]] = label
    return {
        rid: tuple(values[r] for r in range(len(values)))
        for rid, (_, values) in by_id.items()
        if set(values) == set(range(len(values)))
    }


def request_name(key: int) -> str:
    """What a sampled request is called in the analysis: its key, as monitoring reads no
    request id's text (the key is a hash of it, and joins its labels)."""
    return f"{key:016x}"
