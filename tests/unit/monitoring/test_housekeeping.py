"""Housekeeping: a settled day's log files compacted into one, and what is too old removed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from flywheel.config import MonitoringSettings, Settings
from flywheel.monitoring import logs, tables
from flywheel.monitoring.housekeeping import expire
from flywheel.monitoring.logs import Skipped, read_predictions
from flywheel.monitoring.monitor import monitor
from flywheel.registry import Registry
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from harness.traffic import monitored_in, parquet_traffic


def _settings(registered: Settings, store: LocalStore, **monitoring: object) -> Settings:
    return monitored_in(
        registered, store, window="day", windows=3, label_delay_days=1, **monitoring
    )


def _settled_day(store: LocalStore) -> tuple[datetime, datetime]:
    """Three files of production's traffic two days ago (600 rows), and two files of
    feedback for 50 of its requests; that day and today's midnight."""
    from flywheel import logformat

    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = midnight - timedelta(days=2)
    ids: list[str] = []
    for n in range(3):
        ids += parquet_traffic(store, "v1", 200, day + timedelta(hours=n + 1), seed=n)[1]
    feedback = logformat.feedback_table(
        [
            {"request_id": i, "time": (day + timedelta(hours=5)).timestamp(), "labels": [1]}
            for i in ids[:50]
        ]
    )
    for n in range(2):
        store.write(
            f"feedback/loan-default/v1/{day:%Y-%m-%d}/0{n}0000000000-1-000001.parquet",
            logformat.to_parquet(
                feedback.slice(n * 25, 25), {"model": "loan-default", "version": "v1"}
            ),
        )
    return day, midnight


def test_a_settled_days_files_are_compacted_into_one_and_counted_once(
    registered: Settings, store: LocalStore
) -> None:
    # given three files of production's traffic two days ago, and feedback for some of it
    day, midnight = _settled_day(store)
    settings = _settings(registered, store)
    stores = Stores(settings)
    # when monitoring looks and keeps house
    first = monitor(settings, stores.registry, stores.source, until=midnight, now=midnight)
    # then the day's files are one file per log, holding every row
    assert len(first.housekeeping.compacted) == 2 and first.housekeeping.removed == 5
    (predictions,) = store.list(f"predictions/loan-default/v1/{day:%Y-%m-%d}/")
    assert tables.COMPACTED in predictions
    (labels,) = store.list(f"feedback/loan-default/v1/{day:%Y-%m-%d}/")
    assert tables.COMPACTED in labels
    read = read_predictions(store, "loan-default", {"v1"}, day, midnight, Skipped())
    assert len(read) == 600
    # and a later look reports the same window, its rows counted once
    again = monitor(
        settings,
        stores.registry,
        stores.source,
        until=midnight,
        now=midnight + timedelta(minutes=1),
    )
    before = [r for r in first.reports if r.start == day]
    after = [r for r in again.reports if r.start == day]
    assert [r.health.rows for r in after] == [r.health.rows for r in before] == [600]
    assert after[0].performance.labelled == before[0].performance.labelled == 50
    assert again.housekeeping.compacted == ()


def test_a_compacted_days_feedback_is_read_a_row_group_at_a_time_and_joined_whole(
    registered: Settings, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a settled day compacted in row groups of 20 rows
    from flywheel.monitoring import housekeeping

    monkeypatch.setattr(housekeeping, "_ROW_GROUP", 20)
    day, midnight = _settled_day(store)
    settings = _settings(registered, store)
    stores = Stores(settings)
    monitor(settings, stores.registry, stores.source, until=midnight, now=midnight)
    (compacted,) = tables.log_files(store, logs.FEEDBACK, "loan-default", "v1", day.date())
    assert tables.COMPACTED in compacted.key
    # when its feedback is read, then it comes a row group at a time, the file's rows
    parts = list(tables.feedback_tables(store, compacted, "loan-default", Skipped()))
    whole = tables.feedback_table(store, compacted, "loan-default", Skipped())
    assert len(parts) > 1 and max(p.num_rows for p in parts) <= 20
    assert whole is not None and pa.concat_tables(parts).equals(whole)
    # and a look that joins every label to every row joins all 50 from the compacted files
    every = settings.model_copy(
        update={"monitoring": settings.monitoring.model_copy(update={"label_join": "every"})}
    )
    later = midnight + timedelta(minutes=1)
    result = monitor(every, stores.registry, stores.source, until=midnight, now=later)
    (report,) = [r for r in result.reports if r.start == day]
    assert report.performance.every_label is not None
    assert report.performance.every_label.labelled == 50


def test_what_is_older_than_the_retention_is_removed_once_a_day(
    registered: Settings, store: LocalStore
) -> None:
    # given logs and a record from 40 days ago and from yesterday
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=1)
    old_log, _ = parquet_traffic(store, "v1", 10, old, seed=1)
    new_log, _ = parquet_traffic(store, "v1", 10, recent, seed=2)
    store.write(f"monitoring/loan-default/v1/day/{old:%Y%m%d}T000000Z/x.json", b"{}")
    store.write(f"monitoring/loan-default/v1/day/{recent:%Y%m%d}T000000Z/x.json", b"{}")
    store.write(f"summaries/loan-default/v1/{old:%Y-%m-%d}.parquet", b"old")
    settings = _settings(registered, store, retention_days=30)
    # when expired
    removed = expire(settings, store, ["v1"], now)
    # then only the old ones are gone, and a second run the same day does nothing
    assert removed == 3
    assert not store.exists(old_log) and store.exists(new_log)
    assert store.list("monitoring/loan-default/v1/day/") == [
        f"monitoring/loan-default/v1/day/{recent:%Y%m%d}T000000Z/x.json"
    ]
    marker = json.loads(store.read("summaries/loan-default/retention.json"))
    assert marker == {"cutoff": (now - timedelta(days=30)).date().isoformat()}
    parquet_traffic(store, "v1", 10, old, seed=3)
    assert expire(settings, store, ["v1"], now) == 0


def test_a_retention_shorter_than_a_look_is_refused_naming_both() -> None:
    with pytest.raises(
        ValidationError, match="retention_days 3 would remove logs a look still reads"
    ):
        MonitoringSettings(windows=7, window="day", label_delay_days=2, retention_days=3)
    assert MonitoringSettings(windows=7, label_delay_days=2, retention_days=10).retention_days == 10


def test_compaction_leaves_a_file_it_cannot_read_where_it_is(
    registered: Settings, store: LocalStore, tmp_path: Path
) -> None:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = midnight - timedelta(days=2)
    for n in range(2):
        parquet_traffic(store, "v1", 50, day + timedelta(hours=n + 1), seed=n)
    broken = f"predictions/loan-default/v1/{day:%Y-%m-%d}/050000000000-9-000001.parquet"
    store.write(broken, b"PAR1 cut")
    settings = _settings(registered, store)
    stores = Stores(settings)
    result = monitor(
        settings, Registry(store, "loan-default"), stores.source, until=midnight, now=midnight
    )
    assert result.skipped == {logs.UNREADABLE: 1}
    left = store.list(f"predictions/loan-default/v1/{day:%Y-%m-%d}/")
    assert broken in left and len(left) == 2
