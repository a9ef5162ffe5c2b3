"""What a feedback's true labels say of a version's answers: right or wrong for a classifier,
an error for a regression, and the metrics each becomes."""

from __future__ import annotations

import pytest

from flywheel.problem import Problem
from flywheel.serving.judgement import judge, predicted_code

BINARY = Problem(task="binary", label="y", classes=(0, 1))
GRADES = Problem(task="multiclass", label="grade", classes=("a", "b", "c"))
PRICE = Problem(task="regression", label="price")


def test_a_binary_answer_says_the_positive_class_from_one_half_up() -> None:
    assert predicted_code([0.5, 0.5], BINARY) == 1
    assert predicted_code([0.51, 0.49], BINARY) == 0


def test_a_multiclass_answer_says_its_most_probable_class_the_first_of_a_tie() -> None:
    assert predicted_code([0.2, 0.5, 0.3], GRADES) == 1
    assert predicted_code([0.4, 0.2, 0.4], GRADES) == 0


def test_a_classifier_is_judged_right_or_wrong_and_counted_as_feedback() -> None:
    verdict = judge([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]], [0, 2, 1], GRADES)
    assert (verdict.right, verdict.wrong, verdict.errors) == (2, 1, None)
    names = {m["key"] for m in verdict.metrics()}
    assert names and not any("error" in name for name in names)


def test_a_regression_is_judged_by_its_errors_and_counted_in_the_error_histogram() -> None:
    verdict = judge([[12.0], [7.5]], [10.0, 8.0], PRICE)
    assert verdict.errors == pytest.approx((2.0, -0.5))
    assert (verdict.right, verdict.wrong) == (0, 0)
    assert any("error" in m["key"] for m in verdict.metrics())
