"""A copy of the session's registry with v1 in production, and traffic logged into it."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from flywheel import synthetic
from flywheel.config import MonitoringSettings, Settings
from flywheel.monitoring import analysis
from flywheel.monitoring.logs import Skipped, read_labels, read_predictions
from flywheel.monitoring.reference import load_reference
from flywheel.monitoring.window import VersionReference, WindowReport
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from harness.monitored import Monitored, Window, monitored, reference_of
from harness.traffic import END, START, Served, log_traffic, production_report, read_back


@pytest.fixture
def store(registered: Settings, tmp_path: Path) -> LocalStore:
    """A copy of the registry with v1 in production, to log traffic into; without the
    logs and records other tests (integration ones too) wrote into the shared registry."""
    shutil.copytree(registered.storage.uri, tmp_path / "store")
    for written in ("predictions", "feedback", "monitoring", "summaries"):
        shutil.rmtree(tmp_path / "store" / written, ignore_errors=True)
    return LocalStore(tmp_path / "store")


@pytest.fixture
def reference(registered: Settings) -> VersionReference:
    stores = Stores(registered)
    return load_reference(stores.registry, stores.source, "v1")


@pytest.fixture
def served(registered: Settings, store: LocalStore) -> Served:
    """serve(day, scenario, **log_traffic options) -> what monitoring reads back."""

    def serve(day_index: int, scenario: str = "stable", **options: object) -> tuple:
        generator = registered.data.generator.model_copy(update={"scenario": scenario})
        day = generator.start_date + timedelta(days=day_index)
        log_traffic(store, "loan-default", "v1", synthetic.generate_day(day, generator), **options)
        return read_back(store)

    return serve


@pytest.fixture
def report(served: Served, reference: VersionReference) -> WindowReport:
    """The window report of a stable, labelled day."""
    predictions, labels = served(6)
    return production_report(
        predictions, labels, reference, {"invalid JSON (a truncated line?)": 1}
    )


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Monitored:
    """A multiclass version (wine, classes by name) in production."""
    return monitored("wine", tmp_path_factory.mktemp("wine"))


@pytest.fixture(scope="session")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> Monitored:
    """A regression version (diabetes) in production."""
    return monitored("diabetes", tmp_path_factory.mktemp("diabetes"))


@pytest.fixture
def window(tmp_path: Path) -> Window:
    """`rows` served by the version and labelled, read back and analysed as one window, in a
    copy of its store named `name`."""

    def analyse(served: Monitored, rows: pd.DataFrame, name: str = "store") -> WindowReport:
        shutil.copytree(served.store.root, tmp_path / name)
        store = LocalStore(tmp_path / name)
        log_traffic(store, served.name, served.version, rows)
        skipped = Skipped()
        predictions = read_predictions(store, served.name, {served.version}, START, END, skipped)
        labels = read_labels(store, served.name, {served.version}, START, END, skipped)
        assert not skipped.counts
        return analysis.analyse_window(
            predictions,
            labels,
            reference_of(served),
            MonitoringSettings(),
            model=served.name,
            role="production",
            start=START,
            end=END,
            skipped={},
        )

    return analyse
