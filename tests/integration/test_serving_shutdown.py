"""A real seldon-core microservice stopped with SIGTERM writes every request it answered to its log."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal

import pyarrow.parquet as pq
import pytest

from flywheel.config import Settings
from flywheel.storage import LocalStore
from harness.clients import GOOD, Grpc, Rest
from harness.servers import seldon_microservice

pytestmark = pytest.mark.integration


def test_sigterm_flushes_every_answered_request_to_the_prediction_log(
    registered: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # given a microservice logging to a store of its own (its writer wakes every minute)
    store = tmp_path_factory.mktemp("shutdown") / "store"
    shutil.copytree(registered.storage.uri, store)
    parameters = {
        "model_name": registered.model_name,
        "model_version": "v1",
        "store_uri": str(store),
    }
    answered = []
    with seldon_microservice(parameters) as server:
        rest, grpc = Rest(server.http), Grpc(server.grpc)
        try:
            # when it answers requests over REST and gRPC
            for i in range(10):
                status, _ = rest.post(json.dumps({**GOOD, "meta": {"puid": f"rest-{i}"}}).encode())
                assert status == 200
                answered.append(f"rest-{i}")
                assert "data" in grpc.predict({**GOOD, "meta": {"puid": f"grpc-{i}"}})["answer"]
                answered.append(f"grpc-{i}")
        finally:
            rest.close()
            grpc.close()
        # and is stopped at once, as Kubernetes stops a pod (SIGTERM to its processes)
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(30)
    # then every request it answered is in the log, the last ones included
    logged = LocalStore(store)
    ids = {
        request_id
        for key in logged.list("predictions/loan-default/v1")
        for request_id in pq.read_table(io.BytesIO(logged.read(key)))
        .column("_request_id")
        .to_pylist()
    }
    assert set(answered) <= ids, sorted(set(answered) - ids)
