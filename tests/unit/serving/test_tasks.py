"""The served model of each task beyond binary, trained on scikit-learn's datasets through
flywheel.training.train: wine's three classes by name, diabetes' regression. What each
answers, the metrics it counts, the feedback it takes and refuses, and its metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from flywheel.contract import Contract
from flywheel.registry import Registry
from flywheel.serving.judgement import Judgement
from flywheel.serving.metrics import (
    ABS_ERROR,
    ERROR_BOUNDS,
    ERRORS,
    FEEDBACK,
    PREDICTIONS,
    SCORES,
    SQUARED_ERROR,
    error_bucket,
    prediction_bucket,
    score_bucket,
)
from flywheel.serving.model import FlywheelModel, ModelUnavailable
from flywheel.serving.requests import BadRequest
from flywheel.storage import LocalStore
from harness.problems import Dataset, dataset_frame, register

CLASSES = ["class_0", "class_1", "class_2"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A registry per dataset, its model v1 in production."""
    root = tmp_path_factory.mktemp("tasks")
    for name in ("wine", "diabetes"):
        register(name, root / name)
    return {name: root / name for name in ("wine", "diabetes")}


def _served(stores: dict[str, Path], name: Dataset, **parameters: Any) -> FlywheelModel:
    model = FlywheelModel(
        model_name=name,
        model_version="v1",
        store_uri=str(stores[name]),
        **{"log_predictions": "false", **parameters},
    )
    model.load()
    return model


def _rows(name: Dataset, n: int = 4) -> tuple[list[dict[str, Any]], list[Any]]:
    """The first rows, each class in turn (wine), and their labels."""
    frame = dataset_frame(name)
    if name == "wine":
        frame = frame.assign(turn=frame.groupby("label").cumcount()).sort_values(["turn", "label"])
    frame = frame.head(n)
    columns = [c for c in frame.columns if c not in ("label", "event_time", "turn")]
    return json.loads(frame[columns].to_json(orient="records")), frame["label"].tolist()


def _answered(
    stores: dict[str, Path], name: Dataset, n: int = 4
) -> tuple[FlywheelModel, dict[str, Any], dict[str, Any], list[Any]]:
    """A fresh server, its request of the first `n` rows, its answer, and their labels."""
    model = _served(stores, name)
    model.metrics()
    rows, labels = _rows(name, n)
    request = {"jsonData": rows}
    return model, request, model.score(request), labels


def test_a_multiclass_model_answers_a_probability_per_class_named_as_its_contract(
    stores: dict[str, Path],
) -> None:
    # given wine's model served, when rows are scored
    _, request, response, _ = _answered(stores, "wine")
    rows = request["jsonData"]
    # then each row has a probability per class, named and ordered as the contract's classes
    contract = Contract.from_json(
        Registry(LocalStore(stores["wine"]), "wine").read("v1", "contract.json")
    )
    assert response["data"]["names"] == [str(c) for c in contract.classes] == CLASSES
    ndarray = response["data"]["ndarray"]
    assert all(len(r) == 3 and abs(sum(r) - 1) < 1e-5 for r in ndarray)
    # and the metrics count each class's probability in its own buckets
    counted = {
        (m["tags"]["class"], m["tags"]["bucket"]): m["value"]
        for m in response["meta"]["metrics"]
        if m["key"] == SCORES
    }
    expected: dict[tuple[str, str], int] = {}
    for row in ndarray:
        for name, p in zip(CLASSES, row, strict=True):
            key = (name, str(score_bucket(p)))
            expected[key] = expected.get(key, 0) + 1
    assert counted == expected
    assert sum(counted.values()) == 3 * len(rows)


def test_a_regression_answers_the_predicted_value_counted_in_the_label_bins(
    stores: dict[str, Path],
) -> None:
    _, _, response, _ = _answered(stores, "diabetes")
    # then each row is one predicted value, named as the label
    assert response["data"]["names"] == ["label"]
    values = [row[0] for row in response["data"]["ndarray"]]
    assert all(len(r) == 1 for r in response["data"]["ndarray"])
    assert all(25 <= v <= 350 for v in values)  # diabetes' progression scale
    # and the metrics count the values in the bins of the contract's label profile
    contract = Contract.from_json(
        Registry(LocalStore(stores["diabetes"]), "diabetes").read("v1", "contract.json")
    )
    assert contract.label_profile is not None
    edges = contract.label_profile.edges
    counted = {
        m["tags"]["bucket"]: m["value"]
        for m in response["meta"]["metrics"]
        if m["key"] == PREDICTIONS
    }
    expected: dict[str, int] = {}
    for v in values:
        expected[str(prediction_bucket(v, edges))] = (
            expected.get(str(prediction_bucket(v, edges)), 0) + 1
        )
    assert counted == expected
    assert not [m for m in response["meta"]["metrics"] if m["key"] == SCORES]


def test_metadata_names_each_tasks_outputs(stores: dict[str, Path]) -> None:
    wine = _served(stores, "wine").init_metadata()["outputs"]
    diabetes = _served(stores, "diabetes").init_metadata()["outputs"]
    assert wine == [{"messagetype": "ndarray", "schema": {"names": CLASSES, "shape": [3]}}]
    assert diabetes == [{"messagetype": "ndarray", "schema": {"names": ["label"], "shape": [1]}}]


def test_multiclass_feedback_takes_a_class_by_name_by_index_row_or_one_hot(
    stores: dict[str, Path],
) -> None:
    # given wine's answers to one row of each class, all right on this training data
    model, request, response, labels = _answered(stores, "wine", 3)
    predicted = [max(range(3), key=lambda i: r[i]) for r in response["data"]["ndarray"]]
    assert [CLASSES[i] for i in predicted] == labels
    # when the truth is sent by name, then each answer is right
    by_name = {"data": {"ndarray": labels}}
    assert model.judge_feedback(request, response, by_name) == Judgement(3, 0)
    # and a one-hot row per label, or the rows wrapped, say the same
    one_hot = {"data": {"ndarray": [[float(i == p) for i in range(3)] for p in predicted]}}
    assert model.judge_feedback(request, response, one_hot) == Judgement(3, 0)
    wrapped = {"data": {"ndarray": [[label] for label in labels]}}
    assert model.judge_feedback(request, {}, wrapped) == Judgement(3, 0)
    # and a tensor of one-hot rows too
    flat = [float(i == p) for p in predicted for i in range(3)]
    tensor = {"data": {"tensor": {"shape": [3, 3], "values": flat}}}
    assert model.judge_feedback(request, response, tensor) == Judgement(3, 0)
    # when the labels are shifted by one class, every answer is wrong
    shifted = {"data": {"ndarray": [CLASSES[(p + 1) % 3] for p in predicted]}}
    judged = model.judge_feedback(request, response, shifted)
    assert judged == Judgement(0, 3)
    assert judged.metrics() == [
        {"type": "COUNTER", "key": FEEDBACK, "value": 3, "tags": {"correct": "false"}}
    ]


def test_a_multiclass_feedback_with_an_unseen_class_is_a_bad_request_naming_it(
    stores: dict[str, Path],
) -> None:
    model = _served(stores, "wine")
    rows, _ = _rows("wine", 1)
    for label in ("class_9", 7, True):
        with pytest.raises(
            BadRequest,
            match=r"a true label must be a class of 'label': "
            r"class_0, class_1, class_2; got",
        ):
            model.judge_feedback({"jsonData": rows}, {}, {"data": {"ndarray": [label]}})
    # a binary's index (0 or 1) names no class of a multiclass model's named classes
    with pytest.raises(BadRequest, match=r"got 1$"):
        model.judge_feedback({"jsonData": rows}, {}, {"data": {"ndarray": [1]}})


def test_regression_feedback_counts_errors_in_the_histogram_with_their_sums(
    stores: dict[str, Path],
) -> None:
    model, request, response, labels = _answered(stores, "diabetes", 3)
    values = [row[0] for row in response["data"]["ndarray"]]
    # when the true values come back, as numbers (one wrapped in a row of one)
    truth = {"data": {"ndarray": [labels[0], [labels[1]], labels[2]]}}
    judged = model.judge_feedback(request, response, truth)
    # then each row's error is its predicted value less the label
    errors = [v - y for v, y in zip(values, labels, strict=True)]
    assert (judged.right, judged.wrong) == (0, 0)
    assert judged.errors == pytest.approx(errors)
    # and the metrics count them by absolute error, with the sums of |e| and e^2
    metrics = judged.metrics()
    buckets: dict[str, int] = {}
    for e in errors:
        buckets[str(error_bucket(e))] = buckets.get(str(error_bucket(e)), 0) + 1
    assert {m["tags"]["bucket"]: m["value"] for m in metrics if m["key"] == ERRORS} == buckets
    (abs_sum,) = [m["value"] for m in metrics if m["key"] == ABS_ERROR]
    (squared,) = [m["value"] for m in metrics if m["key"] == SQUARED_ERROR]
    assert abs_sum == pytest.approx(sum(abs(e) for e in errors))
    assert squared == pytest.approx(sum(e * e for e in errors))
    assert not [m for m in metrics if m["key"] == FEEDBACK]


def test_error_buckets_are_fixed_and_bounded_at_their_upper_edge() -> None:
    assert error_bucket(0.0) == 0 and error_bucket(0.001) == 0 and error_bucket(-0.0011) == 1
    assert error_bucket(ERROR_BOUNDS[-1]) == len(ERROR_BOUNDS) - 1
    assert error_bucket(1e12) == len(ERROR_BOUNDS)
    with pytest.raises(ValueError, match="must be finite"):
        error_bucket(float("nan"))


@pytest.mark.parametrize("label", ["150.0", "high", True, None, float("inf"), [1.0, 2.0]])
def test_a_regression_feedback_whose_label_is_not_a_number_is_a_bad_request(
    stores: dict[str, Path], label: Any
) -> None:
    model = _served(stores, "diabetes")
    rows, _ = _rows("diabetes", 1)
    with pytest.raises(
        BadRequest, match=r"a true label of the regression of 'label' is a finite number, got"
    ):
        model.judge_feedback({"jsonData": rows}, {}, {"data": {"ndarray": [label]}})


def test_the_feedback_log_holds_classes_and_numbers_as_the_label_takes_them(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    for name, sent, logged in (
        ("wine", [[0.0, 0.0, 1.0]], ["class_2"]),
        ("diabetes", [151], [151.0]),
    ):
        store = tmp_path / name
        shutil.copytree(stores[name], store)
        model = FlywheelModel(
            model_name=name, model_version="v1", store_uri=str(store), log_predictions="true"
        )
        model.load()
        rows, _ = _rows(name, 1)  # type: ignore[arg-type]
        request = {"jsonData": rows, "meta": {"puid": f"{name}-1"}}
        response = model.score(request)
        model.judge_feedback(request, response, {"data": {"ndarray": sent}})
        model.close()
        files = LocalStore(store)
        (record,) = [
            json.loads(line)
            for key in files.list(f"feedback/{name}/v1")
            for line in files.read(key).splitlines()
        ]
        assert record["labels"] == logged
        (prediction,) = [
            json.loads(line)
            for key in files.list(f"predictions/{name}/v1")
            for line in files.read(key).splitlines()
        ]
        assert prediction["outputs"] == response["data"]["ndarray"]


def test_a_version_whose_model_is_not_what_its_contract_fixes_is_unavailable(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    # given wine's model registered with a contract whose classes are in another order
    store = tmp_path / "store"
    shutil.copytree(stores["wine"], store)
    registry = Registry(LocalStore(store), "wine")
    contract = Contract.from_json(registry.read("v1", "contract.json"))
    swapped = contract.model_copy(update={"classes": ("class_1", "class_0", "class_2")})
    files = {n: registry.read("v1", n) for n in ("model.joblib", "lineage.json")}
    version = registry.register(
        {**files, "contract.json": swapped.to_json().encode()}, run_id="swapped", fingerprint="x"
    ).version
    # then it is not served, and says why
    with pytest.raises(ModelUnavailable, match=r"its contract fixes multiclass classification"):
        FlywheelModel(model_name="wine", model_version=version, store_uri=str(store)).load()
