"""What the true labels of a feedback say of a version's answers, per task.

A classifier's answer is right when its most probable class is the label (a binary's
when P(positive) >= 0.5 says the label, as before); a regression's answer has an error,
the predicted value less the label, which the canary reads as a mean absolute error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flywheel.problem import Problem
from flywheel.serving.metrics import error_metrics, feedback_metrics


@dataclass(frozen=True)
class Judgement:
    """A feedback's labelled rows: a classifier's answered right and wrong, a regression's
    errors (predicted less true)."""

    right: int = 0
    wrong: int = 0
    errors: tuple[float, ...] | None = None

    def metrics(self) -> list[dict[str, Any]]:
        """The feedback's custom metrics: FEEDBACK, or the error histogram and sums."""
        if self.errors is not None:
            return error_metrics(self.errors)
        return feedback_metrics(self.right, self.wrong)


def predicted_code(row: Sequence[float], problem: Problem) -> int:
    """The class an answer row says: P(positive) >= 0.5 for binary, else the most probable
    (the first of a tie)."""
    if problem.task == "binary":
        return int(row[1] >= 0.5)
    return max(range(len(row)), key=lambda i: (row[i], -i))


def judge(
    outputs: Sequence[Sequence[float]], labels: Sequence[int] | Sequence[float], problem: Problem
) -> Judgement:
    """The judgement of answer rows against their true labels (`messages.true_labels`)."""
    if not problem.is_classifier:
        return Judgement(
            errors=tuple(
                float(row[0]) - float(label) for row, label in zip(outputs, labels, strict=True)
            )
        )
    right = sum(
        predicted_code(row, problem) == label for row, label in zip(outputs, labels, strict=True)
    )
    return Judgement(right=right, wrong=len(labels) - right)
