"""A log's files as monitoring reads them: listed and dated by their names, each read as one
typed table, and what cannot be used counted under its reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from flywheel import logformat
from flywheel.monitoring import logs, tables
from flywheel.monitoring.logs import Skipped
from flywheel.storage import LocalStore

DAY = "predictions/m/v1/2026-01-17"
WRITTEN = datetime(2026, 1, 17, 0, 1, 2, tzinfo=UTC)


def test_a_log_files_write_time_is_read_from_its_name_to_the_microsecond(tmp_path: Path) -> None:
    # given files named as the loggers name them, and one that is not a log's
    store = LocalStore(tmp_path)
    for name in ("235959999999-0-compacted.parquet", "000102000003-41-000001.parquet", "x.txt"):
        store.write(f"{DAY}/{name}", b"")
    # when the day's files are listed
    found = tables.log_files(store, logs.PREDICTIONS, "m", "v1", datetime(2026, 1, 17).date())
    # then each is dated by its name, oldest first, and the stranger is left out
    assert [f.written for f in found] == [
        datetime(2026, 1, 17, 0, 1, 2, 3, tzinfo=UTC),
        datetime(2026, 1, 17, 23, 59, 59, 999999, tzinfo=UTC),
    ]


def _feedback(store: LocalStore, name: str, data: bytes) -> tables.LogFile:
    key = f"feedback/m/v1/2026-01-17/{name}"
    store.write(key, data)
    return tables.LogFile(key, "v1", WRITTEN)


def test_a_feedback_file_is_read_as_one_table_of_its_labels(tmp_path: Path) -> None:
    store, skipped = LocalStore(tmp_path), Skipped()
    entries = [{"request_id": "r1", "time": 1.0, "labels": [1, 0]}]
    data = logformat.to_parquet(logformat.feedback_table(entries), {"model": "m", "version": "v1"})
    file = _feedback(store, "000102000000-1-000001.parquet", data)
    table = tables.feedback_table(store, file, "m", skipped)
    assert table is not None and table.num_rows == 2
    assert table.column(logformat.LABEL_NUMBER).to_pylist() == [1.0, 0.0]
    assert not skipped.counts


def test_a_truncated_or_foreign_feedback_file_is_counted_and_skipped(tmp_path: Path) -> None:
    store, skipped = LocalStore(tmp_path), Skipped()
    entries = [{"request_id": "r1", "time": 1.0, "labels": [1]}]
    whole = logformat.to_parquet(logformat.feedback_table(entries), {"model": "m", "version": "v1"})
    truncated = _feedback(store, "000102000000-1-000001.parquet", whole[: len(whole) // 2])
    other = logformat.to_parquet(logformat.feedback_table(entries), {"model": "m", "version": "v2"})
    foreign = _feedback(store, "000102000000-1-000002.parquet", other)
    assert tables.feedback_table(store, truncated, "m", skipped) is None
    assert tables.feedback_table(store, foreign, "m", skipped) is None
    assert skipped.counts == {
        ("v1", WRITTEN, logs.UNREADABLE): 1,
        ("v1", WRITTEN, logs.UNKNOWN_VERSION): 1,
    }
