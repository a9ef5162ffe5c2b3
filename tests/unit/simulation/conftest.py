"""A copy of the session's project (v1 in production, 5 days of batches) to play days into."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from flywheel.config import Settings, load_settings
from flywheel.simulation.world import _World, world_settings
from flywheel.stores import Stores
from harness.projects import SMALL


@pytest.fixture
def project(registered: Settings, tmp_path: Path) -> Settings:
    """The registered project copied under tmp_path, without what other tests served into it."""
    shutil.copytree(registered.storage.uri, tmp_path / "store")
    for written in ("predictions", "feedback", "monitoring", "summaries"):
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
def stores(project: Settings) -> Stores:
    """The project's stores, as a simulated world opens them once."""
    return Stores(project)


@pytest.fixture
def world(tmp_path: Path) -> _World:
    """A stable world under tmp_path whose day 0 is 2026-01-06 (nothing written yet)."""
    settings = world_settings(load_settings(None, env={}, overrides=SMALL), tmp_path, "stable", 7)
    return _World(
        settings=settings,
        stores=Stores(settings),
        root=tmp_path,
        scenario="stable",
        seed=7,
        policy="never",
        change_day=3,
        label_delay=2,
        traffic=100,
        first_day=date(2026, 1, 6),
    )
