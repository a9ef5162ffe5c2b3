"""A copy of the session's project (v1 in production, trained on 5 days), and a way to play
days of served traffic into it and read monitoring's window reports back."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import Settings
from flywheel.monitoring.monitor import monitor
from flywheel.monitoring.window import WindowReport
from flywheel.simulation.traffic import ServedDay, serve_day
from flywheel.stores import Stores
from harness.traffic import Play


@pytest.fixture
def project(registered: Settings, tmp_path: Path) -> Settings:
    """The registered project copied under tmp_path, without what other tests served into it;
    day windows, labels two days late."""
    shutil.copytree(registered.storage.uri, tmp_path / "store")
    for written in ("predictions", "feedback", "monitoring", "summaries"):
        shutil.rmtree(tmp_path / "store" / written, ignore_errors=True)
    shutil.copytree(registered.data.source, tmp_path / "batches")
    return registered.model_copy(
        update={
            "storage": registered.storage.model_copy(update={"uri": str(tmp_path / "store")}),
            "data": registered.data.model_copy(update={"source": str(tmp_path / "batches")}),
            "monitoring": registered.monitoring.model_copy(
                update={"window": "day", "label_delay_days": 2, "windows": 30}
            ),
        }
    )


@pytest.fixture
def play(project: Settings) -> Play:
    """play(days, scenario=..., change_day=..., look=True, **serve_day options): serve each
    day (a date, or an index from the generator's start), then (with `look`) monitor up to
    the end of the last one; returns what was served and the report of each day served."""

    def run(
        days: Iterable[date | int],
        scenario: str = "stable",
        change_day: int | None = None,
        look: bool = True,
        **options: Any,
    ) -> tuple[list[ServedDay], dict[date, WindowReport]]:
        generator = project.data.generator.model_copy(
            update={
                "scenario": scenario,
                "change_day": project.data.generator.change_day
                if change_day is None
                else change_day,
            }
        )
        settings = project.model_copy(
            update={"data": project.data.model_copy(update={"generator": generator})}
        )
        chosen = [
            d if isinstance(d, date) else generator.start_date + timedelta(days=d) for d in days
        ]
        options = {"rows": 300, **options}
        stores = Stores(settings)
        registry, source = stores.registry, stores.source
        served = [
            serve_day(settings, registry, source, d, version="production", **options)
            for d in chosen
        ]
        if not look:
            return served, {}
        until = datetime.combine(chosen[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        result = monitor(settings, registry, source, until=until, now=until, record=False)
        return served, {r.start.date(): r for r in result.reports if r.version == "v1"}

    return run
