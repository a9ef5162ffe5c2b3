"""A monitoring run: the complete windows up to now, for production and any other served version.

Everything is read and computed before anything is written, so a store that
fails while being read leaves no record behind.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from flywheel import batches, logformat
from flywheel.config import Settings
from flywheel.contract import Contract
from flywheel.monitoring import logs
from flywheel.monitoring.analysis import analyse_window
from flywheel.monitoring.cache import WindowCache, window_key
from flywheel.monitoring.feedback import GRACE, request_name, sampled_labels
from flywheel.monitoring.housekeeping import Housekeeping, tidy
from flywheel.monitoring.joined import JoinedLook, Reach, join_labels
from flywheel.monitoring.logs import Prediction, Skipped
from flywheel.monitoring.reading import MonitoringError, Pool, summarise_day, windows
from flywheel.monitoring.records import write_record
from flywheel.monitoring.reference import load_reference
from flywheel.monitoring.rescored import rescored_key
from flywheel.monitoring.served import Sampled, Served
from flywheel.monitoring.summary import WindowSummary, summary_key
from flywheel.monitoring.window import Role, VersionReference, WindowReport
from flywheel.registry import PRODUCTION, AliasState, Registry
from flywheel.storage import ObjectStore, StoreError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorResult:
    """The reports of one run, the log lines it skipped, and where the reports were stored."""

    reports: tuple[WindowReport, ...]
    skipped: dict[str, int]
    records: tuple[str, ...]
    housekeeping: Housekeeping = field(default_factory=Housekeeping)


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
            # The models are loaded and run in a process of their own (`Remote`). It scores
            # on one thread: OpenMP, which scikit-learn's models score with, hangs on more in
            # a child forked from a process that had used it (a test's, `flywheel simulate`).
            scorer = stack.enter_context(ProcessPoolExecutor(max_workers=1))
            # Every process is forked now, before the loader thread starts: forked while
            # that thread ran a subprocess (numpy runs one as scikit-learn is imported), a
            # worker kept the subprocess's pipe open and the look waited for ever.
            for started in [executor.submit(int) for _ in range(workers)] + [scorer.submit(int)]:
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
        every = policy.label_join == "every"
        labels = sampled_labels(
            settings,
            store,
            known,
            samples,
            start,
            labelled_until,
            now,
            skipped,
            changed,
            pool,
            count_unlogged=not every,
        )
        served = sorted(
            {v for v, by_start in inside.items() if by_start}
            | ({production} if production and (not wanted or production in wanted) else set())
        )
        references = {
            v: early[v].result() if v in early else load_reference(registry, source, v, scorer)
            for v in served
        }
        joined = JoinedLook()
        if every:
            # Feedback for a request never logged is certain once its request would be in
            # the days read: after the label delay from their start, and a file's grace
            # before their end (a row is filed by the day its file was written).
            read_until = datetime.combine(log_days[-1] + timedelta(days=1), time(), UTC)
            joined = join_labels(
                store,
                settings.storage,
                settings.model_name,
                {v: contracts[v] for v in merged},
                known,
                Reach(
                    spans,
                    log_days,
                    logs.days(start, labelled_until),
                    labelled_until,
                    unlogged=(
                        start + timedelta(days=policy.label_delay_days),
                        min(now, read_until) - GRACE,
                    ),
                ),
                policy.confidence,
                pool,
            )
            for (version, second), count in joined.never_logged.items():
                skipped.add(version, datetime.fromtimestamp(second, UTC), logs.NEVER_LOGGED, count)
    except StoreError as error:
        raise MonitoringError(
            f"cannot read {settings.model_name}'s logs and registry from "
            f"{settings.storage.uri}: {error}; nothing was recorded"
        ) from None
    reports: list[WindowReport] = []
    repeated = 0
    for version, reference in references.items():
        for window_start, window_end in spans:
            summarised = inside.get(version, {}).get(int(window_start.timestamp()))
            lost = skipped.between(version, window_start, window_end)
            at = int(window_start.timestamp())
            # Rows logged again under a request id: counted once, the rest here (by the
            # join when it ran, else among the sampled requests).
            duplicates = (
                joined.duplicates.get(version, {}).get(at, 0)
                if every
                else (summarised.duplicates if summarised is not None else 0)
            )
            if duplicates:
                count = lost.get(logs.DUPLICATE, 0) + duplicates
                lost = dict(sorted({**lost, logs.DUPLICATE: count}.items()))
                repeated += duplicates
            if summarised is None and not lost:
                continue
            sample = [] if summarised is None else served_of(summarised, version, reference)
            role: Role = "production" if version == roles[window_start] else "canary"
            every_label = joined.performance.get(version, {}).get(at)
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
                    every_label=every_label,
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
                every_label=every_label,
            )
            if cache is not None:
                cache.put(digest, report)
            reports.append(report)
    totals: Counter[str] = Counter({logs.DUPLICATE: repeated} if repeated else {})
    for (_, _, reason), count in skipped.counts.items():
        totals[reason] += count
    for version, reference in references.items():
        if reference.rescored.changed:
            changed[rescored_key(settings.model_name, version)] = reference.rescored.to_bytes()
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
    ends = [at for at, _ in moves[1:]] + [datetime.max.replace(tzinfo=UTC)] if moves else []
    held: dict[datetime, str | None] = {}
    for start, end in spans:
        longest: dict[str, timedelta] = {}
        for (since, version), until in zip(moves, ends, strict=True):
            overlap = min(until, end) - max(since, start)
            if overlap > timedelta(0):
                longest[version] = longest.get(version, timedelta(0)) + overlap
        held[start] = max(longest, key=lambda v: longest[v]) if longest else None
    return held


def served_of(
    window: WindowSummary, version: str, reference: VersionReference
) -> Served | list[Prediction]:
    """A window's sampled rows as the analysis reads them: as columns, or (a sample whose
    answers are not of the task's width) as requests."""
    try:
        return Sampled(window.sample, reference.task, reference.contract.problem.width)
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
