"""A monitoring run over a real store: the windows, the versions, the records, a store that is down."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel import synthetic
from flywheel.config import Settings, StorageSettings
from flywheel.monitoring import intervals, logs
from flywheel.monitoring.monitor import monitor, production_by_window
from flywheel.monitoring.reading import MonitoringError, windows
from flywheel.monitoring.records import PREFIX, latest_records
from flywheel.registry import PRODUCTION, Registry, stamped_by
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from harness.monitored import Monitored
from harness.servers import free_ports
from harness.traffic import feedback_file, log_traffic, monitored_in, parquet_traffic, wrong_typed


def _settings(registered: Settings, store: LocalStore) -> Settings:
    return monitored_in(registered, store, window="hour", windows=2)


def with_v2(store: LocalStore) -> Registry:
    """The registry in `store`, with a second version, a copy of v1, registered beside it."""
    registry = Registry(store, "loan-default")
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    registry.register(files, run_id="r2", fingerprint="a second version")
    return registry


def test_production_and_a_canary_are_monitored_and_each_window_recorded(
    registered: Settings, store: LocalStore
) -> None:
    # given v1 in production, v2 registered beside it, traffic to both and a corrupt log file
    with_v2(store)
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
            "monitoring": {"window": "hour", "windows": 3, "label_delay_days": 1},
        }
    )
    # when monitoring runs, up to the end of the hour the traffic was logged in (not the
    # harness's END: fixed when the session starts, which may have been in an earlier hour)
    end = datetime.now(UTC) + timedelta(hours=1)
    result = monitor(settings, Registry(store, diabetes.name), diabetes.source, until=end, now=end)
    # then its window is the regression's, estimated by DLE, and recorded
    (report,) = [r for r in result.reports if r.health.rows]
    assert report.task == "regression" and report.estimate is not None
    assert report.estimate.method == "DLE" and result.records
    assert isinstance(report.computed_at, datetime)


# --- summaries: incremental looks, the local fan-out, bad files at scale ---------------


class CountingStore(LocalStore):
    """A local store that remembers which keys were read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def read(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read(key)


def test_a_second_look_reads_only_the_log_files_written_since(
    registered: Settings, store: LocalStore
) -> None:
    # given a look over two Parquet files, its summaries stored
    counting = CountingStore(store.root)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(minutes=30)
    first = [
        parquet_traffic(counting, "v1", 300, now - timedelta(minutes=m), seed=m)[0]
        for m in (20, 10)
    ]
    settings = _settings(registered, counting)
    stores = Stores(settings)
    monitor(
        settings,
        Registry(counting, "loan-default"),
        stores.source,
        until=now + timedelta(hours=1),
        now=now,
    )
    assert set(first) <= set(counting.reads)
    assert counting.list("summaries/loan-default/v1/")
    # when one more file is written and monitoring looks again
    newer, _ = parquet_traffic(counting, "v1", 200, now - timedelta(minutes=5), seed=5)
    counting.reads.clear()
    later = now + timedelta(minutes=1)
    result = monitor(
        settings,
        Registry(counting, "loan-default"),
        stores.source,
        until=now + timedelta(hours=1),
        now=later,
    )
    # then only the new file is read, and the window holds every row
    logs_read = [k for k in counting.reads if k.startswith("predictions/")]
    assert logs_read == [newer]
    (report,) = [r for r in result.reports if r.health.rows]
    assert report.health.rows == 800 and report.health.requests == 800


def test_reports_from_summaries_agree_with_the_rows_read_one_by_one(
    registered: Settings, store: LocalStore
) -> None:
    # given a day of logged, labelled traffic
    from flywheel.monitoring.analysis import analyse_window
    from flywheel.monitoring.logs import Skipped, read_labels, read_predictions
    from flywheel.monitoring.reference import load_reference

    day = registered.data.generator.start_date + timedelta(days=6)
    log_traffic(store, "loan-default", "v1", synthetic.generate_day(day, registered.data.generator))
    settings = _settings(registered, store)
    stores = Stores(settings)
    now = datetime.now(UTC)
    # when monitoring summarises it, and when the rows are analysed as read
    result = monitor(
        settings,
        stores.registry,
        stores.source,
        until=now + timedelta(hours=1),
        now=now,
        record=False,
    )
    (start, end) = windows(now + timedelta(hours=1), "hour", 2)[-1]
    skipped = Skipped()
    predictions = read_predictions(store, "loan-default", {"v1"}, start, end, skipped)
    labels = read_labels(store, "loan-default", {"v1"}, start, now, skipped)
    direct = analyse_window(
        predictions,
        labels,
        load_reference(stores.registry, stores.source, "v1"),
        settings.monitoring,
        model="loan-default",
        role="production",
        start=start,
        end=end,
        skipped={},
        now=now,
        contract_policy=settings.contract,
    )
    # then every figure agrees
    (summarised,) = [r for r in result.reports if r.start == start]
    assert summarised.health.rows == sum(len(p.inputs) for p in predictions) > 0
    assert summarised.model_dump(exclude={"computed_at"}) == direct.model_dump(
        exclude={"computed_at"}
    )


def test_the_local_fan_out_gives_what_one_process_gives(
    registered: Settings, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(minutes=30)
    for seed in range(6):
        parquet_traffic(store, "v1", 400, now - timedelta(minutes=25 - seed), seed=seed)
    # and one file logged again, whose sampled rows are counted as repeats either way
    (first,) = store.list("predictions/loan-default/v1/")[:1]
    store.write(first.replace(".parquet", "-again.parquet"), store.read(first))
    settings = _settings(registered, store)
    settings = settings.model_copy(
        update={"monitoring": settings.monitoring.model_copy(update={"sample_rows": 1000})}
    )
    stores = Stores(settings)
    until = now + timedelta(hours=1)
    estimated: list[tuple[int, int | None]] = []
    cbpe = intervals.cbpe

    def sized(scores: Any, *args: Any, rows: int | None = None, **options: Any) -> Any:
        estimated.append((len(scores), rows))
        return cbpe(scores, *args, rows=rows, **options)

    monkeypatch.setattr(intervals, "cbpe", sized)
    one = monitor(settings, stores.registry, stores.source, until=until, now=now, record=False)
    # CBPE's intervals are of the window's 2,800 rows, which its 1,000-row sample stands for
    assert estimated == [(1000, 2800)]
    two = monitor(
        settings, stores.registry, stores.source, until=until, now=now, record=False, workers=2
    )
    assert [r.model_dump() for r in one.reports] == [r.model_dump() for r in two.reports]
    (report,) = [r for r in one.reports if r.health.rows]
    assert report.health.rows == 2800 and report.sampled_rows is not None
    assert 0 < report.health.skipped_lines[logs.DUPLICATE] < 400
    # and the estimate says it stands for the window's rows, not the sample's
    assert report.estimate is not None and report.estimate.rows == 2800
    # the skew check re-scored rows both ways: in this process, and in the scoring process
    assert report.skew is not None and report.skew.sampled > 0


@pytest.mark.parametrize("label_join", ["sample", "every"])
def test_bad_files_are_counted_under_their_reason_and_skipped(
    registered: Settings, store: LocalStore, label_join: str
) -> None:
    import pyarrow.parquet as pq

    from flywheel import logformat

    # given one good Parquet file, and beside it a truncated one, one with a column of the
    # wrong type, one from another version, a duplicate of the good one, and feedback for a
    # request that was never logged; its labels joined to the sample, or to every row
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    good, ids = parquet_traffic(store, "v1", 100, hour + timedelta(minutes=5), seed=1)
    day = f"predictions/loan-default/v1/{hour:%Y-%m-%d}"
    data = store.read(good)
    store.write(f"{day}/{hour:%H%M%S}000001-2-000001.parquet", data[: len(data) // 2])
    table = wrong_typed(pq.read_table(store.root / good))
    store.write(f"{day}/{hour:%H%M%S}000002-3-000001.parquet", logformat.to_parquet(table))
    foreign = logformat.to_parquet(pq.read_table(store.root / good), {"version": "v9"})
    store.write(f"{day}/{hour:%H%M%S}000003-4-000001.parquet", foreign)
    store.write(f"{day}/{hour:%H%M%S}000004-5-000001.parquet", data)
    labelled_at = (hour + timedelta(minutes=30)).timestamp()
    feedback_file(
        store,
        hour,
        [
            {"request_id": ids[0], "time": labelled_at, "labels": [1]},
            {"request_id": "never-served", "time": labelled_at, "labels": [0]},
        ],
    )
    settings = _settings(registered, store)
    settings = settings.model_copy(
        update={
            "monitoring": settings.monitoring.model_copy(
                update={"windows": 1, "label_delay_days": 0, "label_join": label_join}
            )
        }
    )
    stores = Stores(settings)
    # when monitored some hours later
    result = monitor(
        settings,
        stores.registry,
        stores.source,
        until=hour + timedelta(hours=1),
        now=hour + timedelta(hours=3),
    )
    # then each is counted under its reason, and the good rows are reported once
    assert result.skipped == {
        logs.DUPLICATE: 100,
        logs.UNREADABLE: 1,
        logs.WRONG_TYPE: 100,
        logs.UNKNOWN_VERSION: 100,
        logs.NEVER_LOGGED: 1,
    }
    (report,) = result.reports
    assert report.health.rows == 200  # the duplicate file's rows are served rows as counted
    assert report.health.skipped_lines[logs.DUPLICATE] == 100  # and left out of the tests
    assert report.performance.labelled == 1
    every = report.performance.every_label
    assert every is None if label_join == "sample" else every and every.labelled == 1


def test_each_windows_role_is_the_production_alias_of_its_time(tmp_path: Path) -> None:
    # given a registry whose production was v1 from noon on day 1, then v2 from 15:00 on day 3
    registry = Registry(LocalStore(tmp_path), "m")
    for number in (1, 2):
        registry.register({"model.joblib": str(number).encode()}, run_id=f"r{number}")
    day = datetime(2026, 3, 1, tzinfo=UTC)
    with stamped_by(lambda: day + timedelta(days=1, hours=12)):
        registry.move_alias(PRODUCTION, "v1", expected=None, reason="first", actor="test")
    with stamped_by(lambda: day + timedelta(days=3, hours=15)):
        registry.move_alias(PRODUCTION, "v2", expected="v1", reason="promoted", actor="test")
    spans = windows(day + timedelta(days=5), "day", 5)
    # when each day window's production version is asked, by the history from the first
    # window's start
    held = production_by_window(registry.history(PRODUCTION, since=spans[0][0]), spans)
    # then it is the alias's at that time: before the first move its first version, on the
    # day it moved the one that held it longest (v1, until 15:00), today's only after
    assert [held[start] for start, _ in spans] == ["v1", "v1", "v1", "v1", "v2"]
    # and the history from a later time starts at the revision in force then
    assert [s.version for s in registry.history(PRODUCTION, since=spans[-1][0])] == ["v2"]
    # and with no revision at all (nothing promoted yet), no window had a production version
    assert production_by_window([], spans) == {start: None for start, _ in spans}


def test_a_version_is_reported_as_production_for_the_windows_it_was(
    registered: Settings, store: LocalStore
) -> None:
    # given traffic to v1, production then, in this hour, and v2 promoted once it ended
    registry = with_v2(store)
    day = registered.data.generator.start_date + timedelta(days=6)
    log_traffic(store, "loan-default", "v1", synthetic.generate_day(day, registered.data.generator))
    now = datetime.now(UTC)
    after = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1, minutes=1)
    with stamped_by(lambda: after):
        registry.move_alias(PRODUCTION, "v2", expected="v1", reason="promoted", actor="test")
    settings = _settings(registered, store)
    stores = Stores(settings)
    # when monitored up to the end of this hour
    result = monitor(settings, stores.registry, stores.source, until=now + timedelta(hours=1))
    # then v1's window is reported as production's, not as today's alias would have it
    assert {(r.version, r.role) for r in result.reports if r.health.rows} == {("v1", "production")}
