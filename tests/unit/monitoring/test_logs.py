"""Reading the logs: good records come back, every broken line is counted under its reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flywheel.monitoring import logs
from flywheel.monitoring.logs import Skipped
from flywheel.serving.feedbacklog import FeedbackLogger
from flywheel.serving.predictionlog import PredictionLogger
from flywheel.storage import LocalStore

NOW = datetime.now(UTC)


def _record(request_id: str, version: str = "v1", at: datetime = NOW, **extra: object) -> dict:
    return {
        "request_id": request_id,
        "model": "m",
        "version": version,
        "time": at.timestamp(),
        "latency_ms": 3.0,
        "features": ["income", "region"],
        "inputs": [[52000.0, "north"], [None, "south"]],
        "outputs": [[0.9, 0.1], [0.3, 0.7]],
        **extra,
    }


def _file(store: LocalStore, log: str, version: str, lines: list[str], at: datetime = NOW) -> str:
    key = f"{log}/m/{version}/{at:%Y-%m-%d}/{at:%H%M%S%f}-1-000001.jsonl"
    store.write(key, ("\n".join(lines) + "\n").encode())
    return key


def test_a_log_with_corrupt_lines_yields_the_good_records_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    # given a prediction log written by the logger, and a file with every kind of broken line
    store = LocalStore(tmp_path)
    logger = PredictionLogger(store, "m", "v1", numeric=["income"], categorical=["region"], width=2)
    logger.record(_record("good-1"))
    logger.flush()
    good = json.dumps(_record("good-2"))
    _file(
        store,
        "predictions",
        "v1",
        [
            good,
            good[: len(good) // 2],  # truncated by a crash mid-write
            "[1, 2, 3]",
            json.dumps(_record("")),
            json.dumps({k: v for k, v in _record("x").items() if k != "request_id"}),
            json.dumps(_record("other", version="v9")),
            json.dumps(_record("rows", outputs=[[0.5, 0.5]])),
            json.dumps(_record("when", time="yesterday")),
        ],
    )
    _file(store, "predictions", "v7", [json.dumps(_record("unregistered", version="v7"))])
    skipped = Skipped()
    # when the hour around now is read
    found = logs.read_predictions(
        store, "m", {"v1", "v9"}, NOW - timedelta(hours=1), NOW + timedelta(hours=1), skipped
    )
    # then the good records come back, and each broken line is counted once under its reason
    by_id = {p.request_id: p for p in found}
    assert sorted(by_id) == ["good-1", "good-2"]
    assert by_id["good-1"].scores == (0.1, 0.7)
    assert by_id["good-1"].inputs[1] == (None, "south")
    window = (NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert skipped.between("v1", *window) == {
        logs.INVALID_JSON: 2,
        logs.MALFORMED: 2,
        logs.NO_REQUEST_ID: 2,
        logs.UNKNOWN_VERSION: 1,
    }
    assert skipped.between("v7", *window) == {logs.UNKNOWN_VERSION: 1}


def test_records_outside_the_range_are_left_out_without_being_counted(tmp_path: Path) -> None:
    # given records of two hours ago and of now
    store = LocalStore(tmp_path)
    old = NOW - timedelta(hours=2)
    _file(store, "predictions", "v1", [json.dumps(_record("old", at=old))])
    _file(store, "predictions", "v1", [json.dumps(_record("new"))], at=NOW + timedelta(seconds=1))
    skipped = Skipped()
    # when only the last hour is read
    found = logs.read_predictions(store, "m", {"v1"}, NOW - timedelta(hours=1), NOW, skipped)
    later = logs.read_predictions(store, "m", {"v1"}, NOW, NOW + timedelta(hours=1), skipped)
    # then each record belongs to its own hour, and nothing is called broken
    assert found == [] and [p.request_id for p in later] == ["new"]
    assert not skipped.counts


def test_labels_are_read_by_request_id_and_bad_feedback_is_counted(tmp_path: Path) -> None:
    # given feedback written by the feedback logger, and a file with broken feedback
    store = LocalStore(tmp_path)
    logger = FeedbackLogger(store, "m", "v2")
    logger.record(
        {
            "request_id": "a",
            "model": "m",
            "version": "v2",
            "time": NOW.timestamp(),
            "labels": [1, 0],
        }
    )
    logger.flush()
    _file(
        store,
        "feedback",
        "v2",
        [
            json.dumps(
                {
                    "request_id": "b",
                    "model": "m",
                    "version": "v2",
                    "time": NOW.timestamp(),
                    "labels": [2],
                }
            ),
            json.dumps(
                {
                    "request_id": "c",
                    "model": "m",
                    "version": "v2",
                    "time": NOW.timestamp(),
                    "labels": [True],
                }
            ),
            '{"request_id": "d", "mod',
            json.dumps(
                {
                    "request_id": "e",
                    "model": "m",
                    "version": "v2",
                    "time": NOW.timestamp(),
                    "labels": [None, [1]],
                }
            ),
            json.dumps(
                {
                    "request_id": "f",
                    "model": "m",
                    "version": "v2",
                    "time": NOW.timestamp(),
                    "labels": 1,
                }
            ),
        ],
    )
    skipped = Skipped()
    # when read
    labels = logs.read_labels(
        store, "m", {"v2"}, NOW - timedelta(hours=1), NOW + timedelta(hours=1), skipped
    )
    # then every label that can be a class or a number is read (whether it fits the version's
    # task is the analysis' to judge), and feedback without one is counted
    assert labels == {"a": (1, 0), "b": (2,), "c": (True,)}
    assert skipped.between("v2", NOW - timedelta(days=1), NOW + timedelta(days=1)) == {
        logs.INVALID_JSON: 1,
        logs.MALFORMED: 2,
    }


def test_days_span_every_utc_day_touched() -> None:
    start = datetime(2026, 3, 1, 23, tzinfo=UTC)
    assert [d.isoformat() for d in logs.days(start, start + timedelta(hours=2))] == [
        "2026-03-01",
        "2026-03-02",
    ]
