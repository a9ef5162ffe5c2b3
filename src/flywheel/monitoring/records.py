"""Window reports in the store: create-only, one new record per look at a window.

    monitoring/<model>/<version>/<window>/<start>/<computed_at>.json

Labels keep arriving after a window closes, so a window is looked at again by
later runs; each look adds a record and never rewrites one. The newest record of
a window is its current state, the older ones its history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flywheel.monitoring.window import Window, WindowReport
from flywheel.storage import ObjectStore

# How long each kind of window is.
WINDOW_SIZES = {"hour": timedelta(hours=1), "day": timedelta(days=1)}

PREFIX = "monitoring"
_STAMP = "%Y%m%dT%H%M%S%fZ"


def record_key(report: WindowReport) -> str:
    """Where one report is stored."""
    return (
        f"{PREFIX}/{report.model}/{report.version}/{report.window}/"
        f"{report.start:%Y%m%dT%H%M%SZ}/{report.computed_at.strftime(_STAMP)}.json"
    )


def write_record(store: ObjectStore, report: WindowReport) -> str:
    """Store a report create-only; returns its location."""
    key = record_key(report)
    store.write(key, report.model_dump_json(indent=2).encode(), create_only=True)
    return store.location(key)


def latest_records(
    store: ObjectStore,
    model: str,
    version: str,
    window: Window,
    computed_by: datetime | None = None,
) -> list[WindowReport]:
    """The newest record of each window of a version, oldest window first; with `computed_by`,
    the newest computed by then (what a look at that time saw)."""
    newest: dict[str, str] = {}
    by = f"{computed_by.astimezone(UTC).strftime(_STAMP)}.json" if computed_by else None
    for key in store.list(f"{PREFIX}/{model}/{version}/{window}"):
        start, stamp = key.rsplit("/", 2)[-2:]
        if by is None or stamp <= by:
            newest[start] = max(newest.get(start, key), key)
    return [WindowReport.model_validate_json(store.read(newest[s])) for s in sorted(newest)]


def newest_record(
    store: ObjectStore, model: str, version: str, window: Window
) -> WindowReport | None:
    """The newest record of a version's newest window, or None: one read."""
    keys = store.list(f"{PREFIX}/{model}/{version}/{window}/")
    return WindowReport.model_validate_json(store.read(max(keys))) if keys else None
