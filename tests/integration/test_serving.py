"""Real seldon-core microservices on loopback: REST, gRPC, SeldonClient, bad input and faults."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from flywheel.config import Settings
from flywheel.storage import LocalStore
from harness.clients import NAMES, ROW
from harness.servers import SERVING_VENV, SeldonServer, seldon_microservice, wait_until

pytestmark = pytest.mark.integration


def params(settings: Settings, version: str = "v1", **extra: str) -> dict[str, str]:
    return {
        "model_name": settings.model_name,
        "model_version": version,
        "store_uri": settings.storage.uri,
        **extra,
    }


def post(server: SeldonServer, body: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{server.http}/api/v1.0/predictions",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def served(registered: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The session's project on a store of this module's own: the server logs its requests there,
    and later tests on the same worker copy the session's store expecting no prediction log."""
    store = tmp_path_factory.mktemp("served") / "store"
    shutil.copytree(registered.storage.uri, store)
    return registered.model_copy(
        update={"storage": registered.storage.model_copy(update={"uri": str(store)})}
    )


@pytest.fixture(scope="module")
def server(served: Settings) -> Iterator[SeldonServer]:
    # Its logs are written every half second, not every minute: a test reads them back.
    parameters = params(served, max_rows="100", max_body_bytes="20000", log_flush_seconds="0.5")
    with seldon_microservice(parameters) as s:
        yield s


def test_rest_returns_probabilities_with_model_tags(server: SeldonServer) -> None:
    status, body = post(
        server, {"data": {"names": NAMES, "ndarray": [ROW, ROW]}, "meta": {"puid": "req-1"}}
    )
    assert status == 200
    assert body["data"]["names"] == ["0", "1"]
    for p0, p1 in body["data"]["ndarray"]:
        assert p0 + p1 == pytest.approx(1.0, abs=1e-5)
    tags = body["meta"]["tags"]
    assert (tags["model_name"], tags["model_version"], tags["request_id"]) == (
        "loan-default",
        "v1",
        "req-1",
    )
    assert "metrics" not in body["meta"]
    status, records = post(server, {"jsonData": [dict(zip(NAMES, ROW, strict=True))]})
    assert status == 200 and records["data"]["ndarray"][0] == body["data"]["ndarray"][0]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"data": {"names": [', 400, "Can't find JSON in data"),
        (
            {"data": {"names": NAMES[:-1], "ndarray": [ROW[:-1]]}},
            400,
            "missing feature(s) employment",
        ),
        (
            {"data": {"names": NAMES, "ndarray": [ROW[:-1]]}},
            400,
            "row 0 has 8 values; the model takes 9",
        ),
        (
            {"data": {"names": NAMES, "ndarray": [["lots", *ROW[1:]]]}},
            400,
            "feature income must be a number",
        ),
        (
            b'{"data": {"names": %s, "ndarray": [[NaN, 40, 1, 1, 1, 1, "north", "web", "salaried"]]}}'
            % json.dumps(NAMES).encode(),
            400,
            "feature income must be finite, got nan",
        ),
        (
            b'{"data": {"names": %s, "ndarray": [[1, Infinity, 1, 1, 1, 1, "north", "web", "salaried"]]}}'
            % json.dumps(NAMES).encode(),
            400,
            "feature age must be finite, got inf",
        ),
        (
            {"data": {"names": NAMES, "ndarray": [[*ROW[:7], "carrier-pigeon", ROW[8]]]}},
            400,
            "feature channel has unknown category 'carrier-pigeon'",
        ),
        ({"data": {"names": NAMES, "ndarray": []}}, 400, "the request holds no rows"),
        ({"data": {"names": NAMES, "ndarray": [ROW] * 101}}, 400, "holds 101 rows; at most 100"),
        (
            {"data": {"names": NAMES, "ndarray": [ROW] * 100}, "pad": "x" * 30000},
            413,
            "at most 20000 are allowed",
        ),
    ],
)
def test_bad_requests_get_a_seldon_4xx_naming_the_problem_and_serving_goes_on(
    server: SeldonServer, body: Any, status: int, message: str
) -> None:
    got, answer = post(server, body)
    assert got == status
    assert answer["status"]["reason"] == "MICROSERVICE_BAD_DATA"
    assert message in answer["status"]["info"]
    assert post(server, {"data": {"names": NAMES, "ndarray": [ROW]}})[0] == 200


def test_metadata_describes_inputs_outputs_and_lineage(server: SeldonServer) -> None:
    with urllib.request.urlopen(f"http://{server.http}/metadata", timeout=5) as response:
        metadata = json.loads(response.read())
    assert metadata["versions"] == ["v1"]
    assert metadata["inputs"][0]["schema"]["names"] == NAMES
    assert metadata["outputs"][0]["schema"]["names"] == ["0", "1"]
    assert (
        metadata["custom"]["git_commit"] == "abc123" and len(metadata["custom"]["data_hash"]) == 64
    )


def test_custom_metrics_reach_prometheus(server: SeldonServer) -> None:
    post(server, {"data": {"names": NAMES, "ndarray": [ROW] * 3}})
    with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "flywheel_rows_total" in text and 'flywheel_scores_total{bucket="' in text
    assert "flywheel_bad_requests" in text and "flywheel_predict_ms_bucket" in text


SELDON_CLIENT = r"""
import json, sys
from seldon_core.seldon_client import SeldonClient
from seldon_core.utils import seldon_message_to_json
import numpy as np
def as_json(message):
    return seldon_message_to_json(message) if message is not None and hasattr(message, "ListFields") else message
transport, endpoint, names, row, bad = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
client = SeldonClient(gateway="seldon", transport=transport, microservice_endpoint=endpoint)
out = {}
good = client.microservice(method="predict", data=np.array([row], dtype=object), names=names, payload_type="ndarray")
out["good"] = {"success": good.success, "response": as_json(good.response), "msg": good.msg}
wrong = client.microservice(method="predict", data=np.array([bad], dtype=object), names=names, payload_type="ndarray")
out["bad"] = {"success": wrong.success, "response": as_json(wrong.response), "msg": wrong.msg}
print(json.dumps(out, default=str))
"""


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_seldons_own_client_over_rest_and_grpc(server: SeldonServer, transport: str) -> None:
    endpoint = server.http if transport == "rest" else server.grpc
    bad = [*ROW[:6], "mars", *ROW[7:]]
    result = subprocess.run(
        [
            str(SERVING_VENV / "bin" / "python"),
            "-c",
            SELDON_CLIENT,
            transport,
            endpoint,
            json.dumps(NAMES),
            json.dumps(ROW),
            json.dumps(bad),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["good"]["success"], out
    good = out["good"]["response"]
    assert good["data"]["names"] == ["0", "1"]
    assert good["meta"]["tags"]["model_version"] == "v1"
    if transport == "grpc":
        status = out["bad"]["response"]["status"]
        assert status["code"] == 400 and "unknown category 'mars'" in status["info"]
    else:
        assert not out["bad"]["success"]
        assert "unknown category 'mars'" in json.dumps(out["bad"])


FEEDBACK_CLIENT = r"""
import json, sys, grpc
from seldon_core.proto import prediction_pb2_grpc
from seldon_core.utils import json_to_feedback, seldon_message_to_json
endpoint, body = sys.argv[1], json.loads(sys.argv[2])
with grpc.insecure_channel(endpoint) as channel:
    try:
        answer = prediction_pb2_grpc.ModelStub(channel).SendFeedback(json_to_feedback(body))
        print(json.dumps({"code": 200, "answer": seldon_message_to_json(answer)}))
    except grpc.RpcError as error:
        print(json.dumps({"code": str(error.code()), "answer": error.details()}))
"""


def send_feedback(server: SeldonServer, transport: str, body: dict[str, Any]) -> tuple[Any, Any]:
    """Seldon feedback to the microservice itself, as Seldon's executor sends it."""
    if transport == "rest":
        request = urllib.request.Request(
            f"http://{server.http}/api/v1.0/feedback",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
    result = subprocess.run(
        [
            str(SERVING_VENV / "bin" / "python"),
            "-c",
            FEEDBACK_CLIENT,
            server.grpc,
            json.dumps(body),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    return out["code"], out["answer"]


def feedback_counts(server: SeldonServer) -> dict[str, float]:
    """The model's FEEDBACK counter by its `correct` label, as Prometheus scrapes it."""
    with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {"true": 0.0, "false": 0.0}
    for line in text.splitlines():
        if line.startswith("flywheel_feedback_total{"):
            labels, value = line.rsplit(" ", 1)
            for correct in counts:
                if f'correct="{correct}"' in labels:
                    counts[correct] += float(value)
    return counts


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_send_feedback_counts_right_and_wrong_answers(server: SeldonServer, transport: str) -> None:
    # given a prediction for a row of numbers and strings, and another as jsonData
    ndarray = {"data": {"names": NAMES, "ndarray": [ROW]}}
    status, answer = post(server, ndarray)
    assert status == 200
    label = int(answer["data"]["ndarray"][0][1] >= 0.5)
    records = {"jsonData": [dict(zip(NAMES, ROW, strict=True))]}
    before = feedback_counts(server)
    # when the true label comes back for the first with its response (right), and a
    # label the model got wrong for the second with no response (it scores it again)
    right = {
        "request": ndarray,
        "response": answer,
        "truth": {"data": {"ndarray": [label]}},
        "reward": 1.0,
    }
    wrong = {"request": records, "truth": {"data": {"ndarray": [[label, 1 - label]]}}}
    for body in (right, wrong):
        code, reply = send_feedback(server, transport, body)
        assert code == 200, reply
        assert reply["meta"]["tags"]["model_version"] == "v1"
    # then the model's own counter, as Prometheus reads it, has one of each
    after = feedback_counts(server)
    assert (after["true"] - before["true"], after["false"] - before["false"]) == (1, 1)
    # and feedback without a usable label is refused, naming the problem, counting nothing
    code, reply = send_feedback(server, transport, {**right, "truth": {"data": {"ndarray": [2]}}})
    assert code != 200 and "a true label must be a class of 'defaulted'" in json.dumps(reply)
    assert "got 2" in json.dumps(reply)
    assert feedback_counts(server) == after


def test_requests_and_responses_are_logged_to_the_store(
    served: Settings, server: SeldonServer
) -> None:
    post(server, {"data": {"names": NAMES, "ndarray": [ROW]}, "meta": {"puid": "trace-me"}})
    store = LocalStore(served.storage.uri)
    deadline, found = time.monotonic() + 15, []
    while time.monotonic() < deadline and not found:
        for key in store.list("predictions/loan-default/v1"):
            table = pq.read_table(io.BytesIO(store.read(key)))
            found += [
                (key, table.schema.metadata, r)
                for r in table.to_pylist()
                if r["_request_id"] == "trace-me"
            ]
        time.sleep(0.3)
    ((key, metadata, record),) = found
    assert key.endswith(".parquet") and metadata[b"version"] == b"v1"
    assert record["in.region"] == "north"
    assert {"out.0", "out.1"} <= set(record) and record["_latency_ms"] > 0


@pytest.mark.parametrize(
    ("version", "damage", "message"),
    [
        ("v9", None, "loan-default has no version v9"),
        ("v1", "model.joblib", "does not match the digest"),
    ],
)
def test_a_missing_or_corrupt_version_never_becomes_ready(
    registered: Settings, tmp_path: Path, version: str, damage: str | None, message: str
) -> None:
    store = tmp_path / "store"
    shutil.copytree(registered.storage.uri, store)
    if damage:
        (store / "models/loan-default/versions/v1" / damage).write_bytes(b"corrupt")
    settings = registered.model_copy(
        update={"storage": registered.storage.model_copy(update={"uri": str(store)})}
    )
    with (
        pytest.raises(RuntimeError, match="exited with code") as error,
        seldon_microservice(params(settings, version), ready_timeout=60),
    ):
        pass
    assert message in str(error.value)


def test_serving_goes_on_when_the_store_is_down_and_drops_are_counted(
    registered: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.config import StorageSettings
    from flywheel.storage import S3Store, open_store
    from harness.servers import seaweedfs, stop

    with seaweedfs() as s3:
        # given a model served from an S3 store of its own
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
        target = open_store(
            "s3://serving/flywheel", StorageSettings(endpoint=s3.endpoint, secure=False)
        )
        assert isinstance(target, S3Store)
        target.ensure_bucket()
        local = LocalStore(registered.storage.uri)
        for key in local.list("models"):
            target.write(key, local.read(key))
        parameters = params(
            registered,
            store_uri="s3://serving/flywheel",
            store_endpoint=s3.endpoint,
            store_secure="false",
            log_flush_seconds="0.5",
        )
        with seldon_microservice(parameters) as server:
            assert post(server, {"data": {"names": NAMES, "ndarray": [ROW]}})[0] == 200
            # when the S3 server goes away
            stop(s3.process)
            # then every request is still answered, and the log counts what it dropped
            statuses = [
                post(server, {"data": {"names": NAMES, "ndarray": [ROW]}})[0] for _ in range(20)
            ]
            assert statuses == [200] * 20
            deadline, dropped = time.monotonic() + 30, 0.0
            while time.monotonic() < deadline and dropped == 0:
                time.sleep(1)
                post(server, {"data": {"names": NAMES, "ndarray": [ROW]}})
                with urllib.request.urlopen(
                    f"http://{server.metrics}/metrics", timeout=5
                ) as response:
                    for line in response.read().decode().splitlines():
                        if line.startswith("flywheel_log_dropped{"):
                            dropped = max(dropped, float(line.rsplit(" ", 1)[1]))
            assert dropped > 0


# --- any task: a multiclass and a regression model, each in its own microservice -----------


def model_counters(server: SeldonServer, name: str) -> dict[str, float]:
    """One of the model's counters by its own labels (correct, class, bucket), summed over
    the rest, as Prometheus scrapes it."""
    with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            labels, value = line.rsplit(" ", 1)
            kept = ",".join(
                part
                for part in labels.partition("{")[2].rstrip("}").split(",")
                if part.startswith(("correct=", "class=", "bucket="))
            )
            found[kept] = found.get(kept, 0.0) + float(value)
    return found


@pytest.fixture(scope="module")
def task_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SeldonServer]]:
    """wine's (multiclass) and diabetes' (regression) models, trained through
    flywheel.training.train and each served by a real microservice."""
    from contextlib import ExitStack

    from harness.problems import register

    root = tmp_path_factory.mktemp("tasks")
    with ExitStack() as stack:
        servers = {}
        for name in ("wine", "diabetes"):
            store = root / name
            register(name, store)
            parameters = {"model_name": name, "model_version": "v1", "store_uri": str(store)}
            servers[name] = stack.enter_context(seldon_microservice(parameters))
        yield servers


def _task_answer(
    server: SeldonServer, name: str, n: int
) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """The labels of the dataset's first rows (wine: one of each class), the server's
    answer to them (a 200), and the feedback that sends the labels back."""
    from harness.problems import dataset_frame

    frame = dataset_frame(name)  # type: ignore[arg-type]
    frame = frame.iloc[[0, 70, 150][:n]] if name == "wine" else frame.head(n)
    columns = [c for c in frame.columns if c not in ("label", "event_time")]
    rows = json.loads(frame[columns].to_json(orient="records"))
    status, answer = post(server, {"jsonData": rows})
    assert status == 200, answer
    labels = frame["label"].tolist()
    truth = {"data": {"ndarray": labels}}
    return labels, answer, {"request": {"jsonData": rows}, "response": answer, "truth": truth}


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_multiclass_model_answers_each_class_and_judges_feedback_by_class_name(
    task_servers: dict[str, SeldonServer], transport: str
) -> None:
    server = task_servers["wine"]
    # when one row of each class is scored
    labels, answer, body = _task_answer(server, "wine", 3)
    # then each gets a probability per class, named as the contract's classes
    assert answer["data"]["names"] == ["class_0", "class_1", "class_2"]
    assert all(
        len(r) == 3 and sum(r) == pytest.approx(1.0, abs=1e-5) for r in answer["data"]["ndarray"]
    )
    # and the scores are counted per class at /metrics
    scores = model_counters(server, "flywheel_scores_total")
    for name in ("class_0", "class_1", "class_2"):
        assert sum(v for k, v in scores.items() if f'class="{name}"' in k) >= 3
    # when the true classes come back by name, the right answers are counted
    before = model_counters(server, "flywheel_feedback_total")
    code, reply = send_feedback(server, transport, body)
    assert code == 200, reply
    after = model_counters(server, "flywheel_feedback_total")
    assert after.get('correct="true"', 0) - before.get('correct="true"', 0) == 3
    # and a class the model never saw is refused, naming it, counting nothing
    unseen = {**body, "truth": {"data": {"ndarray": ["class_9", *labels[1:]]}}}
    code, reply = send_feedback(server, transport, unseen)
    assert code != 200 and "'class_9'" in json.dumps(reply)
    assert "a true label must be a class of 'label'" in json.dumps(reply)
    assert model_counters(server, "flywheel_feedback_total") == after


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_regression_answers_its_predicted_value_and_counts_errors_from_feedback(
    task_servers: dict[str, SeldonServer], transport: str
) -> None:
    server = task_servers["diabetes"]
    labels, answer, body = _task_answer(server, "diabetes", 2)
    # then each row gets one predicted value, named as the label, counted in a label bin
    assert answer["data"]["names"] == ["label"]
    values = [row[0] for row in answer["data"]["ndarray"]]
    assert len(values) == 2 and all(25 <= v <= 350 for v in values)
    assert sum(model_counters(server, "flywheel_predictions_total").values()) >= 2
    # when the true values come back, their errors are counted in the histogram with their sums
    before = sum(model_counters(server, "flywheel_feedback_abs_error_total").values())
    counted = sum(model_counters(server, "flywheel_feedback_errors_total").values())
    code, reply = send_feedback(server, transport, body)
    assert code == 200, reply
    added = sum(model_counters(server, "flywheel_feedback_abs_error_total").values()) - before
    assert added == pytest.approx(sum(abs(v - y) for v, y in zip(values, labels, strict=True)))
    assert sum(model_counters(server, "flywheel_feedback_errors_total").values()) == counted + 2
    # and a label that is not a number is refused, naming it, counting nothing
    text = {**body, "truth": {"data": {"ndarray": ["high", labels[1]]}}}
    code, reply = send_feedback(server, transport, text)
    assert code != 200 and "is a finite number, got 'high'" in json.dumps(reply)
    assert sum(model_counters(server, "flywheel_feedback_errors_total").values()) == counted + 2


def test_each_tasks_metadata_names_its_outputs(task_servers: dict[str, SeldonServer]) -> None:
    for name, names in (("wine", ["class_0", "class_1", "class_2"]), ("diabetes", ["label"])):
        url = f"http://{task_servers[name].http}/metadata"
        with urllib.request.urlopen(url, timeout=10) as response:
            metadata = json.loads(response.read())
        assert metadata["outputs"][0]["schema"] == {"names": names, "shape": [len(names)]}


# --- readiness: every gunicorn worker loads the model itself -----------------------------


def _health(server: SeldonServer) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{server.http}/health/status", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_server_is_ready_only_once_every_worker_has_loaded(
    served: Settings, tmp_path: Path
) -> None:
    parameters = params(served, log_predictions="false")
    # The marks go in the server's own temporary directory (as in a container's /tmp).
    env = {"TMPDIR": str(tmp_path)}
    # A server told it runs three workers while gunicorn starts two: once both have
    # loaded, its health check still fails, saying why.
    three = {**env, "GUNICORN_WORKERS": "3"}
    with seldon_microservice(parameters, workers=2, env=three, wait=False) as server:
        wait_until(
            lambda: "2 of 3 workers have loaded" in _health(server)[1],
            60,
            "two workers loaded",
            server.process,
            server.log,
        )
        assert _health(server)[0] >= 500
        # while a loaded worker still answers requests and takes labels
        status, answer = post(server, {"jsonData": [dict(zip(NAMES, ROW, strict=True))]})
        assert status == 200, answer
    # Told two, it is ready, with both workers' marks under its arbiter (the main
    # process, which serves REST), each removed when its worker exits.
    two = {**env, "GUNICORN_WORKERS": "2"}
    with seldon_microservice(parameters, workers=2, env=two) as server:
        assert len(list(tmp_path.glob(f"flywheel-loaded-{server.process.pid}-*"))) == 2
    assert not list(tmp_path.glob(f"flywheel-loaded-{server.process.pid}-*"))
