"""The feedback log: the true labels Seldon feedback brings, joined to predictions by request id.

Written like the prediction log (bounded, non-blocking, a Parquet file a minute or per
few megabytes, `logformat.feedback_table`) below `feedback/<model>/<version>/<day>/`, from
one record per feedback:

    {"request_id": "...", "model": "loan-default", "version": "v3", "time": 1767225600.0,
     "labels": [0, 1, ...]}

`labels` are a classifier's classes as the contract's `classes` hold them (names or values:
`Problem.codes` reads them back), a regression's numbers.

`version` is the predictor that received the feedback; monitoring joins on the
request id alone, so a label routed to another predictor still finds its request. With a
logged share below 1, a feedback is logged when its request id is in the share, which is
when its prediction was.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flywheel import logformat
from flywheel.problem import Label
from flywheel.serving.predictionlog import BufferedLog
from flywheel.storage import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa


class FeedbackLogger(BufferedLog):
    """A bounded, non-blocking log of feedback labels."""

    kind = "feedback-log"

    def __init__(self, store: ObjectStore, model_name: str, version: str, **options: Any) -> None:
        super().__init__(store, f"feedback/{model_name}/{version}", model_name, version, **options)

    def _table(self, records: Sequence[dict[str, Any]]) -> pa.Table:
        return logformat.feedback_table(records)


def request_id(request: Any, response: Any) -> str | None:
    """The id the prediction was logged under: the response's request_id tag, else the
    request's puid."""
    for message, path in ((response, ("meta", "tags", "request_id")), (request, ("meta", "puid"))):
        value = message
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def feedback_entry(
    model: str,
    version: str,
    request: Any,
    response: Any,
    labels: Sequence[Label],
    *,
    at: float | None = None,
) -> dict[str, Any] | None:
    """The log record of one feedback (received `at`, default now), or None when it names no
    request to join to."""
    found = request_id(request, response)
    if found is None:
        return None
    return {
        "request_id": found,
        "model": model,
        "version": version,
        "time": time.time() if at is None else at,
        "labels": list(labels),
    }
