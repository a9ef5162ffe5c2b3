"""Window reports in the store: create-only, and the newest look at each window wins."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from flywheel.monitoring.records import latest_records, record_key, write_record
from flywheel.monitoring.window import WindowReport
from flywheel.storage import LocalStore, ObjectExists


def test_a_record_is_never_overwritten(report: WindowReport, tmp_path: Path) -> None:
    # given a stored report
    store = LocalStore(tmp_path)
    write_record(store, report)
    # when the same look is stored again
    # then the store refuses, and the first record stands
    with pytest.raises(ObjectExists):
        write_record(store, report)
    assert WindowReport.model_validate_json(store.read(record_key(report))) == report


def test_the_newest_look_at_each_window_is_its_current_state(
    report: WindowReport, tmp_path: Path
) -> None:
    # given two looks at one window (labels arrived in between) and one look at the next
    store = LocalStore(tmp_path)
    later = report.model_copy(update={"computed_at": report.computed_at + timedelta(hours=5)})
    following = report.model_copy(
        update={"start": report.end, "end": report.end + (report.end - report.start)}
    )
    for r in (later, report, following):
        write_record(store, r)
    # when read back
    records = latest_records(store, report.model, report.version, report.window)
    # then each window appears once, with its newest look, oldest window first
    assert [(r.start, r.computed_at) for r in records] == [
        (report.start, later.computed_at),
        (following.start, following.computed_at),
    ]


def test_a_look_back_reads_what_was_recorded_by_then(report: WindowReport, tmp_path: Path) -> None:
    # given a window looked at twice, five hours apart (labels arrived in between)
    store = LocalStore(tmp_path)
    later = report.model_copy(update={"computed_at": report.computed_at + timedelta(hours=5)})
    for r in (report, later):
        write_record(store, r)
    # when read as of an hour after the first look, then the first look is what was there
    then = report.computed_at + timedelta(hours=1)
    (seen,) = latest_records(store, report.model, report.version, report.window, then)
    assert seen.computed_at == report.computed_at
    # and as of a moment before it, nothing was
    before = report.computed_at - timedelta(microseconds=1)
    assert latest_records(store, report.model, report.version, report.window, before) == []
