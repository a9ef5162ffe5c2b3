"""The feedback log: labels written like the prediction log, under the request id they answer."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import logformat
from flywheel.serving.feedbacklog import FeedbackLogger, feedback_entry, request_id
from flywheel.serving.predictionlog import PredictionLogger
from flywheel.storage import LocalStore, StoreUnavailable


def _table(store: LocalStore, prefix: str) -> pa.Table:
    return pa.concat_tables(
        [pq.read_table(io.BytesIO(store.read(key))) for key in store.list(prefix)]
    )


def test_feedback_is_written_as_parquet_below_feedback(tmp_path: Path) -> None:
    # given a feedback logger
    store = LocalStore(tmp_path)
    logger = FeedbackLogger(store, "m", "v2")
    response = {"meta": {"tags": {"request_id": "abc", "model_version": "v1"}}}
    # when one feedback of two labelled rows is recorded and flushed
    logger.record(feedback_entry("m", "v2", {}, response, [1, 0]) or {})
    logger.flush()
    logger.close()
    # then it is one file under feedback/m/v2/<day>/, and nothing under predictions/
    (key,) = store.list("feedback/m/v2")
    assert key.endswith(".parquet")
    table = pq.read_table(io.BytesIO(store.read(key)))
    assert table.column("_request_id").to_pylist() == ["abc", "abc"]
    assert table.column("_row").to_pylist() == [0, 1]
    assert table.column("_label_number").to_pylist() == [1.0, 0.0]
    assert table.schema.metadata[b"version"] == b"v2"
    assert not store.list("predictions")


def test_class_names_and_numbers_are_kept_apart(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    logger = FeedbackLogger(store, "m", "v1")
    for i, labels in enumerate((["late", "paid"], [151.0])):
        logger.record(
            {"request_id": f"r{i}", "model": "m", "version": "v1", "time": 1.0, "labels": labels}
        )
    logger.close()
    table = _table(store, "feedback/m/v1")
    assert table.column("_label_text").to_pylist() == ["late", "paid", None]
    assert table.column("_label_number").to_pylist() == [None, None, 151.0]


def test_a_sampled_feedback_log_keeps_the_labels_of_the_logged_predictions(
    tmp_path: Path,
) -> None:
    # given a prediction log and a feedback log of a tenth of requests
    store = LocalStore(tmp_path)
    predictions = PredictionLogger(
        store, "m", "v1", numeric=["x"], categorical=[], width=1, share=0.1, flush_seconds=3600
    )
    feedback = FeedbackLogger(store, "m", "v1", share=0.1, flush_seconds=3600)
    # when 1,000 requests are served and every one is labelled
    for i in range(1000):
        rid = f"request-{i}"
        predictions.record(
            {"request_id": rid, "time": 1.0, "features": ["x"], "inputs": [[i]], "outputs": [[0.5]]}
        )
        feedback.record({"request_id": rid, "time": 2.0, "labels": [i % 2]})
    predictions.close()
    feedback.close()
    # then the labels logged are exactly those of the predictions logged
    logged = set(_table(store, "predictions/m/v1").column("_key").to_pylist())
    labelled = set(_table(store, "feedback/m/v1").column("_key").to_pylist())
    assert logged == labelled and 50 < len(logged) < 150
    assert all(logformat.sampled(key, 0.1) for key in logged)
    assert feedback.sampled_out == predictions.sampled_out == 1000 - len(logged)


class DownStore(LocalStore):
    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        raise StoreUnavailable("cannot reach the S3 endpoint 127.0.0.1:1")


def test_feedback_a_store_that_is_down_cannot_take_is_dropped_and_counted(tmp_path: Path) -> None:
    logger = FeedbackLogger(DownStore(tmp_path), "m", "v1", flush_seconds=3600)
    for i in range(3):
        logger.record({"request_id": f"r{i}", "time": 1.0, "labels": [1]})
    logger.close()
    assert (logger.dropped, logger.failed_writes, logger.logged, logger.held_bytes) == (3, 1, 0, 0)


def test_the_request_id_comes_from_the_response_tag_or_the_request_puid() -> None:
    assert request_id({"meta": {"puid": "p"}}, {"meta": {"tags": {"request_id": "r"}}}) == "r"
    assert request_id({"meta": {"puid": "p"}}, {"data": {}}) == "p"
    assert request_id({}, None) is None
    assert feedback_entry("m", "v1", {}, {}, [1]) is None
