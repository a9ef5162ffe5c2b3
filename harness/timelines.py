"""Simulation timelines built by hand: DayRecord and Timeline are plain models, so each figure
of a timeline can be checked against numbers worked out in the test."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flywheel.simulation.loop import DayRecord, Timeline

START = date(2026, 1, 15)
SCHEDULE = "schedule '0 3 * * 1': tick at 2026-01-19 03:00 UTC"
DRIFT = "drift: 3 of the newest 2 window(s) drifted (shares 0.33, 0.44)"


def day(index: int, accuracy: float | None = 0.8, **fields: Any) -> DayRecord:
    """Day `index` after START: v1 in production, 100 rows, nothing fired; `fields` win."""
    values: dict[str, Any] = {
        "index": index,
        "day": START + timedelta(days=index),
        "production": "v1",
        "accuracy": accuracy,
        "rows": 100,
        "refused": 0,
        "batch_blocked": False,
        "drift": {},
        "drifted_share": None,
        "decision": None,
        "run": None,
        "rollout": None,
        "model_age_days": float(index + 1),
    }
    return DayRecord(**{**values, **fields})


def fired(reason: str) -> dict[str, Any]:
    """A day's decision that fired for `reason`."""
    return {"fired": True, "reason": reason, "blocked_by": None, "record": "r"}


def run(run_id: str, registered: str | None = "v2") -> dict[str, Any]:
    """A day's blessed run, which registered `registered`."""
    return {"run_id": run_id, "reason": "r", "registered": registered, "blessed": True}


def timeline(
    records: list[DayRecord], scenario: str = "concept_drift", policy: str = "triggers"
) -> Timeline:
    """The timeline of `records`, as the simulation would write it."""
    return Timeline(
        scenario=scenario,
        seed=0,
        days=len(records),
        policy=policy,  # type: ignore[arg-type]
        change_day=5,
        label_delay=2,
        traffic=100,
        records=records,
        wall_seconds=12.5,
    )
