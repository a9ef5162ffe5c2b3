"""A copy of the session's project (v1 in production, 5 days of batches) to play days into."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import SMALL
from flywheel.config import Settings, load_settings
from flywheel.simulation.loop import DayRecord, Timeline
from flywheel.simulation.world import _World, world_settings


@pytest.fixture
def project(registered: Settings, tmp_path: Path) -> Settings:
    """The registered project copied under tmp_path, without what other tests served into it."""
    shutil.copytree(registered.storage.uri, tmp_path / "store")
    for written in ("predictions", "feedback", "monitoring"):
        shutil.rmtree(tmp_path / "store" / written, ignore_errors=True)
    shutil.copytree(registered.data.source, tmp_path / "batches")
    return registered.model_copy(
        update={
            "storage": registered.storage.model_copy(update={"uri": str(tmp_path / "store")}),
            "data": registered.data.model_copy(update={"source": str(tmp_path / "batches")}),
            "monitoring": registered.monitoring.model_copy(
                update={"window": "day", "label_delay_days": 2}
            ),
        }
    )


@pytest.fixture
def world(tmp_path: Path) -> _World:
    """A stable world under tmp_path whose day 0 is 2026-01-06 (nothing written yet)."""
    settings = world_settings(load_settings(None, env={}, overrides=SMALL), tmp_path, "stable", 7)
    return _World(
        settings=settings,
        root=tmp_path,
        scenario="stable",
        seed=7,
        policy="never",
        change_day=3,
        label_delay=2,
        traffic=100,
        first_day=date(2026, 1, 6),
    )


# Hand-built timelines: DayRecord and Timeline are plain models, so each figure of a
# timeline can be checked against numbers worked out in the test.

START = date(2026, 1, 15)
SCHEDULE = "schedule '0 3 * * 1': tick at 2026-01-19 03:00 UTC"
DRIFT = "drift: 3 of the newest 2 window(s) drifted (shares 0.33, 0.44)"


def day(index: int, accuracy: float | None = 0.8, **fields: Any) -> DayRecord:
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
    return {"fired": True, "reason": reason, "blocked_by": None, "record": "r"}


def run(run_id: str, registered: str | None = "v2") -> dict[str, Any]:
    return {"run_id": run_id, "reason": "r", "registered": registered, "blessed": True}


def timeline(
    records: list[DayRecord], scenario: str = "concept_drift", policy: str = "triggers"
) -> Timeline:
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
