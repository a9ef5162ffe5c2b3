"""The Seldon messages a served model answers and reads beyond the request's rows: its answer
(the class probabilities, rounded), the scores a response it gave carries, the true labels of
a feedback, and the `sent_at` tag a replaying client stamps its messages with.
"""

from __future__ import annotations

import math
from typing import Any

from flywheel.serving.requests import BadRequest

CLASS_NAMES = ["repaid", "defaulted"]
SENT_AT = "sent_at"  # the tag a replaying client stamps its messages with (stamp_from_request)
# Up to this many rows, the answer is rounded in plain floats.
_FEW_ROWS = 16


def rounded(probabilities: Any) -> list[list[float]]:
    """`probabilities.round(6).tolist()`: the answer's six decimals. A few rows are rounded
    in plain floats (numpy's call costs more than the arithmetic), as numpy rounds: times
    10**6, to the nearest integer (ties to even), divided by 10**6, the sign kept."""
    if len(probabilities) > _FEW_ROWS:
        rows: list[list[float]] = probabilities.round(6).tolist()
        return rows
    return [[_round6(p) for p in row] for row in probabilities.tolist()]


def _round6(value: float) -> float:
    scaled = value * 1e6
    if not math.isfinite(scaled):
        return scaled / 1e6
    return math.copysign(round(scaled) / 1e6, scaled)


def sent_at(message: Any, where: str) -> float:
    """When a replaying client sent `message`: its `meta.tags.sent_at` (epoch seconds); a
    BadRequest naming `where` (what the message is) without a finite one."""
    meta = message.get("meta") if isinstance(message, dict) else None
    tags = meta.get("tags") if isinstance(meta, dict) else None
    value = tags.get(SENT_AT) if isinstance(tags, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(
            f"stamp_from_request is on: {where} needs meta.tags.{SENT_AT}, the epoch "
            f"seconds it was sent at, not {value!r}"
        )
    return float(value)


def true_labels(truth: Any) -> list[int]:
    """The true classes of a feedback's `truth`: 0 or 1 per row, or one row of [P(0), P(1)]
    per row (one-hot)."""
    data = truth.get("data") if isinstance(truth, dict) else None
    values = data.get("ndarray") if isinstance(data, dict) else None
    if values is None and isinstance(data, dict) and isinstance(data.get("tensor"), dict):
        tensor = data["tensor"]
        values = tensor.get("values")
        shape = tensor.get("shape")
        if isinstance(values, list) and shape and len(shape) == 2 and shape[1] == 2:
            values = [values[i : i + 2] for i in range(0, len(values), 2)]
    if not isinstance(values, list) or not values:
        raise BadRequest('feedback needs the true labels as "truth": {"data": {"ndarray": [...]}}')
    labels = []
    for row in values:
        if isinstance(row, list) and len(row) == 2:
            row = 1 if row[1] > row[0] else 0
        elif isinstance(row, list) and len(row) == 1:
            row = row[0]
        if isinstance(row, bool) or row not in (0, 1):
            raise BadRequest(f"a true label must be 0 or 1, got {row!r}")
        labels.append(int(row))
    return labels


def own_scores(response: Any, version: str, predictor: str = "") -> list[float] | None:
    """P(defaulted) per row from a response `version` gave (from `predictor`, when the
    response names the predictor that answered), else None."""
    if not isinstance(response, dict):
        return None
    tags = (response.get("meta") or {}).get("tags") or {}
    rows = (response.get("data") or {}).get("ndarray")
    if tags.get("model_version") != version or not isinstance(rows, list) or not rows:
        return None
    if predictor and tags.get("predictor", predictor) != predictor:
        # The same version from another predictor: a canary of the serving pod, whose
        # answers are the new pod's, not this one's.
        return None
    try:
        return [float(row[1]) for row in rows]
    except (TypeError, IndexError, ValueError):
        return None
