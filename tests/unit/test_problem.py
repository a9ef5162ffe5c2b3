"""The learning problem: the task inferred from a label as type_of_target reads it, the labels
each task refuses, the class codes, and a task that contradicts the estimator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel.problem import (
    Problem,
    ProblemError,
    check_estimator,
    check_label,
    infer_task,
    resolve,
)


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0, 1, 1, 0], "binary"),
        (["yes", "no", "yes"], "binary"),
        ([0, 1, 2, 2, 1], "multiclass"),
        (["red", "green", "blue"], "multiclass"),
        ([0.5, 1.25, 3.0, 2.2], "regression"),
    ],
)
def test_the_task_is_inferred_from_the_label(values: list[object], task: str) -> None:
    assert infer_task(pd.Series(values), "y") == task


def test_many_whole_numbers_are_ambiguous_and_the_task_must_be_said() -> None:
    # given ages: 60 distinct whole numbers could be classes or a quantity
    ages = pd.Series(np.arange(20, 80))
    with pytest.raises(ProblemError, match=r"60 distinct whole numbers .* set model\.task"):
        infer_task(ages, "age")
    # and said, either reading works
    assert resolve("regression", ages, "age").task == "regression"


@pytest.mark.parametrize(
    ("values", "task", "message"),
    [
        (["12.5", "cheap", "3"], "regression", "a regression label must be numbers, found 'cheap'"),
        (
            [2, 2, 2],
            "multiclass",
            "a multiclass label needs at least two classes, .* has 1 \\(2\\)",
        ),
        (
            [0, 1, 2],
            "binary",
            "a binary label has two classes, .* has 3; set model.task: multiclass",
        ),
        (
            [0.5, 1.5, 0.5],
            "multiclass",
            "takes whole numbers or names, .* set model.task: regression",
        ),
    ],
)
def test_a_label_that_cannot_be_the_task_is_refused_naming_it(
    values: list[object], task: str, message: str
) -> None:
    with pytest.raises(ProblemError, match=message):
        check_label(pd.Series(values), task, "y")  # type: ignore[arg-type]


def test_classes_are_in_the_models_order_and_a_class_never_seen_is_named() -> None:
    problem = resolve(None, pd.Series(["b", "a", "c", "a"]), "grade")
    assert (problem.task, problem.classes, problem.inferred) == (
        "multiclass",
        ("a", "b", "c"),
        True,
    )
    np.testing.assert_array_equal(problem.codes(["c", "a"]), [2, 0])
    np.testing.assert_array_equal(problem.known(["c", "z"]), [True, False])
    with pytest.raises(ProblemError, match="grade: class 'z' in the newest batch was never seen"):
        problem.codes(["a", "z"], "the newest batch")


def test_whole_floats_and_integers_are_the_same_class() -> None:
    problem = Problem(task="binary", label="y", classes=(0, 1))
    np.testing.assert_array_equal(problem.codes(pd.Series([1.0, 0.0])), [1, 0])


def test_a_bool_and_the_number_it_equals_stay_apart_however_often_they_repeat() -> None:
    # given classes that are numbers, and labels mixing them with bools and text, repeated
    # (each distinct value is looked up once: True == 1 and they hash alike)
    problem = Problem(task="multiclass", label="y", classes=(0, 1, 2))
    mixed = [1, True, 1.0, "1", 2, True, 1] * 3
    # then a bool is not the class 1, nor is the text '1'
    np.testing.assert_array_equal(
        problem.known(mixed), [True, False, True, False, True, False, True] * 3
    )
    with pytest.raises(ProblemError, match="class '1', True was never seen"):
        problem.codes(mixed)
    np.testing.assert_array_equal(problem.codes([1, 1.0, 2, 0, 2.0] * 2), [1, 1, 2, 0, 2] * 2)


@pytest.mark.parametrize(
    ("path", "task", "message"),
    [
        (
            "sklearn.linear_model.Ridge",
            "binary",
            "Ridge is not a classifier, and the task is binary",
        ),
        (
            "sklearn.linear_model.LogisticRegression",
            "regression",
            "LogisticRegression is not a regressor, and the task is regression",
        ),
        ("sklearn.svm.LinearSVC", "multiclass", "LinearSVC is a classifier without predict_proba"),
    ],
)
def test_a_task_that_contradicts_the_estimator_is_refused(
    path: str, task: str, message: str
) -> None:
    import importlib

    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ProblemError, match=f"model.estimator: {message}"):
        check_estimator(cls, task, "model")  # type: ignore[arg-type]
