"""Clients of a real seldon-core microservice: a keep-alive REST connection, a gRPC client
process in the serving virtualenv, and a good request to send them."""

from __future__ import annotations

import http.client
import json
import subprocess
from typing import Any

from harness.projects import FEATURE_NAMES
from harness.servers import SERVING_VENV

# The model's features, one good row of them, and the request that sends it.
NAMES = list(FEATURE_NAMES)
ROW = [52000.0, 40, 12000.0, 680, 24, 0, "north", "web", "salaried"]
GOOD = {"data": {"names": NAMES, "ndarray": [ROW]}}


GRPC_CLIENT = r"""
import json, sys, grpc
from seldon_core.proto import prediction_pb2_grpc
from seldon_core.utils import json_to_seldon_message, seldon_message_to_json
channel = grpc.insecure_channel(sys.argv[1])
stub = prediction_pb2_grpc.ModelStub(channel)
for line in sys.stdin:
    try:
        message = json_to_seldon_message(json.loads(line))
    except Exception as error:  # not expressible as a SeldonMessage: nothing to send
        print(json.dumps({"unsent": str(error)}), flush=True)
        continue
    try:
        print(json.dumps({"answer": seldon_message_to_json(stub.Predict(message, timeout=10))}), flush=True)
    except grpc.RpcError as error:
        print(json.dumps({"error": str(error.code()), "details": error.details()}), flush=True)
"""


class Grpc:
    """One Seldon gRPC client, kept running for the whole module."""

    def __init__(self, endpoint: str) -> None:
        self.process = subprocess.Popen(
            [str(SERVING_VENV / "bin" / "python"), "-c", GRPC_CLIENT, endpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def predict(self, message: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


class Rest:
    """One keep-alive HTTP connection to the microservice, reopened when the server closes it."""

    def __init__(self, address: str) -> None:
        host, port = address.split(":")
        self.host, self.port = host, int(port)
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        for attempt in range(2):
            try:
                self.connection.request(
                    "POST",
                    "/api/v1.0/predictions",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                response = self.connection.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
                if attempt:
                    raise
        return response.status, json.loads(raw) if raw else {}

    def close(self) -> None:
        # An open keep-alive connection holds a stopping gunicorn worker for its grace period.
        self.connection.close()
