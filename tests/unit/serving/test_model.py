"""The served model class, loaded from a real registry without seldon-core.

seldon-core is imported lazily, only by `predict_raw`, the bad-request paths that
raise its SeldonMicroserviceException, and `model_error_handler` (Flask); it is
not installed in this virtualenv. Those paths are covered by
tests/integration/test_serving.py, against a real seldon-core microservice.
Everything else the wrapper calls (load, scoring, metrics, tags, feedback,
health and metadata) is exercised here.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from flywheel import batches, logformat
from flywheel.config import Settings
from flywheel.contract import Contract
from flywheel.registry import Registry
from flywheel.serving.judgement import Judgement
from flywheel.serving.metrics import (
    ABS_ERROR,
    ERROR_BOUNDS,
    ERRORS,
    FEEDBACK,
    PREDICTIONS,
    ROWS,
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


def _model(settings: Settings, version: str = "v1", **parameters: Any) -> FlywheelModel:
    # The wrapper passes every parameter as a string, as the SeldonDeployment does.
    return FlywheelModel(
        model_name=settings.model_name,
        model_version=version,
        store_uri=settings.storage.uri,
        **{"log_predictions": "false", **parameters},
    )


def _logging_copy(
    settings: Settings, tmp_path: Path, **parameters: str
) -> tuple[FlywheelModel, Path]:
    """v1 served from a copy of the store (the shared one stays unchanged), logging on."""
    store = tmp_path / "store"
    shutil.copytree(settings.storage.uri, store)
    model = FlywheelModel(
        model_version="v1", store_uri=str(store), log_predictions="true", **parameters
    )
    model.load()
    return model, store


def _filed(store: Path, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """The rows of the Parquet log files below `prefix`, each a dict of column: value, with
    the key of its file."""
    files = LocalStore(store)
    return [
        (key, row)
        for key in files.list(prefix)
        if key.endswith(".parquet")
        for row in pq.read_table(io.BytesIO(files.read(key))).to_pylist()
    ]


def _logged(store: Path, prefix: str) -> list[dict[str, Any]]:
    """The rows of the Parquet log files below `prefix`."""
    return [row for _, row in _filed(store, prefix)]


@pytest.fixture(scope="module")
def served(registered: Settings) -> FlywheelModel:
    model = _model(registered)
    model.load()
    return model


@pytest.fixture(scope="module")
def rows(registered: Settings) -> list[dict[str, Any]]:
    """Three real rows of the newest batch, as a client sends them."""
    source = Path(registered.data.source)
    newest = sorted(source.iterdir())[-1]
    frame = batches.parse(newest.name, newest.read_bytes()).head(3)
    return json.loads(frame[list(registered.features.columns)].to_json(orient="records"))


def test_a_missing_version_is_unavailable(registered: Settings) -> None:
    with pytest.raises(ModelUnavailable, match=r"cannot serve loan-default v9 from .*v9"):
        _model(registered, "v9").load()


def test_a_version_is_required() -> None:
    with pytest.raises(ModelUnavailable, match="the model_version parameter is required"):
        FlywheelModel(model_version="")


def test_a_version_with_a_corrupt_model_file_is_unavailable(
    registered: Settings, tmp_path: Path
) -> None:
    # given a copy of the registry whose model file was replaced behind its back
    store = tmp_path / "store"
    shutil.copytree(registered.storage.uri, store)
    (store / "models" / "loan-default" / "versions" / "v1" / "model.joblib").write_bytes(b"x")
    # when loaded, then the server must not become ready, and says why
    with pytest.raises(ModelUnavailable, match="does not match the digest"):
        FlywheelModel(model_version="v1", store_uri=str(store)).load()


def test_nothing_is_served_before_loading(registered: Settings) -> None:
    model = _model(registered)
    with pytest.raises(ModelUnavailable, match="loan-default v1 is not loaded"):
        model.health_status()
    with pytest.raises(ModelUnavailable, match="loan-default v1 is not loaded"):
        model.score({"jsonData": []})
    assert model.tags() == {"model_name": "loan-default", "model_version": "v1", "data_hash": ""}


def test_a_loaded_version_is_healthy_and_tagged_with_its_data(
    registered: Settings, served: FlywheelModel
) -> None:
    lineage = json.loads(Registry.from_settings(registered).read("v1", "lineage.json"))
    assert served.health_status() == {"model": "loan-default", "version": "v1"}
    assert served.tags() == {
        "model_name": "loan-default",
        "model_version": "v1",
        "data_hash": lineage["data"]["content_hash"][:16],
    }
    assert len(served.tags()["data_hash"]) == 16


def test_a_json_data_request_gets_probabilities_tags_and_metrics(
    served: FlywheelModel, rows: list[dict[str, Any]]
) -> None:
    served.metrics()  # start from an empty set of pending metrics
    # when three rows are scored, with the caller's request id
    response = served.score({"jsonData": rows, "meta": {"puid": "req-1"}})
    # then each row gets the two class probabilities, named as the contract's classes
    ndarray = response["data"]["ndarray"]
    assert response["data"]["names"] == ["0", "1"]
    assert len(ndarray) == 3
    assert all(len(r) == 2 and abs(sum(r) - 1) < 1e-5 and 0 <= r[1] <= 1 for r in ndarray)
    # and the same rows in the other JSON form get the same answer
    names = list(rows[0])
    again = served.score({"data": {"names": names, "ndarray": [list(r.values()) for r in rows]}})
    assert again["data"]["ndarray"] == ndarray
    # and the response says who answered which request
    tags = response["meta"]["tags"]
    assert (tags["model_version"], tags["request_id"]) == ("v1", "req-1")
    assert again["meta"]["tags"]["request_id"] != "req-1"  # one is made up when none is given
    # and the metrics count the rows, in the buckets the gateway reads from the response
    metrics = response["meta"]["metrics"]
    assert {"type": "COUNTER", "key": ROWS, "value": 3} in metrics
    counted = {m["tags"]["bucket"]: m["value"] for m in metrics if m["key"] == SCORES}
    seen: dict[str, int] = {}
    for row in ndarray:
        seen[str(score_bucket(row[1]))] = seen.get(str(score_bucket(row[1])), 0) + 1
    assert counted == seen


def test_a_score_just_below_a_bucket_edge_is_counted_where_the_gateway_counts_it(
    registered: Settings, rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a model whose score for a row is 0.19999996: bucket 1 as computed, but
    # returned rounded to 0.2, which the gateway (it sees only the response) puts in bucket 2
    model = _model(registered)
    model.load()
    assert model.predictor is not None
    monkeypatch.setattr(
        model.predictor, "predict_rows", lambda rows: np.array([[0.80000004, 0.19999996]])
    )
    model.metrics()
    # when it answers
    response = model.score({"jsonData": rows[:1]})
    # then its score counter names the bucket of what it returned
    returned = response["data"]["ndarray"][0][1]
    counted = [m["tags"]["bucket"] for m in response["meta"]["metrics"] if m["key"] == SCORES]
    assert counted == [str(score_bucket(returned))] == ["2"]


def test_metrics_are_sent_once_and_gauges_at_most_each_second(
    registered: Settings, rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a freshly loaded model, on a monotonic clock the test moves (a busy machine
    # can take a second between two requests)
    model = _model(registered)
    model.load()
    now = [1000.0]
    clock = SimpleNamespace(monotonic=lambda: now[0], perf_counter=time.perf_counter)
    monkeypatch.setattr("flywheel.serving.model.time", clock)
    # when it answers twice within the same second
    first = model.score({"jsonData": rows[:1]})["meta"]["metrics"]
    now[0] += 0.999
    second = model.score({"jsonData": rows[:2]})["meta"]["metrics"]
    # then each response carries its own counters, and only the first the running gauges
    assert {"type": "COUNTER", "key": ROWS, "value": 1} in first
    assert {"type": "GAUGE", "key": "flywheel_bad_requests", "value": 0} in first
    assert {"type": "COUNTER", "key": ROWS, "value": 2} in second
    assert [m for m in second if m["type"] == "GAUGE"] == []
    assert model.metrics() == []  # nothing left pending
    # and a second after the first, the gauges come again
    now[0] += 0.001
    assert [m["key"] for m in model.metrics() if m["type"] == "GAUGE"] == ["flywheel_bad_requests"]


def test_a_request_the_contract_refuses_is_a_bad_request(
    served: FlywheelModel, rows: list[dict[str, Any]]
) -> None:
    with pytest.raises(BadRequest, match="feature region has unknown category 'mars'"):
        served.score({"jsonData": [{**rows[0], "region": "mars"}]})


def test_max_rows_comes_from_the_parameters(
    registered: Settings, rows: list[dict[str, Any]]
) -> None:
    model = _model(registered, max_rows="2")
    model.load()
    with pytest.raises(BadRequest, match="holds 3 rows; at most 2"):
        model.score({"jsonData": rows})


def test_the_logs_byte_bound_comes_from_the_parameters(
    registered: Settings, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    # given a model whose logs may hold 600 bytes and write every hour, as SeldonDeployment
    # parameters say
    model, _ = _logging_copy(registered, tmp_path, log_max_bytes="600", log_flush_seconds="3600")
    assert model.logger is not None and model.feedback_log is not None
    assert model.logger.flush_seconds == model.feedback_log.flush_seconds == 3600
    # when three requests come before the writer wakes (each record is over 200 bytes)
    for _ in range(3):
        model.score({"jsonData": rows[:1]})
    # then both logs have that bound, and the prediction log dropped what did not fit
    assert model.logger.max_bytes == model.feedback_log.max_bytes == 600
    assert model.logger.held_bytes <= 600 and model.logger.dropped >= 1
    model.close()


def test_the_logged_share_comes_from_the_parameters_and_feedback_follows_it(
    registered: Settings, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    # given a model logging a third of requests, as a SeldonDeployment parameter says
    model, store = _logging_copy(registered, tmp_path, log_sample="0.33")
    assert model.logger is not None and model.feedback_log is not None
    # when 60 requests are answered, and each one's label comes back
    for i in range(60):
        request = {"jsonData": rows[:1], "meta": {"puid": f"sampled-{i}"}}
        response = model.score(request)
        model.judge_feedback(request, response, {"data": {"ndarray": [1]}})
    model._gauges_at = 0.0  # the running gauges come at most once a second: now
    gauges = {m["key"]: m["value"] for m in model.metrics() if m["type"] == "GAUGE"}
    model.close()
    # then the requests logged are those whose key is in the share, and their labels with them
    chosen = {
        f"sampled-{i}"
        for i in range(60)
        if logformat.sampled(logformat.request_key(f"sampled-{i}"), 0.33)
    }
    for prefix in ("predictions", "feedback"):
        logged = {r["_request_id"] for r in _logged(store, f"{prefix}/loan-default/v1")}
        assert {i for i in logged if i.startswith("sampled-")} == chosen
    # and those left out are counted apart from what was dropped, in the metrics and status
    assert 0 < len(chosen) < 60
    assert model.logger.sampled_out == 60 - len(chosen) and model.logger.dropped == 0
    assert gauges["flywheel_log_sampled_out"] == 60 - len(chosen)
    assert model.health_status()["log_sampled_out"] == 60 - len(chosen)


def test_feedback_judges_this_versions_answers(
    registered: Settings, rows: list[dict[str, Any]]
) -> None:
    # given the model's own answers for two rows
    model = _model(registered)
    model.load()
    request = {"jsonData": rows[:2]}
    response = model.score(request)
    predicted = [int(r[1] >= 0.5) for r in response["data"]["ndarray"]]
    # when the truth agrees on the first row and not on the second
    truth = {"data": {"ndarray": [predicted[0], 1 - predicted[1]]}}
    # then one is right and one wrong, whether the response is sent back or not
    assert model.judge_feedback(request, response, truth) == Judgement(1, 1)
    assert model.judge_feedback(request, {}, truth) == Judgement(1, 1)
    # and one-hot labels ([P(0), P(1)] per row) say the same
    one_hot = {"data": {"ndarray": [[1 - p, p] for p in (predicted[0], 1 - predicted[1])]}}
    assert model.judge_feedback(request, response, one_hot) == Judgement(1, 1)


def test_feedback_on_another_versions_answer_scores_the_request_again(
    registered: Settings, rows: list[dict[str, Any]]
) -> None:
    model = _model(registered)
    model.load()
    request = {"jsonData": rows[:1]}
    (own,) = model.score(request)["data"]["ndarray"]
    label = int(own[1] >= 0.5)
    # given a response that claims the opposite answer
    opposite = [[1.0, 0.0]] if label else [[0.0, 1.0]]
    truth = {"data": {"ndarray": [label]}}
    # then it counts as this version's own answer only when it names this version
    mine = {"data": {"ndarray": opposite}, "meta": {"tags": {"model_version": "v1"}}}
    theirs = {"data": {"ndarray": opposite}, "meta": {"tags": {"model_version": "v7"}}}
    assert model.judge_feedback(request, mine, truth) == Judgement(0, 1)
    assert model.judge_feedback(request, theirs, truth) == Judgement(1, 0)


@pytest.mark.parametrize(
    ("truth", "message"),
    [
        ({}, 'feedback needs the true labels as "truth"'),
        (
            {"data": {"ndarray": [2]}},
            r"a true label must be a class of 'defaulted': 0, 1 \(or its index, 0 or 1\); got 2",
        ),
        ({"data": {"ndarray": [1, 0, 1]}}, "3 true labels for 1 predicted rows"),
    ],
)
def test_feedback_without_usable_labels_is_a_bad_request(
    served: FlywheelModel, rows: list[dict[str, Any]], truth: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        served.judge_feedback({"jsonData": rows[:1]}, {}, truth)


def test_metadata_comes_from_the_contract_and_lineage(
    registered: Settings, served: FlywheelModel
) -> None:
    contract = Contract.from_json(Registry.from_settings(registered).read("v1", "contract.json"))
    metadata = served.init_metadata()
    assert (metadata["name"], metadata["versions"]) == ("loan-default", ["v1"])
    ndarray, json_data = metadata["inputs"]
    assert ndarray["schema"]["names"] == list(contract.features)
    assert json_data["schema"]["properties"]["region"]["enum"] == [
        *sorted(contract.categorical["region"].fractions),
        None,
    ]
    # conftest's `registered` ran the pipeline with git commit abc123 as run r1
    assert metadata["custom"]["git_commit"] == "abc123"
    assert metadata["custom"]["pipeline_run_id"] == "r1"
    with pytest.raises(ModelUnavailable, match="cannot serve loan-default v9"):
        _model(registered, "v9").init_metadata()


def test_a_version_with_a_compiled_scorer_is_served_through_it_with_scikit_learns_answers(
    registered: Settings, served: FlywheelModel, rows: list[dict[str, Any]]
) -> None:
    from flywheel.predictor import Predictor, load_model
    from flywheel.registry import MODEL_FILE

    # given v1, registered by the pipeline with the scorer infra-validate checked
    registry = Registry.from_settings(registered)
    reference = Predictor(
        load_model(registry.read("v1", MODEL_FILE)),
        registered.features.numeric,
        registered.features.categorical,
    )
    # when the served model scores real rows
    answer = served.score({"jsonData": rows})
    # then it scores through the compiled scorer, says so, and answers as scikit-learn does
    assert served.scorer == "compiled" and served.init_metadata()["custom"]["scorer"] == "compiled"
    assert served.schema is not None and served.predictor is not None
    checked = served.schema.checked({"jsonData": rows})
    expected = reference.predict_rows(checked)
    assert np.abs(served.predictor.predict_rows(checked) - expected).max() <= 1e-9
    # (answers carry six decimals)
    assert np.abs(np.asarray(answer["data"]["ndarray"]) - expected).max() <= 5e-7


def test_requests_and_responses_are_logged_to_the_store(
    registered: Settings, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    # given a copy of the registry (the shared one stays unchanged) and logging on
    model, store = _logging_copy(registered, tmp_path)
    assert model.logger is not None
    # when a request is scored
    response = model.score({"jsonData": rows[:1], "meta": {"puid": "logged-1"}})
    deadline = time.monotonic() + 10
    while model.logger.logged < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    model.logger.close()
    # then the store holds it (beside whatever other tests logged into the shared
    # store before the copy), each feature in its typed column and the outputs returned
    (record,) = [
        r for r in _logged(store, "predictions/loan-default/v1") if r["_request_id"] == "logged-1"
    ]
    (answer,) = response["data"]["ndarray"]
    assert [record[f"out.{i}"] for i in range(len(answer))] == answer
    assert model.schema is not None
    assert {n for n in record if n.startswith("in.")} == {f"in.{n}" for n in model.schema.names}
    assert record["in.region"] == rows[0]["region"]
    assert record["in.income"] == float(rows[0]["income"])


def test_feedback_labels_are_logged_under_the_request_they_answer(
    registered: Settings, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    # given a model logging to a copy of the registry
    model, store = _logging_copy(registered, tmp_path)
    assert model.feedback_log is not None
    request = {"jsonData": rows[:1], "meta": {"puid": "labelled-1"}}
    response = model.score(request)
    # when its true label comes back as Seldon feedback
    model.judge_feedback(request, response, {"data": {"ndarray": [1]}})
    model.feedback_log.close()
    # then the feedback log holds it, joinable to the prediction by its request id
    (record,) = [
        r
        for r in _logged(store, "feedback/loan-default/v1")
        if r["_request_id"] == "labelled-1"  # others logged into the shared store
    ]
    assert (record["_row"], record["_label_number"]) == (0, 1.0)


def test_a_replay_stamps_the_logs_with_the_time_its_messages_were_sent(
    registered: Settings, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    # given a model replaying traffic (stamp_from_request, as the wrapper passes it) on a copy
    model, store = _logging_copy(registered, tmp_path, stamp_from_request="true")
    sent, labelled = 1_700_000_000.5, 1_700_086_399.0  # 2023-11-14 and the end of the next day
    # when a request and then its feedback come, each tagged with when it was sent
    request = {"jsonData": rows[:1], "meta": {"puid": "replayed-1", "tags": {"sent_at": sent}}}
    response = model.score(request)
    truth = {"data": {"ndarray": [1]}, "meta": {"tags": {"sent_at": labelled}}}
    model.judge_feedback(request, response, truth)
    # then both are in the store as soon as they are answered (no flush, no close), stamped
    # and filed at the time they were sent, not now
    found = {
        prefix: [
            (key, row)
            for key, row in _filed(store, f"{prefix}/loan-default/v1")
            if row["_request_id"] == "replayed-1"
        ]
        for prefix in ("predictions", "feedback")
    }
    ((prediction_key, prediction),) = found["predictions"]
    ((feedback_key, feedback),) = found["feedback"]
    assert prediction["_time"] == sent and "/2023-11-14/" in prediction_key
    assert feedback["_time"] == labelled and "/2023-11-15/" in feedback_key


def test_a_replay_refuses_a_message_without_its_sent_at_tag(
    registered: Settings, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    # given a model replaying traffic, logging to a copy of the registry
    model, store = _logging_copy(registered, tmp_path, stamp_from_request="true")
    request = {"jsonData": rows[:1], "meta": {"puid": "unstamped-1"}}
    # when a request, or a feedback's truth, comes without the tag
    # then it is a bad request (a Seldon 400) naming the tag, and nothing is logged
    with pytest.raises(BadRequest, match=r"a request needs meta\.tags\.sent_at"):
        model.score(request)
    stamped = {**request, "meta": {"puid": "unstamped-1", "tags": {"sent_at": 1.7e9}}}
    response = model.score(stamped)
    with pytest.raises(BadRequest, match=r"the feedback's truth needs meta\.tags\.sent_at"):
        model.judge_feedback(stamped, response, {"data": {"ndarray": [1]}})
    requests = [
        row["_time"]
        for row in _logged(store, "predictions/loan-default/v1")
        if row["_request_id"] == "unstamped-1"
    ]
    assert requests == [1.7e9]
    labelled = [
        row
        for row in _logged(store, "feedback/loan-default/v1")
        if row["_request_id"] == "unstamped-1"
    ]
    assert labelled == []


def _switching_between_every_bytecode(*functions: Any) -> Any:
    """A thread trace function that yields the GIL before every bytecode of `functions`:
    CPython switches threads only at a few instructions, so a read-modify-write such as
    `self._pending += metrics` is almost never interrupted unless made to be."""
    codes = {f.__code__ for f in functions}

    def step(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            time.sleep(0)
        return step

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code not in codes:
            return None
        frame.f_trace_opcodes = True
        return step

    return trace


def test_metrics_from_many_threads_are_each_sent_exactly_once(
    registered: Settings, rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a model that scores instantly, its threads switching between any two
    # bytecodes of scoring and of taking the metrics (without the lock, rows are
    # counted twice: a request adds to the list metrics() has just taken and put back)
    model = _model(registered)
    model.load()
    assert model.predictor is not None
    monkeypatch.setattr(model.predictor, "predict_rows", lambda rows: np.array([[0.7, 0.3]]))
    model.metrics()
    collected: list[dict[str, Any]] = []
    done = threading.Event()

    def scrape() -> None:  # what seldon-core's threads do with each response's metrics
        while not done.is_set():
            collected.extend(model.metrics())
        collected.extend(model.metrics())

    def serve() -> None:
        for _ in range(50):
            collected.extend(model.score({"jsonData": rows[:1]})["meta"]["metrics"])

    # when four threads answer 50 requests each while another takes the metrics
    threading.settrace(
        _switching_between_every_bytecode(FlywheelModel.score, FlywheelModel.metrics)
    )
    try:
        threads = [
            threading.Thread(target=scrape),
            *(threading.Thread(target=serve) for _ in range(4)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads[1:]:
            thread.join()
        done.set()
        threads[0].join()
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    # then every row was counted once: none lost, none sent twice
    assert sum(m["value"] for m in collected if m["key"] == ROWS) == 200


def test_closing_the_model_writes_its_buffered_logs(
    registered: Settings, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    # given a model logging to a copy of the registry, its writer not yet awake
    model, store = _logging_copy(registered, tmp_path)
    assert model.logger is not None
    model.logger.flush_seconds = 3600
    model.score({"jsonData": rows[:1], "meta": {"puid": "at-shutdown"}})
    # when it is closed, as its serving process exits
    model.close()
    # then the request is in the store
    ids = [r["_request_id"] for r in _logged(store, "predictions/loan-default/v1")]
    assert "at-shutdown" in ids


def test_feedback_on_another_predictors_answer_of_the_same_version_scores_it_again(
    registered: Settings, rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given v1 served in slot b (a canary of the serving pod runs v1 in a and b)
    monkeypatch.setenv("PREDICTOR_ID", "b")
    model = _model(registered)
    model.load()
    request = {"jsonData": rows[:1]}
    answer = model.score(request)
    (own,) = answer["data"]["ndarray"]
    label = int(own[1] >= 0.5)
    # then its answers name the slot they came from
    assert answer["meta"]["tags"]["predictor"] == "b"
    # and a label on an opposite answer counts as its own only when slot b gave it
    opposite = [[1.0, 0.0]] if label else [[0.0, 1.0]]
    truth = {"data": {"ndarray": [label]}}
    tags = {"model_version": "v1"}
    mine = {"data": {"ndarray": opposite}, "meta": {"tags": {**tags, "predictor": "b"}}}
    theirs = {"data": {"ndarray": opposite}, "meta": {"tags": {**tags, "predictor": "a"}}}
    assert model.judge_feedback(request, mine, truth) == Judgement(0, 1)
    assert model.judge_feedback(request, theirs, truth) == Judgement(1, 0)


# Per task: The served model of each task beyond binary, trained on scikit-learn's datasets through

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
        (record,) = _logged(store, f"feedback/{name}/v1")
        assert [record["_label_text"] or record["_label_number"]] == logged
        (prediction,) = _logged(store, f"predictions/{name}/v1")
        (answer,) = response["data"]["ndarray"]
        assert [prediction[f"out.{i}"] for i in range(len(answer))] == answer


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
