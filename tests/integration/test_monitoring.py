"""Monitoring against SeaweedFS, on a prediction log written by a real seldon-core microservice."""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flywheel import synthetic
from flywheel.config import Settings, load_settings
from flywheel.monitoring import logs, tables
from flywheel.monitoring.monitor import monitor
from flywheel.monitoring.records import latest_records
from flywheel.serving.feedbacklog import FeedbackLogger, feedback_entry
from flywheel.storage import LocalStore, ObjectStore, open_store
from flywheel.stores import Stores
from harness.servers import seldon_microservice

pytestmark = pytest.mark.integration


def _copy(source: LocalStore, target: ObjectStore) -> None:
    for key in source.list(""):
        target.write(key, source.read(key))


def _predict(http: str, rows: list[dict[str, Any]], puid: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{http}/api/v1.0/predictions",
        data=json.dumps({"jsonData": rows, "meta": {"puid": puid}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def test_monitor_reads_a_real_servers_log_from_s3_and_records_each_window(
    registered: Settings, s3_env: Callable[[str], list[str]]
) -> None:
    # given the registry and the training batches in a bucket
    overrides = s3_env("monitoring")
    bucket = overrides[-1].split("=", 1)[1].rsplit("/", 1)[0]
    settings = load_settings(
        None,
        env={},
        overrides=[
            *overrides,
            f"data.source={bucket}/batches",
            "monitoring.window=hour",
            "monitoring.windows=2",
            "monitoring.label_delay_days=1",
        ],
    )
    store = open_store(settings.storage.uri, settings.storage)
    _copy(LocalStore(registered.storage.uri), store)
    _copy(LocalStore(registered.data.source), open_store(settings.data.source, settings.storage))
    # and a real seldon-core microservice serving v1 from it, logging to it
    generator = registered.data.generator
    day = synthetic.generate_day(generator.start_date + timedelta(days=6), generator)
    features = [c for c in day.columns if c not in ("event_time", "defaulted")]
    feedback = FeedbackLogger(store, "loan-default", "v1")
    parameters = {
        "model_name": "loan-default",
        "model_version": "v1",
        "store_uri": settings.storage.uri,
        "store_endpoint": str(settings.storage.endpoint),
        "store_secure": "false",
    }
    with seldon_microservice(parameters) as server:
        # when a day of rows is served in requests of 25, and their labels come back
        for start in range(0, 300, 25):
            part = day.iloc[start : start + 25]
            rows = json.loads(part[features].to_json(orient="records"))
            puid = f"req-{start}"
            response = _predict(server.http, rows, puid)
            labels = part["defaulted"].astype(int).tolist()
            entry = feedback_entry("loan-default", "v1", {"meta": {"puid": puid}}, response, labels)
            feedback.record(entry or {})
        feedback.flush()
        # and the server has written its log (it flushes every two seconds)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            keys = store.list("predictions/loan-default/v1")
            if sum(store.read(k).count(b"\n") for k in keys) >= 300:
                break
            time.sleep(0.5)
    now = datetime.now(UTC)
    store.write(
        f"predictions/loan-default/v1/{now:%Y-%m-%d}/{now:%H%M%S%f}-1-000001.jsonl",
        b'{"request_id": "req-cut", "model": "loan-def\n',
    )
    stores = Stores(settings)
    result = monitor(settings, stores.registry, stores.source, until=now + timedelta(hours=1))
    # then every served row is monitored, labelled, re-scored alike, and the corrupt line counted
    assert {r.version for r in result.reports} == {"v1"}
    assert sum(r.health.rows for r in result.reports) == 300
    assert sum(r.performance.labelled for r in result.reports) == 300
    assert all(r.skew is not None and r.skew.agrees for r in result.reports if r.health.rows)
    assert all(
        r.features and r.features[0].result.test == "ks" for r in result.reports if r.health.rows
    )
    assert result.skipped == {logs.INVALID_JSON: 1}
    # and each window's record is in the bucket
    stored = latest_records(store, "loan-default", "v1", "hour")
    assert sorted(r.start for r in stored) == sorted(r.start for r in result.reports)
    assert len(result.records) == len(result.reports)
    # and with every label joined to every row, read again from the bucket, the same labels
    policy = settings.monitoring.model_copy(update={"label_join": "every"})
    every = monitor(
        settings.model_copy(update={"monitoring": policy}),
        stores.registry,
        stores.source,
        until=now + timedelta(hours=1),
        record=False,
    )
    joined = [r.performance for r in every.reports if r.performance.labelled]
    assert sum(p.every_label.labelled for p in joined if p.every_label) == 300
    assert all(p.every_label and p.every_label.accuracy == p.accuracy for p in joined)


def test_summaries_compaction_and_a_second_look_on_s3(
    registered: Settings,
    s3_env: Callable[[str], list[str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # given the registry in a bucket, and Parquet logs of two days ago in three files
    from harness.traffic import parquet_traffic

    overrides = s3_env("housekeeping")
    bucket = overrides[-1].split("=", 1)[1].rsplit("/", 1)[0]
    settings = load_settings(
        None,
        env={},
        overrides=[
            *overrides,
            f"data.source={bucket}/batches",
            "monitoring.windows=3",
            "monitoring.label_delay_days=2",
        ],
    )
    store = open_store(settings.storage.uri, settings.storage)
    _copy(LocalStore(registered.storage.uri), store)
    _copy(LocalStore(registered.data.source), open_store(settings.data.source, settings.storage))
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = midnight - timedelta(days=2)
    for n in range(3):
        parquet_traffic(store, "v1", 300, day + timedelta(hours=n + 1), seed=n)
    stores = Stores(settings)
    # when monitoring looks, then looks again
    first = monitor(settings, stores.registry, stores.source, until=midnight, now=midnight)
    later = midnight + timedelta(minutes=1)
    again = monitor(settings, stores.registry, stores.source, until=midnight, now=later)
    # then the summary is stored, the day is one compacted file, and both looks agree
    assert f"summaries/loan-default/v1/{day:%Y-%m-%d}.parquet" in store.list("summaries/")
    (compacted,) = store.list(f"predictions/loan-default/v1/{day:%Y-%m-%d}/")
    assert tables.COMPACTED in compacted and first.housekeeping.removed == 3
    rows = [[r.health.rows for r in look.reports if r.start == day] for look in (first, again)]
    assert rows == [[900], [900]]
    # and when a late file of that day arrives, the next look's housekeeping compacts it
    # with the compacted file, both streamed, nothing copied to local disk (no scratch)
    parquet_traffic(store, "v1", 200, day + timedelta(hours=20), seed=7)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-scratch"))
    later += timedelta(minutes=1)
    third = monitor(settings, stores.registry, stores.source, until=midnight, now=later)
    assert store.list(f"predictions/loan-default/v1/{day:%Y-%m-%d}/") == [compacted]
    assert third.housekeeping.removed == 1
    assert not (tmp_path / "no-scratch").exists()
    later += timedelta(minutes=1)
    fourth = monitor(settings, stores.registry, stores.source, until=midnight, now=later)
    assert [r.health.rows for r in fourth.reports if r.start == day] == [1100]
    with store.reader(compacted) as opened:
        assert pq.ParquetFile(opened).metadata.num_rows == 1100
