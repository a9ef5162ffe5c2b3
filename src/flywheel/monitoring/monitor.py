"""A monitoring run: the complete windows up to now, for production and any other served version.

Everything is read and computed before anything is written, so a store that
fails while being read leaves no record behind.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError

from flywheel import batches
from flywheel.batches import BatchError
from flywheel.config import Settings
from flywheel.contract import Contract
from flywheel.errors import FlywheelError
from flywheel.evaluation import Evaluation
from flywheel.monitoring.analysis import VersionReference, Window, WindowReport, analyse_window
from flywheel.monitoring.estimation import MIN_REFERENCE_ROWS, DirectLoss
from flywheel.monitoring.logs import Skipped, read_labels, read_predictions
from flywheel.monitoring.records import WINDOW_SIZES, write_record
from flywheel.predictor import Predictor, load_model
from flywheel.registry import MODEL_FILE, PRODUCTION, Registry, RegistryError
from flywheel.storage import StoreError, StoreUnavailable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

log = logging.getLogger(__name__)


class MonitoringError(FlywheelError, RuntimeError):
    """Monitoring could not run; the message says why and whether anything was recorded."""


@dataclass(frozen=True)
class MonitorResult:
    """The reports of one run, the log lines it skipped, and where the reports were stored."""

    reports: tuple[WindowReport, ...]
    skipped: dict[str, int]
    records: tuple[str, ...]


def windows(until: datetime, kind: Window, count: int) -> list[tuple[datetime, datetime]]:
    """The `count` complete windows that end at or before `until` (UTC), oldest first."""
    until = until.astimezone(UTC)
    size = WINDOW_SIZES[kind]
    if kind == "hour":
        end = until.replace(minute=0, second=0, microsecond=0)
    else:
        end = until.replace(hour=0, minute=0, second=0, microsecond=0)
    return [(end - (count - i) * size, end - (count - i - 1) * size) for i in range(count)]


def load_reference(
    registry: Registry, source: batches.BatchSource, version: str
) -> VersionReference:
    """A version's contract, its own evaluation (as the candidate it was) and its model, with
    the rows of `source` its contract was inferred from."""
    manifest = registry.manifest(version)
    contract = Contract.from_json(registry.read(version, "contract.json"))
    evaluated = None
    try:
        evaluated = Evaluation.model_validate_json(registry.read(version, "evaluation.json"))
    except (RegistryError, ValidationError) as error:
        log.warning("%s has no usable evaluation.json (%s): no offline comparison", version, error)
    predictor = Predictor(
        load_model(registry.read(version, MODEL_FILE)),
        list(contract.numeric),
        list(contract.categorical),
    )
    newest, outputs, direct_loss = None, None, None
    why = "the version has no evaluation to name rows it never trained on"
    if contract.task != "binary" and evaluated is not None:
        newest, why = newest_rows(source, contract, evaluated.newest_batch)
    if newest is not None:
        outputs = predictor.outputs(newest)
        if contract.task == "regression":
            direct_loss, why = fit_direct_loss(newest, outputs[:, 0], contract)
    return VersionReference(
        version=version,
        created_at=datetime.fromisoformat(manifest.created_at),
        contract=contract,
        evaluation=evaluated.candidate if evaluated else None,
        predictor=predictor,
        rows=reference_rows(source, contract),
        newest_outputs=outputs,
        direct_loss=direct_loss,
        no_direct_loss=why,
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


def monitor(
    settings: Settings,
    registry: Registry,
    source: batches.BatchSource,
    *,
    until: datetime | None = None,
    versions: Collection[str] = (),
    record: bool = True,
    now: datetime | None = None,
) -> MonitorResult:
    """Analyse every complete window up to `until` in the logs of `registry`'s store and
    (with `record`) store the reports there; `source` holds the versions' reference batches."""
    now = now or datetime.now(UTC)
    policy = settings.monitoring
    spans = windows(until or now, policy.window, policy.windows)
    start, end = spans[0][0], spans[-1][1]
    skipped = Skipped()
    try:
        known = [m.version for m in registry.versions()]
        production = registry.resolve(PRODUCTION)
        predictions = read_predictions(
            registry.store, settings.model_name, known, start, end, skipped
        )
        labelled_until = min(end + timedelta(days=policy.label_delay_days), now)
        labels = read_labels(
            registry.store, settings.model_name, known, start, labelled_until, skipped
        )
        served = sorted({p.version for p in predictions} | ({production} if production else set()))
        wanted = {registry.lookup(v) for v in versions}
        references = {
            v: load_reference(registry, source, v) for v in served if not wanted or v in wanted
        }
    except StoreError as error:
        raise MonitoringError(
            f"cannot read {settings.model_name}'s logs and registry from "
            f"{settings.storage.uri}: {error}; nothing was recorded"
        ) from None
    reports: list[WindowReport] = []
    for version, reference in references.items():
        rows = [p for p in predictions if p.version == version]
        for window_start, window_end in spans:
            inside = [
                p for p in rows if window_start.timestamp() <= p.time < window_end.timestamp()
            ]
            lost = skipped.between(version, window_start, window_end)
            if not inside and not lost:
                continue
            reports.append(
                analyse_window(
                    inside,
                    labels,
                    reference,
                    policy,
                    model=settings.model_name,
                    role="production" if version == production else "canary",
                    start=window_start,
                    end=window_end,
                    skipped=lost,
                    now=now,
                    contract_policy=settings.contract,
                )
            )
    totals: Counter[str] = Counter()
    for (_, _, reason), count in skipped.counts.items():
        totals[reason] += count
    return MonitorResult(
        reports=tuple(reports),
        skipped=dict(sorted(totals.items())),
        records=tuple(_record(registry, reports)) if record else (),
    )


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
