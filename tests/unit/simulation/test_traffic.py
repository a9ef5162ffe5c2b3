"""Simulated days of served traffic, read back by monitoring window by window."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from flywheel.config import Settings
from flywheel.monitoring.logs import Skipped, read_labels, read_predictions
from flywheel.monitoring.monitor import monitor
from flywheel.registry import MODEL_FILE, Registry, VersionNotFound
from flywheel.serving.model import ModelUnavailable
from flywheel.simulation.traffic import ROWS_PER_REQUEST, SimulationError, serve_day
from flywheel.storage import LocalStore


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _day(settings: Settings, index: int) -> date:
    return settings.data.generator.start_date + timedelta(days=index)


def test_each_served_day_is_one_monitoring_window_and_its_labels_arrive_two_days_later(
    project: Settings,
) -> None:
    # given v1 in production and batches up to day 4
    store = LocalStore(project.storage.uri)
    # when days 5, 6 and 7 are served, 100 rows a day, labels two days late
    served = [
        serve_day(project, _day(project, i), version="production", rows=100) for i in (5, 6, 7)
    ]
    # then each day's batch was written, and all of its requests answered
    assert [s.batch_written for s in served] == [True, True, True]
    assert [s.rows for s in served] == [100, 100, 100] and not any(s.rejected for s in served)
    assert all(len(s.request_ids) == -(-100 // ROWS_PER_REQUEST) for s in served)
    # and only day 7 sent labels: day 5's, since nothing was served on days 3 and 4
    assert [s.labels_for for s in served] == [None, None, _day(project, 5)]
    assert [s.labels for s in served] == [0, 0, 100]
    # and the prediction log holds exactly each day's requests, stamped inside that day,
    # in files dated by the simulated day
    for s in served:
        logged = read_predictions(
            store,
            "loan-default",
            {"v1"},
            _midnight(s.day),
            _midnight(s.day + timedelta(days=1)),
            Skipped(),
        )
        assert [p.request_id for p in logged] == list(s.request_ids)
        assert {p.version for p in logged} == {"v1"}
    dated = {key.split("/")[3] for key in store.list("predictions/loan-default/v1/")}
    assert dated == {s.day.isoformat() for s in served}
    # and the labels are stamped at the end of day 7
    (feedback_file,) = store.list("feedback/loan-default/v1/")
    assert feedback_file.split("/")[3] == _day(project, 7).isoformat()
    times = {json.loads(line)["time"] for line in store.read(feedback_file).splitlines()}
    assert times == {_midnight(_day(project, 8)).timestamp() - 1}
    # and monitoring, up to the end of day 7, sees one window per day with those rows
    until = _midnight(_day(project, 8))
    result = monitor(
        project.model_copy(
            update={"monitoring": project.monitoring.model_copy(update={"windows": 4})}
        ),
        until=until,
        now=until,
        record=False,
    )
    reports = {r.start.date(): r for r in result.reports}
    assert sorted(reports) == [s.day for s in served]
    for s in served:
        assert reports[s.day].health.rows == 100
        assert reports[s.day].health.requests == len(s.request_ids)
    # with day 5's labels joined to its requests, and none yet for days 6 and 7
    assert [reports[s.day].performance.labelled for s in served] == [100, 0, 0]
    labels = read_labels(store, "loan-default", {"v1"}, until - timedelta(days=1), until, Skipped())
    assert set(labels) == set(served[0].request_ids)


def test_a_batch_already_there_is_served_as_it_is(project: Settings) -> None:
    # given day 4's batch, written before (the newest the model was trained on)
    before = sorted(p.name for p in Path(project.data.source).iterdir())
    # when day 4 is served
    served = serve_day(project, _day(project, 4), version="v1", rows=30)
    # then it is read, not written again, and its 30 rows are answered in two requests
    assert not served.batch_written
    assert sorted(p.name for p in Path(project.data.source).iterdir()) == before
    assert served.rows == 30 and len(served.request_ids) == 2


def test_rows_the_contract_refuses_are_400s_and_are_neither_logged_nor_labelled(
    project: Settings,
) -> None:
    # given a client that sends a channel v1's contract does not know for customers over 65
    def mobile_seniors(part: pd.DataFrame) -> pd.DataFrame:
        return part.assign(channel=part["channel"].where(part["age"] <= 65, "mobile"))

    # when day 5 is served so, and its labels come back on day 7
    day5 = serve_day(project, _day(project, 5), version="v1", rows=200, alter=mobile_seniors)
    day7 = serve_day(project, _day(project, 7), version="v1", rows=200)
    # then the requests holding such a row were refused, naming the feature, and the others answered
    assert day5.rejected and day5.request_ids
    assert all("unknown category 'mobile'" in m for m in day5.rejected.values())
    assert day5.rows + ROWS_PER_REQUEST * len(day5.rejected) == 200
    # and only the answered requests were logged and labelled
    store = LocalStore(project.storage.uri)
    start = _midnight(day5.day)
    logged = read_predictions(
        store, "loan-default", {"v1"}, start, start + timedelta(days=1), Skipped()
    )
    assert [p.request_id for p in logged] == list(day5.request_ids)
    assert day7.labels_for == day5.day and day7.labels == day5.rows


def test_bad_arguments_are_one_clear_error(project: Settings) -> None:
    with pytest.raises(SimulationError, match="rows must be at least 1"):
        serve_day(project, _day(project, 5), version="v1", rows=0)
    with pytest.raises(SimulationError, match="label_delay_days must be 0 or more"):
        serve_day(project, _day(project, 5), version="v1", label_delay_days=-1)
    with pytest.raises(VersionNotFound):
        serve_day(project, _day(project, 5), version="v9")


def test_a_version_that_cannot_be_served_writes_nothing(project: Settings) -> None:
    # given v2, registered with a model file that does not load
    registry = Registry.from_settings(project)
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    registry.register({**files, MODEL_FILE: b"not a model"}, run_id="r2", fingerprint="broken")
    # when a day is served by it
    with pytest.raises(ModelUnavailable, match="cannot serve loan-default v2"):
        serve_day(project, _day(project, 5), version="v2")
    # then neither the day's batch nor any log was written
    assert not (Path(project.data.source) / f"{_day(project, 5)}.parquet").exists()
    assert not LocalStore(project.storage.uri).list("predictions/")
