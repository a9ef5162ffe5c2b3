"""A monitoring run: the complete windows up to now, for production and any other served version.

Everything is read and computed before anything is written, so a store that
fails while being read leaves no record behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from flywheel import batches, logformat
from flywheel.batches import BatchError
from flywheel.config import Settings, StorageSettings
from flywheel.contract import Contract
from flywheel.errors import FlywheelError
from flywheel.evaluation import Evaluation
from flywheel.monitoring import logs, summary
from flywheel.monitoring.analysis import (
    Role,
    VersionReference,
    Window,
    WindowReport,
    analyse_window,
)
from flywheel.monitoring.cache import WindowCache, reference_fingerprint, window_key
from flywheel.monitoring.estimation import MIN_REFERENCE_ROWS, DirectLoss
from flywheel.monitoring.housekeeping import Housekeeping, tidy
from flywheel.monitoring.logs import Label, LogFile, Prediction, Skipped
from flywheel.monitoring.records import WINDOW_SIZES, write_record
from flywheel.monitoring.served import Sampled, Served
from flywheel.monitoring.summary import PARTS, DaySummary, WindowSummary, labels_key, summary_key
from flywheel.predictor import Predictor, load_model
from flywheel.registry import MODEL_FILE, PRODUCTION, AliasState, Registry, RegistryError
from flywheel.storage import ObjectNotFound, ObjectStore, StoreError, StoreUnavailable, open_store

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)
# Feedback more than this newer than a prediction's window is still looked for: a prediction
# file is written within a minute, so an hour is ample.
_GRACE = timedelta(hours=1)


class MonitoringError(FlywheelError, RuntimeError):
    """Monitoring could not run; the message says why and whether anything was recorded."""


@dataclass(frozen=True)
class MonitorResult:
    """The reports of one run, the log lines it skipped, and where the reports were stored."""

    reports: tuple[WindowReport, ...]
    skipped: dict[str, int]
    records: tuple[str, ...]
    housekeeping: Housekeeping = field(default_factory=Housekeeping)


def windows(until: datetime, kind: Window, count: int) -> list[tuple[datetime, datetime]]:
    """The `count` complete windows that end at or before `until` (UTC), oldest first."""
    until = until.astimezone(UTC)
    size = WINDOW_SIZES[kind]
    if kind == "hour":
        end = until.replace(minute=0, second=0, microsecond=0)
    else:
        end = until.replace(hour=0, minute=0, second=0, microsecond=0)
    return [(end - (count - i) * size, end - (count - i - 1) * size) for i in range(count)]


# The models loaded in a look's scoring process (`Remote`), by version.
_LOADED: dict[str, Predictor] = {}


def _load_in_scorer(version: str, raw: bytes, numeric: list[str], categorical: list[str]) -> None:
    """Load a version's model in the scoring process, for `_outputs_in_scorer`."""
    _LOADED[version] = Predictor(load_model(raw), numeric, categorical)


def _outputs_in_scorer(version: str, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """A loaded version's answers to `frame`, in the scoring process (on one thread, as
    `analysis._skew` scores: a few hundred rows)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _LOADED[version].outputs(frame)


@dataclass(frozen=True)
class Remote:
    """A version's model loaded and run in a process of its own (a look with `--workers`):
    unpickling it imports scikit-learn, a second of CPU that would otherwise hold up the
    look's own process, which needs only its answers to a few hundred rows."""

    process: Executor
    version: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    loaded: Future[None]

    @classmethod
    def load(cls, process: Executor, version: str, raw: bytes, contract: Contract) -> Remote:
        """Start loading `raw` (a model file) in `process`."""
        numeric, categorical = list(contract.numeric), list(contract.categorical)
        loaded = process.submit(_load_in_scorer, version, raw, numeric, categorical)
        return cls(process, version, tuple(numeric), tuple(categorical), loaded)

    @property
    def columns(self) -> tuple[str, ...]:
        """Input columns in order."""
        return (*self.numeric, *self.categorical)

    def outputs(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """The model's answers, as `Predictor.outputs`; a model that did not load raises its
        error here."""
        self.loaded.result()
        return self.process.submit(_outputs_in_scorer, self.version, frame).result()


def load_reference(
    registry: Registry,
    source: batches.BatchSource,
    version: str,
    scorer: Executor | None = None,
) -> VersionReference:
    """A version's contract, its own evaluation (as the candidate it was) and its model
    (loaded in the `scorer` process, if one is given), with the rows of `source` its
    contract was inferred from."""
    manifest = registry.manifest(version)
    contract_bytes = registry.read(version, "contract.json")
    contract = Contract.from_json(contract_bytes)
    evaluated, evaluation_bytes = None, None
    try:
        evaluation_bytes = registry.read(version, "evaluation.json")
        evaluated = Evaluation.model_validate_json(evaluation_bytes)
    except (RegistryError, ValidationError) as error:
        log.warning("%s has no usable evaluation.json (%s): no offline comparison", version, error)
    model_bytes = registry.read(version, MODEL_FILE)
    predictor: Predictor | Remote = (
        Remote.load(scorer, version, model_bytes, contract)
        if scorer is not None
        else Predictor(load_model(model_bytes), list(contract.numeric), list(contract.categorical))
    )
    newest, outputs, direct_loss = None, None, None
    why = "the version has no evaluation to name rows it never trained on"
    if contract.task != "binary" and evaluated is not None:
        newest, why = newest_rows(source, contract, evaluated.newest_batch)
    if newest is not None:
        outputs = predictor.outputs(newest)
        if contract.task == "regression":
            direct_loss, why = fit_direct_loss(newest, outputs[:, 0], contract)
    rows = reference_rows(source, contract)
    return VersionReference(
        version=version,
        created_at=datetime.fromisoformat(manifest.created_at),
        contract=contract,
        evaluation=evaluated.candidate if evaluated else None,
        predictor=predictor,
        rows=rows,
        newest_outputs=outputs,
        direct_loss=direct_loss,
        no_direct_loss=why,
        fingerprint=reference_fingerprint(
            version,
            [manifest.created_at, contract_bytes, evaluation_bytes, model_bytes, why],
            [rows, newest],
        ),
    )


def newest_rows(
    source: batches.BatchSource, contract: Contract, batch: str
) -> tuple[pd.DataFrame | None, str]:
    """The rows of `batch` (a version's evaluation's newest, which it never trained on), or None
    and why they cannot be had."""
    try:
        found = {b.day.isoformat(): b for b in source.available()}.get(batch[:10])
        if found is None:
            return None, f"its evaluation's newest batch {batch} is gone from the source"
        frame = batches.parse(found.name, source.store.read(found.key))
    except (StoreError, BatchError) as error:
        if isinstance(error, StoreUnavailable):
            raise
        return None, f"its evaluation's newest batch {batch} cannot be read ({error})"
    return frame.reset_index(drop=True), ""


def fit_direct_loss(
    frame: pd.DataFrame, predictions: npt.NDArray[np.float64], contract: Contract
) -> tuple[DirectLoss | None, str]:
    """A regression's error models, fitted on its evaluation's newest batch; or None and why."""
    import numpy as np

    labels = contract.problem.targets(frame[contract.label])
    keep = np.isfinite(labels)
    if keep.sum() < MIN_REFERENCE_ROWS:
        return None, (
            f"its evaluation's newest batch has {int(keep.sum())} labelled rows; direct loss "
            f"estimation needs {MIN_REFERENCE_ROWS}"
        )
    return DirectLoss.fit(
        frame[keep].reset_index(drop=True),
        labels[keep],
        predictions[keep],
        list(contract.numeric),
        list(contract.categorical),
    ), ""


def reference_rows(source: batches.BatchSource, contract: Contract) -> pd.DataFrame | None:
    """The batches of `source` the contract was inferred from, or None (and the tests fall
    back to the contract's bins) when any of them cannot be read."""
    import pandas as pd

    try:
        files = {b.day.isoformat(): b for b in source.available()}
        chosen = [files[name[:10]] for name in contract.batches if name[:10] in files]
        if len(chosen) < len(contract.batches):
            raise BatchError(f"{len(contract.batches) - len(chosen)} of them are gone")
        frames = [batches.parse(b.name, source.store.read(b.key)) for b in chosen]
    except (StoreError, BatchError) as error:
        if isinstance(error, StoreUnavailable):
            raise
        log.warning("reference batches unreadable (%s): testing against the contract's bins", error)
        return None
    return pd.concat(frames, ignore_index=True) if frames else None


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
        for table in logs.prediction_tables(store, file, model, contract, skipped):
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
    data = _optional(store, key)
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
        for f in logs.log_files(store, logs.PREDICTIONS, settings.model_name, version, day)
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
                for file in logs.log_files(
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
        data = _optional(store, found)
        try:
            held |= DaySummary.from_bytes(data).files if data is not None else set()
        except ValueError:
            continue
    return held


def _optional(store: ObjectStore, key: str) -> bytes | None:
    """The object at `key`, or None when there is none."""
    try:
        return store.read(key)
    except ObjectNotFound:
        return None


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
            for f in logs.log_files(store, logs.PREDICTIONS, settings.model_name, version, day)
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
        table = logs.feedback_table(store, file, model, skipped)
        if table is not None:
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
    data = _optional(store, key)
    if data is not None:
        stored = logs.parquet_table(data)
        if stored is not None and stored.schema.metadata and b"files" in stored.schema.metadata:
            files = set(json.loads(stored.schema.metadata[b"files"]))
            tables.append(stored.replace_schema_metadata(None))
    new = [
        f
        for f in logs.log_files(store, logs.FEEDBACK, settings.model_name, version, day)
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


def monitor(
    settings: Settings,
    registry: Registry,
    source: batches.BatchSource,
    *,
    until: datetime | None = None,
    versions: Collection[str] = (),
    record: bool = True,
    now: datetime | None = None,
    workers: int = 1,
    housekeeping: bool = True,
    cache: WindowCache | None = None,
) -> MonitorResult:
    """Analyse every complete window up to `until` in the logs of `registry`'s store and
    (with `record`) store the reports there, and the summaries that let the next look read
    only new files; `source` holds the versions' reference batches. With a `cache` (kept
    from look to look by a process that looks again), a window whose inputs are unchanged
    since an earlier look takes that look's report, as computed at `now`."""
    now = now or datetime.now(UTC)
    policy = settings.monitoring
    spans = windows(until or now, policy.window, policy.windows)
    with contextlib.ExitStack() as stack:
        pool = None
        scorer = None
        if workers > 1:
            executor = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
            # The models are loaded and run in a process of their own (`Remote`), started
            # afresh, not forked: OpenMP, which scikit-learn's models score with, hangs in a
            # child forked from a process that had used it (a test's, or `flywheel simulate`).
            scorer = stack.enter_context(
                ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            )
            # The workers are forked now, before the loader thread starts: forked while
            # that thread ran a subprocess (numpy runs one as scikit-learn is imported), a
            # worker kept the subprocess's pipe open and the look waited for ever. (The
            # scoring process is spawned by its first task: nothing waits for it to start.)
            for started in [executor.submit(int) for _ in range(workers)]:
                started.result()
            pool = Pool(executor, workers, scorer)
        # Loading a version's model and reference rows takes a second or two (scikit-learn's
        # imports): production's loads while the pool reads the logs.
        loader = stack.enter_context(ThreadPoolExecutor(max_workers=1))
        return _look(
            settings,
            registry,
            source,
            spans,
            versions,
            record,
            now,
            pool,
            loader,
            housekeeping,
            cache,
        )


def _look(
    settings: Settings,
    registry: Registry,
    source: batches.BatchSource,
    spans: list[tuple[datetime, datetime]],
    versions: Collection[str],
    record: bool,
    now: datetime,
    pool: Pool | None,
    loader: Executor,
    housekeeping: bool,
    cache: WindowCache | None = None,
) -> MonitorResult:
    """`monitor`'s work, with its worker processes and its loader thread."""
    policy = settings.monitoring
    start, end = spans[0][0], spans[-1][1]
    store = registry.store
    skipped = Skipped()
    changed: dict[str, bytes] = {}
    folded: dict[str, list[str]] = {}
    try:
        manifests = registry.versions()
        known = [m.version for m in manifests]
        production = registry.resolve(PRODUCTION)
        # A window's role is the alias's then, not today's: v1 was production before v2.
        roles = production_by_window(registry.history(PRODUCTION, since=start), spans)
        wanted = {registry.lookup(v) for v in versions}
        contracts = {
            v: Contract.from_json(registry.read(v, "contract.json"))
            for v in known
            if not wanted or v in wanted
        }
        early: dict[str, Future[VersionReference]] = {}
        scorer = pool.scorer if pool is not None else None
        if production is not None and production in contracts:
            early[production] = loader.submit(load_reference, registry, source, production, scorer)
        # A file is written up to a flush interval after its rows: read one day further.
        log_days = logs.days(start, end + timedelta(days=1))
        merged: dict[str, dict[int, WindowSummary]] = {}
        for version, contract in contracts.items():
            for day in log_days:
                found, fresh = summarise_day(settings, store, version, day, contract, pool=pool)
                if fresh:
                    key = summary_key(settings.model_name, version, day)
                    changed[key] = found.to_bytes()
                    folded[key] = found.folded
                for at, counts in found.skipped.items():
                    for reason, count in counts.items():
                        skipped.add(version, datetime.fromtimestamp(at, UTC), reason, count)
                for at, part in found.windows.items():
                    have = merged.setdefault(version, {}).get(at)
                    merged[version][at] = part if have is None else have.merge(part)
        for by_start in merged.values():
            for merging in by_start.values():
                merging.cut()
        inside = {
            v: {
                int(a.timestamp()): window
                for a, _ in spans
                if (window := merged.get(v, {}).get(int(a.timestamp()))) is not None
            }
            for v in contracts
        }
        samples = [w for by_start in inside.values() for w in by_start.values()]
        labelled_until = min(end + timedelta(days=policy.label_delay_days), now)
        labels = _labels(
            settings, store, known, samples, start, labelled_until, now, skipped, changed, pool
        )
        served = sorted(
            {v for v, by_start in inside.items() if by_start}
            | ({production} if production and (not wanted or production in wanted) else set())
        )
        references = {
            v: early[v].result() if v in early else load_reference(registry, source, v, scorer)
            for v in served
        }
    except StoreError as error:
        raise MonitoringError(
            f"cannot read {settings.model_name}'s logs and registry from "
            f"{settings.storage.uri}: {error}; nothing was recorded"
        ) from None
    reports: list[WindowReport] = []
    for version, reference in references.items():
        for window_start, window_end in spans:
            summarised = inside.get(version, {}).get(int(window_start.timestamp()))
            lost = skipped.between(version, window_start, window_end)
            if summarised is None and not lost:
                continue
            sample = [] if summarised is None else served_of(summarised, version, reference)
            role: Role = "production" if version == roles[window_start] else "canary"
            digest = None
            if cache is not None:
                digest = window_key(
                    summarised,
                    sample,
                    labels,
                    reference,
                    policy,
                    settings.contract,
                    model=settings.model_name,
                    role=role,
                    start=window_start,
                    end=window_end,
                    skipped=lost,
                )
                reused = cache.get(digest, now)
                if reused is not None:
                    reports.append(reused)
                    continue
            report = analyse_window(
                sample,
                labels,
                reference,
                policy,
                model=settings.model_name,
                role=role,
                start=window_start,
                end=window_end,
                skipped=lost,
                now=now,
                contract_policy=settings.contract,
                summary=summarised,
            )
            if cache is not None:
                cache.put(digest, report)
            reports.append(report)
    totals: Counter[str] = Counter()
    for (_, _, reason), count in skipped.counts.items():
        totals[reason] += count
    written: tuple[str, ...] = ()
    kept = Housekeeping()
    if record:
        written = tuple(_record(registry, reports))
        _store_summaries(store, changed, folded)
        if housekeeping:
            kept = tidy(settings, store, list(contracts), log_days, now)
    return MonitorResult(
        reports=tuple(reports),
        skipped=dict(sorted(totals.items())),
        records=written,
        housekeeping=kept,
    )


def production_by_window(
    history: Sequence[AliasState], spans: Sequence[tuple[datetime, datetime]]
) -> dict[datetime, str | None]:
    """The version production pointed at for the longest part of each window, by the alias's
    revisions (oldest first; None if it was never set). Before its first revision, the
    first version counts: no record says another served (a store older than its aliases)."""
    moves = [(datetime.fromisoformat(state.at), state.version) for state in history]
    if moves:
        moves[0] = (datetime.min.replace(tzinfo=UTC), moves[0][1])
    ends = [at for at, _ in moves[1:]] + [datetime.max.replace(tzinfo=UTC)]
    held: dict[datetime, str | None] = {}
    for start, end in spans:
        longest: dict[str, timedelta] = {}
        for (since, version), until in zip(moves, ends, strict=True):
            overlap = min(until, end) - max(since, start)
            if overlap > timedelta(0):
                longest[version] = longest.get(version, timedelta(0)) + overlap
        held[start] = max(longest, key=lambda v: longest[v]) if longest else None
    return held


def _labels(
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
) -> dict[str, tuple[Label, ...]]:
    """The labels of the sampled requests, by `request_name` (a request's newest feedback wins).

    Feedback is kept when its key is in a sample, or below the threshold of a sample that
    does not hold every row (its request may yet be logged there), or all of it when every
    sample holds its whole window; the rest can never join a
    sample and is dropped. Feedback for a request that was never logged is counted when it is
    certain: its key is below every sample's threshold, it is older than the grace a
    prediction file has to be written, and it came late enough that its request would be in
    the windows read."""
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
                if key < certain and counted_from <= at < (now - _GRACE).timestamp():
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


def served_of(
    window: WindowSummary, version: str, reference: VersionReference
) -> Served | list[Prediction]:
    """A window's sampled rows as the analysis reads them: as columns, or (a sample whose
    answers are not of the task's width) as requests."""
    width = 1 if reference.task == "regression" else len(reference.contract.classes)
    try:
        return Sampled(window.sample, reference.task, width)
    except ValueError:
        return predictions_of(window, version)


def predictions_of(window: WindowSummary, version: str) -> list[Prediction]:
    """A window's sampled requests, oldest first, as the analysis reads them."""
    rows = window.sample.to_pydict()
    inputs = [c for c in rows if c.startswith(logformat.INPUT)]
    outputs = [c for c in rows if c.startswith(logformat.OUTPUT)]
    features = tuple(c[len(logformat.INPUT) :] for c in inputs)
    by_request: dict[str, list[int]] = {}
    for i, key in enumerate(rows[logformat.KEY]):
        by_request.setdefault(request_name(key), []).append(i)
    out = []
    for rid, at in by_request.items():
        at.sort(key=lambda i: rows[logformat.ROW][i])
        first = at[0]
        latency = rows[logformat.LATENCY][first]
        out.append(
            Prediction(
                request_id=rid,
                version=version,
                time=rows[logformat.TIME][first],
                latency_ms=latency if latency is not None and math.isfinite(latency) else None,
                features=features,
                inputs=tuple(tuple(rows[c][i] for c in inputs) for i in at),
                outputs=tuple(tuple(rows[c][i] for c in outputs) for i in at),
            )
        )
    return sorted(out, key=lambda p: p.time)


def _store_summaries(
    store: ObjectStore, changed: Mapping[str, bytes], folded: Mapping[str, list[str]]
) -> None:
    """Keep what this look summarised, for the next, and drop the parts folded in; a failure
    only costs the next look time."""
    for key, data in changed.items():
        try:
            store.write(key, data)
            for part in folded.get(key, ()):
                store.delete(part)
        except StoreError as error:
            log.warning(
                "cannot store the summary %s (%s): the next look reads its files again", key, error
            )
            return


def _record(registry: Registry, reports: list[WindowReport]) -> list[str]:
    written: list[str] = []
    for report in reports:
        try:
            written.append(write_record(registry.store, report))
        except StoreError as error:
            raise MonitoringError(
                f"cannot store the monitoring record of {report.version} {report.start:%Y-%m-%d %H:%M}: "
                f"{error}; {len(written)} of {len(reports)} records were stored before it"
            ) from None
    return written
