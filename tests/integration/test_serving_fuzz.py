"""Malformed requests by the thousand against one real seldon-core microservice, over REST and gRPC.

Hypothesis draws the requests (derandomized: the same ones on every run, so CI is
reproducible) from a good one: truncated, cut with invalid UTF-8, with NaN,
infinity, 1e308 and huge integers, wrong types, nested arrays, missing, unknown and
repeated features, 0 and 1,001 rows. Every answer must be a 200 with one pair of
probabilities per row, or a 400 whose message names the problem; nothing may be a
5xx or kill a worker, and a good request gets the same answer at the end as at the
start. gRPC requests go through a client process in the serving virtualenv (only it
has seldon-core's protos), one message per line on a pipe.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flywheel.config import Settings
from harness.clients import GOOD, NAMES, ROW, Grpc, Rest
from harness.servers import SeldonServer, seldon_microservice

pytestmark = pytest.mark.integration

RECORD = dict(zip(NAMES, ROW, strict=True))

# Sized for the suite's budget on a busy 2-core machine (the file in under 30 s).
settings.register_profile(
    "serving-fuzz",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("serving-fuzz")


@pytest.fixture(scope="module")
def server(
    registered: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeldonServer]:
    store = tmp_path_factory.mktemp("fuzz") / "store"
    shutil.copytree(registered.storage.uri, store)
    parameters = {
        "model_name": registered.model_name,
        "model_version": "v1",
        "store_uri": str(store),
        "log_flush_seconds": "2",  # not every minute: the log's gauges are read back
    }
    with seldon_microservice(parameters) as s:
        yield s


@pytest.fixture(scope="module")
def rest(server: SeldonServer) -> Iterator[Rest]:
    client = Rest(server.http)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc(server: SeldonServer) -> Iterator[Grpc]:
    client = Grpc(server.grpc)
    yield client
    client.close()


@pytest.fixture(scope="module")
def first_answers(server: SeldonServer, rest: Rest, grpc: Grpc) -> dict[str, Any]:
    """The good request's answers before any fuzzing."""
    status, answer = rest.post(json.dumps(GOOD).encode())
    assert status == 200, answer
    return {
        "rest": answer["data"],
        "grpc": grpc.predict(GOOD)["answer"]["data"],
        "boots": server.log.read_text().count("Booting worker"),
    }


# --- what is sent -------------------------------------------------------------

ODD_NUMBERS = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -1e308, 10**400, -(10**30), 5e-324, 0, -1]
)
CELLS = st.one_of(
    ODD_NUMBERS,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["north", "web", "salaried", "NORTH", "", "mars"]),
    st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def ndarray_requests(draw: st.DrawFn) -> dict[str, Any]:
    """The good ndarray request with a few of its parts broken."""
    rows = [list(ROW) for _ in range(draw(st.sampled_from([1, 1, 1, 2, 0])))]
    for _ in range(draw(st.integers(0, 3))):
        if rows:
            row = draw(st.sampled_from(rows))
            row[draw(st.integers(0, len(NAMES) - 1))] = draw(CELLS)
    names: Any = list(NAMES)
    change = draw(
        st.sampled_from(["none", "none", "drop", "add", "twice", "shuffle", "omit", "odd"])
    )
    if change == "drop":
        names.pop(draw(st.integers(0, len(names) - 1)))
    elif change == "add":
        names.append(draw(st.sampled_from(["colour", "income ", "", "Income"])))
    elif change == "twice":
        names[1] = names[0]
    elif change == "shuffle":
        names = draw(st.permutations(names))
    elif change == "omit":
        names = None
    elif change == "odd":
        names = draw(JSON)
    if rows and draw(st.booleans()):
        rows[0] = draw(st.sampled_from([ROW[:-1], [*ROW, 1], [ROW], ROW[0], [], None]))
    data: dict[str, Any] = {"ndarray": rows}
    if names is not None:
        data["names"] = names
    return {"data": data}


@st.composite
def json_data_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Records, one or many, with features missing, unknown or of the wrong type."""
    record: dict[str, Any] = dict(RECORD)
    for _ in range(draw(st.integers(0, 2))):
        record[draw(st.sampled_from(NAMES))] = draw(CELLS)
    if draw(st.booleans()):
        del record[draw(st.sampled_from(NAMES))]
    if draw(st.booleans()):
        record[draw(st.sampled_from(["colour", "instances", "", "income_"]))] = 1
    shape = draw(st.sampled_from(["one", "list", "instances", "odd"]))
    if shape == "one":
        return {"jsonData": record}
    if shape == "list":
        return {"jsonData": [record] * draw(st.sampled_from([0, 1, 2]))}
    if shape == "instances":
        return {"jsonData": {"instances": [record]}}
    return {"jsonData": draw(JSON)}


REQUESTS = st.one_of(
    ndarray_requests(),
    json_data_requests(),
    JSON,
    st.fixed_dictionaries({"data": JSON}),
    st.fixed_dictionaries({"data": st.fixed_dictionaries({"names": JSON, "ndarray": JSON})}),
)
GOOD_TEXT = json.dumps(GOOD)


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Bytes no JSON encoder would write: cut short, invalid UTF-8, NaN and friends as text."""
    kind = draw(st.sampled_from(["truncated", "utf8", "literal", "empty", "bytes"]))
    good = GOOD_TEXT.encode()
    if kind == "truncated":
        return good[: draw(st.integers(0, len(good) - 1))]
    if kind == "utf8":
        at = draw(st.integers(0, len(good)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80", b"\xf8"]))
        return good[:at] + junk + good[at:]
    if kind == "literal":
        value = draw(
            st.sampled_from(["NaN", "Infinity", "-Infinity", "1e308", "1e400", "-0", "1" * 500])
        )
        slot = draw(st.sampled_from(["52000.0", "40", "680", '"north"']))
        return GOOD_TEXT.replace(slot, value, 1).encode()
    if kind == "empty":
        return draw(st.sampled_from([b"", b" ", b"null", b"{}", b"[]", b'""']))
    return draw(st.binary(max_size=64))


# --- what must come back ----------------------------------------------------------


def _scored(data: dict[str, Any]) -> None:
    """A 200's answer: one finite pair of probabilities per row."""
    assert data["names"] == ["0", "1"]
    for p0, p1 in data["ndarray"]:
        assert math.isfinite(p0) and math.isfinite(p1) and abs(p0 + p1 - 1) < 1e-5


def _named(info: Any) -> None:
    """A refusal's message says what is wrong, in words, not a stack trace."""
    assert isinstance(info, str) and len(info) > 10, info
    assert "Traceback" not in info and not re.search(
        r"\b(KeyError|TypeError|AttributeError)\b", info
    )


def _check_rest(status: int, answer: dict[str, Any]) -> None:
    assert status in (200, 400), (status, answer)
    if status == 200:
        _scored(answer["data"])
    else:
        assert answer["status"]["reason"] == "MICROSERVICE_BAD_DATA", answer
        _named(answer["status"]["info"])


@settings(FUZZ, max_examples=450)
@given(REQUESTS)
@example({"data": {"names": NAMES, "ndarray": [ROW] * 1001}})
@example({"jsonData": [RECORD] * 1001})
def test_rest_refuses_malformed_json_with_a_400_naming_the_problem(
    rest: Rest, first_answers: dict[str, Any], request_body: Any
) -> None:
    try:
        body = json.dumps(request_body).encode()
    except ValueError:
        body = json.dumps(request_body, allow_nan=True).encode()
    _check_rest(*rest.post(body))


@settings(FUZZ, max_examples=300)
@given(raw_bodies())
@example(b"")
@example(GOOD_TEXT.replace("52000.0", "NaN").encode())
@example(GOOD_TEXT.replace("52000.0", "1e400").encode())
def test_rest_refuses_bytes_that_are_not_json_or_not_finite(
    rest: Rest, first_answers: dict[str, Any], body: bytes
) -> None:
    _check_rest(*rest.post(body))


@settings(FUZZ, max_examples=300)
@given(REQUESTS)
@example({"data": {"names": NAMES, "ndarray": [[math.nan, *ROW[1:]]]}})
@example({"jsonData": {**RECORD, "age": math.inf}})
@example({"data": {"names": NAMES, "ndarray": [ROW] * 1001}})
def test_grpc_refuses_malformed_messages_with_a_status_400_naming_the_problem(
    grpc: Grpc, first_answers: dict[str, Any], request_body: Any
) -> None:
    answer = grpc.predict(request_body)
    if "unsent" in answer:
        return  # the client's own conversion refused it: the server never saw it
    assert "error" not in answer, answer  # a gRPC error is a server fault here
    message = answer["answer"]
    status = message.get("status")
    if status and status.get("status") == "FAILURE":
        assert status["code"] == 400, message
        _named(status["info"])
    else:
        _scored(message["data"])


def test_after_the_fuzz_the_same_good_request_gets_the_same_answer_and_no_worker_died(
    server: SeldonServer, rest: Rest, grpc: Grpc, first_answers: dict[str, Any]
) -> None:
    # given whatever the other tests of this module sent before (in any order)
    rest.post(b'{"data": [')
    grpc.predict({"jsonData": {"instances": 3}})
    # when the good request comes again
    status, answer = rest.post(json.dumps(GOOD).encode())
    # then its answer is the one it got first, over both transports
    assert status == 200 and answer["data"] == first_answers["rest"]
    assert grpc.predict(GOOD)["answer"]["data"] == first_answers["grpc"] == first_answers["rest"]
    # and no worker crashed, timed out or was replaced
    log = server.log.read_text()
    assert log.count("Booting worker") == first_answers["boots"], log[-3000:]
    for sign in ("WORKER TIMEOUT", "Worker exiting", "was terminated", "Traceback"):
        assert sign not in log, log[-3000:]
    assert server.process.poll() is None


def _gauges(server: SeldonServer, key: str) -> dict[str, float]:
    """The gauge's value per worker, as Prometheus would scrape it."""
    with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith(key + "{"):
            labels, value = line.rsplit(" ", 1)
            worker = re.search(r'worker_id="(\d+)"', labels)
            values[worker.group(1) if worker else labels] = float(value)
    return values


def test_log_gauges_return_to_zero_over_grpc_as_over_rest(
    server: SeldonServer, rest: Rest, grpc: Grpc, first_answers: dict[str, Any]
) -> None:
    # given both workers' logs written out (the writer flushes every 2 s) and the
    # gauges due again (at most once a second)
    time.sleep(2.5)
    # when each worker answers one request
    assert rest.post(json.dumps(GOOD).encode())[0] == 200
    assert "data" in grpc.predict(GOOD)["answer"]
    # then both report a backlog of 0 and nothing dropped: a gauge of 0 is a value,
    # not a missing one (proto3 JSON leaves zeros out)
    backlog = _gauges(server, "flywheel_log_backlog")
    dropped = _gauges(server, "flywheel_log_dropped")
    assert len(backlog) == len(dropped) == 2, (backlog, dropped)
    assert set(backlog.values()) == set(dropped.values()) == {0.0}
