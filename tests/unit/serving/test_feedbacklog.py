"""The feedback log: labels written like the prediction log, under the request id they answer."""

from __future__ import annotations

import json
from pathlib import Path

from flywheel.serving.feedbacklog import FeedbackLogger, feedback_entry, request_id
from flywheel.storage import LocalStore


def test_feedback_is_written_as_json_lines_below_feedback(tmp_path: Path) -> None:
    # given a feedback logger
    store = LocalStore(tmp_path)
    logger = FeedbackLogger(store, "m", "v2")
    response = {"meta": {"tags": {"request_id": "abc", "model_version": "v1"}}}
    # when one feedback is recorded and flushed
    logger.record(feedback_entry("m", "v2", {}, response, [1, 0]) or {})
    logger.flush()
    logger.close()
    # then it is one record under feedback/m/v2/<day>/, and nothing under predictions/
    (key,) = store.list("feedback/m/v2")
    record = json.loads(store.read(key))
    assert (record["request_id"], record["version"], record["labels"]) == ("abc", "v2", [1, 0])
    assert not store.list("predictions")


def test_the_request_id_comes_from_the_response_tag_or_the_request_puid() -> None:
    assert request_id({"meta": {"puid": "p"}}, {"meta": {"tags": {"request_id": "r"}}}) == "r"
    assert request_id({"meta": {"puid": "p"}}, {"data": {}}) == "p"
    assert request_id({}, None) is None
    assert feedback_entry("m", "v1", {}, {}, [1]) is None
