"""A monitoring run over a real store: the windows, the versions, the records, a store that is down."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flywheel import synthetic
from flywheel.config import Settings, StorageSettings
from flywheel.monitoring import logs
from flywheel.monitoring.monitor import MonitoringError, monitor, windows
from flywheel.monitoring.records import PREFIX, latest_records
from flywheel.registry import Registry
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from harness.monitored import Monitored
from harness.servers import free_ports
from harness.traffic import END, log_traffic


def test_windows_are_the_complete_ones_before_until() -> None:
    until = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    assert windows(until, "hour", 2) == [
        (datetime(2026, 3, 2, 8, tzinfo=UTC), datetime(2026, 3, 2, 9, tzinfo=UTC)),
        (datetime(2026, 3, 2, 9, tzinfo=UTC), datetime(2026, 3, 2, 10, tzinfo=UTC)),
    ]
    assert windows(until, "day", 1) == [
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    ]


def _settings(registered: Settings, store: LocalStore) -> Settings:
    return registered.model_copy(
        update={
            "storage": registered.storage.model_copy(update={"uri": str(store.root)}),
            "monitoring": registered.monitoring.model_copy(update={"window": "hour", "windows": 2}),
        }
    )


def test_production_and_a_canary_are_monitored_and_each_window_recorded(
    registered: Settings, store: LocalStore
) -> None:
    # given v1 in production, v2 registered beside it, traffic to both and a corrupt log file
    registry = Registry(store, "loan-default")
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    registry.register(files, run_id="r2", fingerprint="a second version")
    day = registered.data.generator.start_date + timedelta(days=6)
    frame = synthetic.generate_day(day, registered.data.generator)
    log_traffic(store, "loan-default", "v1", frame.iloc[:400])
    log_traffic(store, "loan-default", "v2", frame.iloc[400:], labelled=0)
    now = datetime.now(UTC)
    store.write(
        f"predictions/loan-default/v1/{now:%Y-%m-%d}/{now:%H%M%S%f}-9-000001.jsonl",
        b'{"request_id": "cut',
    )
    settings = _settings(registered, store)
    stores = Stores(settings)
    # when monitored up to the end of this hour
    result = monitor(settings, stores.registry, stores.source, until=now + timedelta(hours=1))
    # then each version has its role and its rows, the broken line is counted
    roles = {r.version: r.role for r in result.reports}
    assert roles == {"v1": "production", "v2": "canary"}
    assert sum(r.health.rows for r in result.reports if r.version == "v1") == 400
    assert sum(r.performance.labelled for r in result.reports if r.version == "v2") == 0
    assert result.skipped == {logs.INVALID_JSON: 1}
    # and every report is stored, and read back as the windows' current state
    assert len(result.records) == len(result.reports)
    stored = latest_records(store, "loan-default", "v1", "hour")
    assert [r.start for r in stored] == sorted(r.start for r in result.reports if r.version == "v1")


def test_only_the_versions_asked_for_are_monitored_and_nothing_is_recorded_when_asked(
    registered: Settings, store: LocalStore
) -> None:
    # given traffic to v1
    day = registered.data.generator.start_date + timedelta(days=6)
    log_traffic(store, "loan-default", "v1", synthetic.generate_day(day, registered.data.generator))
    # when monitored for the production alias without recording
    now = datetime.now(UTC)
    settings = _settings(registered, store)
    stores = Stores(settings)
    result = monitor(
        settings,
        stores.registry,
        stores.source,
        until=now + timedelta(hours=1),
        versions=["production"],
        record=False,
    )
    # then
    assert {r.version for r in result.reports} == {"v1"}
    assert result.records == () and not store.list(PREFIX)


def test_a_store_that_is_down_is_one_clear_error(registered: Settings) -> None:
    # given a store whose endpoint does not answer
    (port,) = free_ports(1)
    settings = registered.model_copy(
        update={
            "storage": StorageSettings(
                uri="s3://flywheel/store", endpoint=f"127.0.0.1:{port}", secure=False
            )
        }
    )
    stores = Stores(settings)
    # when monitored
    with pytest.raises(MonitoringError) as raised:
        monitor(settings, stores.registry, stores.source)
    # then the error names the store and says that nothing was recorded
    message = str(raised.value)
    assert "\n" not in message
    assert f"cannot reach the S3 endpoint 127.0.0.1:{port}" in message
    assert message.endswith("nothing was recorded")


def test_monitor_records_a_regression_version_from_the_registry(
    diabetes: Monitored, tmp_path: Path
) -> None:
    # given a day of traffic in a copy of the registry
    shutil.copytree(diabetes.store.root, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    log_traffic(store, diabetes.name, diabetes.version, diabetes.unseen)
    settings = Settings.model_validate(
        {
            "model_name": diabetes.name,
            "features": diabetes.features.model_dump(),
            "model": {"task": "regression"},
            "monitoring": {"window": "hour", "windows": 3},
        }
    )
    # when monitoring runs
    result = monitor(settings, Registry(store, diabetes.name), diabetes.source, until=END, now=END)
    # then its window is the regression's, estimated by DLE, and recorded
    (report,) = [r for r in result.reports if r.health.rows]
    assert report.task == "regression" and report.estimate is not None
    assert report.estimate.method == "DLE" and result.records
    assert isinstance(report.computed_at, datetime)
