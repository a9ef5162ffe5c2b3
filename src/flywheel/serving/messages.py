"""The Seldon messages a served model answers and reads beyond the request's rows: its answer
(a probability per class, or the predicted value, rounded), the answer a response it gave
carries, the true labels of a feedback, and the `sent_at` tag a replaying client stamps its
messages with.
"""

from __future__ import annotations

import math
from typing import Any

from flywheel.problem import Problem, ProblemError
from flywheel.serving.requests import BadRequest

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


def true_labels(truth: Any, problem: Problem) -> list[int] | list[float]:
    """The true labels of a feedback's `truth`, one per row: a classifier's class codes (the
    index in `problem.classes`), a regression's numbers.

    A class comes by its name (as answers name it) or by the value the label takes; a
    row of one probability per class (one-hot) is its most probable class; a binary
    label may also be 0 or 1, the class's index, as before classes had names. Anything
    else is a BadRequest naming the label.
    """
    data = truth.get("data") if isinstance(truth, dict) else None
    values = data.get("ndarray") if isinstance(data, dict) else None
    if values is None and isinstance(data, dict) and isinstance(data.get("tensor"), dict):
        tensor = data["tensor"]
        values = tensor.get("values")
        shape = tensor.get("shape")
        if isinstance(values, list) and shape and len(shape) == 2 and shape[1] > 1:
            width = int(shape[1])
            values = [values[i : i + width] for i in range(0, len(values), width)]
    if not isinstance(values, list) or not values:
        raise BadRequest('feedback needs the true labels as "truth": {"data": {"ndarray": [...]}}')
    rows = [row[0] if isinstance(row, list) and len(row) == 1 else row for row in values]
    if not problem.is_classifier:
        return [_number(row, problem) for row in rows]
    return [_code(row, problem) for row in rows]


def _number(value: Any, problem: Problem) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(
            f"a true label of the regression of {problem.label!r} is a finite number, got {value!r}"
        )
    return float(value)


def _code(value: Any, problem: Problem) -> int:
    names = problem.output_names
    k = len(names)
    if isinstance(value, list):
        if len(value) == k and all(_probability(v) for v in value):
            # one-hot: its most probable class (for binary, class 1 only when above class 0)
            return max(range(k), key=lambda i: (value[i], -i))
    elif isinstance(value, str) and value in names:
        return names.index(value)
    elif isinstance(value, str | int | float | bool):
        try:
            return int(problem.codes([value])[0])
        except ProblemError:
            if problem.task == "binary" and not isinstance(value, bool) and value in (0, 1):
                return int(value)
    index = " (or its index, 0 or 1)" if problem.task == "binary" else ""
    raise BadRequest(
        f"a true label must be a class of {problem.label!r}: {', '.join(names)}{index}; "
        f"got {value!r}"
    )


def _probability(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def own_outputs(
    response: Any, version: str, width: int, predictor: str = ""
) -> list[list[float]] | None:
    """The answer rows (`width` values each) of a response `version` gave (from `predictor`,
    when the response names the predictor that answered), else None."""
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
        answers = [[float(v) for v in row] for row in rows]
    except (TypeError, ValueError):
        return None
    return answers if all(len(row) == width for row in answers) else None
