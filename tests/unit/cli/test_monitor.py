"""`flywheel monitor`: the summary, the HTML report, the records, and a store that is down."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from flywheel import synthetic
from flywheel.config import load_settings
from flywheel.monitoring.records import PREFIX
from flywheel.storage import LocalStore
from harness.cli import Flywheel
from harness.pushgateway import pushgateway
from harness.servers import free_ports
from harness.traffic import log_traffic


def _next_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:00")


def test_monitor_prints_each_window_writes_the_report_and_records_it(
    flywheel: Flywheel, registered_config: Path, tmp_path: Path
) -> None:
    # given a day of traffic to production, labelled, and a drifted day without labels
    settings = load_settings(registered_config, env={})
    store = LocalStore(settings.storage.uri)
    generator = settings.data.generator
    stable = synthetic.generate_day(generator.start_date + timedelta(days=6), generator)
    drifted_generator = generator.model_copy(update={"scenario": "covariate_drift"})
    drifted = synthetic.generate_day(generator.start_date + timedelta(days=40), drifted_generator)
    log_traffic(store, "loan-default", "v1", stable)
    log_traffic(store, "loan-default", "v1", drifted, labelled=0)
    report = tmp_path / "out" / "monitoring.html"
    # when monitored by the hour up to the end of this hour, pushing to a Pushgateway
    with pushgateway() as gateway:
        result = flywheel(
            "-c",
            str(registered_config),
            "--set",
            f"monitoring.pushgateway={gateway.url}",
            "monitor",
            "--window",
            "hour",
            "--windows",
            "2",
            "--until",
            _next_hour(),
            "--report",
            str(report),
        )
    # then the window's summary names the drifted features and compares accuracy three ways
    assert result.code == 0, result.text
    assert re.search(r"v1 \(production\): \d+ requests, \d+ rows, p95 [0-9.]+ ms", result.out)
    assert re.search(r"drift: \d/9 features \([a-z_, ]*income[a-z_, ]*\)", result.out)
    assert "scores PSI" in result.out and "DRIFTED" in result.out and "skew ok" in result.out
    assert re.search(
        r"accuracy: 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\] on \d+ labels, "
        r"estimated 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\], offline 0\.\d{4}",
        result.out,
    )
    assert "it assumes no concept drift" in result.out
    # and the report and the records are written
    assert report.read_text().count("data:image/svg+xml") == 5
    assert store.list(PREFIX)
    assert "Recorded" in result.out
    # and the metrics are pushed to the model's group
    ((path, _, body),) = gateway.received
    assert path == "/metrics/job/flywheel-monitor/model/loan-default"
    assert b'flywheel_monitor_feature_drifted{model="loan-default",version="v1"' in body


def test_monitor_with_the_store_down_is_one_error_line_and_writes_nothing(
    flywheel: Flywheel, registered_config: Path, tmp_path: Path
) -> None:
    # given a configuration whose store does not answer
    (port,) = free_ports(1)
    config = yaml.safe_load(registered_config.read_text())
    config["storage"] = {
        "uri": "s3://flywheel/store",
        "endpoint": f"127.0.0.1:{port}",
        "secure": False,
    }
    path = tmp_path / "down.yaml"
    path.write_text(yaml.safe_dump(config))
    report = tmp_path / "monitoring.html"
    # when monitored
    result = flywheel("-c", str(path), "monitor", "--report", str(report))
    # then it fails with one line naming the store, and writes no report
    assert result.code == 1
    assert result.err.strip().count("\n") == 0
    assert result.err.startswith("error: cannot read loan-default's logs and registry")
    assert "nothing was recorded" in result.err
    assert not report.exists()


def test_monitor_of_a_project_with_nothing_registered_says_there_is_nothing_to_report(
    flywheel: Flywheel, config_file: Path, tmp_path: Path
) -> None:
    # given a project that has registered nothing, so its production alias never moved
    report = tmp_path / "monitoring.html"
    # when monitored
    result = flywheel("-c", str(config_file), "monitor", "--report", str(report))
    # then it says so, with no error
    assert result.code == 0, result.err
    assert "No served requests and no log lines in these windows." in result.out
    assert result.err == ""


def test_monitor_refuses_an_until_that_is_not_a_time(
    flywheel: Flywheel, registered_config: Path
) -> None:
    result = flywheel("-c", str(registered_config), "monitor", "--until", "yesterday")
    assert result.code == 1
    assert "--until 'yesterday' is not a date or time" in result.err


def test_the_fan_out_lists_partitions_summarises_one_and_the_next_look_merges_it(
    flywheel: Flywheel, registered_config: Path, tmp_path: Path
) -> None:
    import json

    # given traffic logged now
    settings = load_settings(registered_config, env={})
    store = LocalStore(settings.storage.uri)
    for name in ("predictions", "feedback", "summaries"):
        for key in store.list(f"{name}/"):
            store.delete(key)
    generator = settings.data.generator
    log_traffic(
        store, "loan-default", "v1", synthetic.generate_day(generator.start_date, generator)
    )
    common = ["-c", str(registered_config), "monitor", "--window", "hour", "--windows", "2"]
    # when the partitions are listed, and each summarised as the chart's steps do
    listed = flywheel(*common, "--until", _next_hour(), "--list-partitions")
    assert listed.code == 0, listed.text
    found = json.loads(listed.out)
    assert found and {p["version"] for p in found} == {"v1"}
    for p in found:
        done = flywheel(*common, "--partition", f"{p['version']}/{p['day']}/{p['hour']}")
        assert done.code == 0, done.text
    parts = [k for k in store.list("summaries/") if ".parts/" in k]
    assert len(parts) == len(found)
    # then nothing is left to list, and the look merges the parts and removes them
    again = flywheel(*common, "--until", _next_hour(), "--list-partitions")
    assert json.loads(again.out) == []
    looked = flywheel(*common, "--until", _next_hour(), "--report", str(tmp_path / "r.html"))
    assert looked.code == 0, looked.text
    assert re.search(r"v1 \(production\): \d+ requests", looked.out)
    assert not [k for k in store.list("summaries/") if ".parts/" in k]


def test_a_malformed_partition_or_a_report_path_that_is_a_directory_is_one_line(
    flywheel: Flywheel, registered_config: Path
) -> None:
    result = flywheel("-c", str(registered_config), "monitor", "--partition", "v1/2026-13-01/25")
    assert result.code == 2
    assert "v1/2026-13-01/25" in result.text and "Traceback" not in result.text
    result = flywheel("-c", str(registered_config), "monitor", "--report", "/tmp")
    assert result.code == 2
    assert "is a directory" in result.text and "Traceback" not in result.text


def test_sigterm_mid_join_stops_the_look_and_leaves_nothing_behind(
    registered_config: Path, tmp_path: Path
) -> None:
    # given an hour of traffic, half of it labelled, logged again in 400 files (the copies
    # counted as such), so that joining every label takes a while
    settings = load_settings(registered_config, env={})
    store = LocalStore(settings.storage.uri)
    generator = settings.data.generator
    day = synthetic.generate_day(generator.start_date + timedelta(days=6), generator)
    log_traffic(store, "loan-default", "v1", day, labelled=0.5)
    (logged,) = [k for k in store.list("predictions/") if k.endswith(".parquet")]
    folder, name = logged.rsplit("/", 1)
    stamp, _, rest = name.partition("-")
    data = store.read(logged)
    for copy in range(400):
        store.write(f"{folder}/{stamp}-{9000 + copy}-{rest}", data)
    before = sorted(store.list(""))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command = [
        *("-c", str(registered_config), "--set", "monitoring.label_join=every"),
        *("monitor", "--window", "hour", "--windows", "2", "--until", _next_hour()),
        *("--workers", "2"),
    ]
    # when the look is sent SIGTERM once its join's workers have begun spilling (in their
    # folders of its own scratch)
    look = subprocess.Popen(
        [sys.executable, "-m", "flywheel.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not list(scratch.glob("flywheel-join-*/*")) and look.poll() is None:
        assert time.monotonic() < deadline, "the join never began"
        time.sleep(0.005)
    look.send_signal(signal.SIGTERM)
    code = look.wait(timeout=30)
    # then it stops (128 + 15) without a traceback, its spill is gone, no process of its
    # group is left, and the store holds what it held: no record, no summary
    assert code == 128 + signal.SIGTERM, look.communicate()
    assert "Traceback" not in look.communicate()[1]
    assert list(scratch.iterdir()) == []
    time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(look.pid, 0)
        raise AssertionError("a process of the look outlived it")
    assert sorted(store.list("")) == before
