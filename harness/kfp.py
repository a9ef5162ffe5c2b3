"""A loopback stand-in for the Kubeflow Pipelines v2beta1 REST API, for `flywheel submit`.

KFP's API server (a Go backend with MySQL and Argo behind it) cannot be built or
run here, so this serves the endpoints the kfp 2.x SDK calls from
`Client(host, existing_token=...)` and `create_run_from_pipeline_package`, in the
shapes of KFP's v2beta1 API (the `kfp_server_api` models the SDK decodes them
into), and records every request:

- `GET  /apis/v2beta1/healthz`: the client's check at start (single-user KFP).
- `GET  /apis/v2beta1/experiments?filter=...`: the experiment by display name.
- `POST /apis/v2beta1/experiments`: created when that finds none.
- `POST /apis/v2beta1/runs`: the run, with the compiled package inline as its
  `pipeline_spec` (`{pipeline_spec, platform_spec}` when it has a platform part)
  and the run parameters in `runtime_config.parameters`.
- `GET  /apis/v2beta1/runs/{run_id}`: the run as created (or as `end` left it).
- `GET  /apis/v2beta1/runs?filter=...`: runs by display name (a run's is its
  Flywheel run id), newest first with `sort_by=created_at desc`.

It refuses what the real deployment would: a request without the bearer token
(as the auth proxy in front of KFP does), a run in an unknown experiment, a run
with no pipeline spec, or with a parameter the pipeline does not declare or
without one it requires. Anything else is a 404. It runs nothing: a created run
stays PENDING.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API = "/apis/v2beta1"
# google.rpc.Code values, which KFP's gRPC gateway puts in its error bodies.
INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED = 3, 5, 16


@dataclass(frozen=True)
class Request:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: Any


class KfpError(Exception):
    """An error answer: HTTP status, google.rpc code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeKfp:
    """The server's address, its recorded requests and what it holds."""

    token: str | None
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request, in order."""
        return [(r.method, r.path) for r in self.requests]

    def answer(self, request: Request) -> tuple[int, Any]:
        """The status and JSON body for one request."""
        with self.lock:
            self.requests.append(request)
            try:
                return 200, self._route(request)
            except KfpError as error:
                return error.status, {"code": error.code, "message": error.message, "details": []}

    def _route(self, request: Request) -> Any:
        if self.token is not None and request.authorization != f"Bearer {self.token}":
            raise KfpError(401, UNAUTHENTICATED, "Unauthenticated: a bearer token is required")
        route = (request.method, request.path)
        if route == ("GET", f"{API}/healthz"):
            return {"multi_user": False, "pipeline_store": "database"}
        if route == ("GET", f"{API}/experiments"):
            return self._list_experiments(request.query)
        if route == ("POST", f"{API}/experiments"):
            return self._create_experiment(request.body or {})
        if route == ("POST", f"{API}/runs"):
            return self._create_run(request.body or {})
        if route == ("GET", f"{API}/runs"):
            return self._list_runs(request.query)
        if request.method == "GET" and request.path.startswith(f"{API}/runs/"):
            run_id = request.path.rsplit("/", 1)[1]
            if run_id not in self.runs:
                raise KfpError(404, NOT_FOUND, f"Run {run_id} not found")
            return self.runs[run_id]
        raise KfpError(404, NOT_FOUND, f"{request.method} {request.path} is not served here")

    def _list_experiments(self, query: dict[str, list[str]]) -> Any:
        found = _filtered(list(self.experiments.values()), query)
        namespace = query.get("namespace", [""])[0]
        if namespace:
            found = [e for e in found if e.get("namespace", "") == namespace]
        # Empty fields are left out of a gRPC gateway answer, so no experiments is `{}`.
        return {"experiments": found, "total_size": len(found)} if found else {}

    def _list_runs(self, query: dict[str, list[str]]) -> Any:
        found = _filtered(list(self.runs.values()), query)
        experiment = query.get("experiment_id", [""])[0]
        if experiment:
            found = [r for r in found if r.get("experiment_id") == experiment]
        sort_by = query.get("sort_by", [""])[0]
        if sort_by not in ("", "created_at", "created_at desc"):
            raise KfpError(400, INVALID_ARGUMENT, f"unsupported sort_by {sort_by!r}")
        # Created in order, so the insertion order is the creation order.
        if sort_by == "created_at desc":
            found.reverse()
        size = int(query.get("page_size", ["0"])[0] or 0)
        page = found[:size] if size else found
        return {"runs": page, "total_size": len(found)} if found else {}

    def _create_experiment(self, body: dict[str, Any]) -> Any:
        if not body.get("display_name"):
            raise KfpError(400, INVALID_ARGUMENT, "Experiment display_name is required")
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": body["display_name"],
            "description": body.get("description") or "",
            "namespace": body.get("namespace") or "",
            "created_at": _now(),
            "storage_state": "AVAILABLE",
        }
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _create_run(self, body: dict[str, Any]) -> Any:
        if body.get("experiment_id") not in self.experiments:
            raise KfpError(404, NOT_FOUND, f"Experiment {body.get('experiment_id')} not found")
        spec = body.get("pipeline_spec") or {}
        spec = spec.get("pipeline_spec", spec)  # with a platform spec, both travel together
        if "root" not in spec or not spec.get("deploymentSpec"):
            raise KfpError(400, INVALID_ARGUMENT, "The run has no pipeline spec to run")
        declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        given = (body.get("runtime_config") or {}).get("parameters") or {}
        unknown = sorted(set(given) - set(declared))
        missing = sorted(
            n for n, d in declared.items() if not d.get("isOptional") and n not in given
        )
        if unknown or missing:
            raise KfpError(
                400,
                INVALID_ARGUMENT,
                f"runtime_config.parameters: unknown {unknown}, missing {missing}",
            )
        now = _now()
        run = {
            **body,
            "run_id": str(uuid.uuid4()),
            "storage_state": "AVAILABLE",
            "created_at": now,
            "state": "PENDING",
            "state_history": [{"update_time": now, "state": "PENDING"}],
        }
        self.runs[run["run_id"]] = run
        return run

    def end(self, run_id: str, state: str) -> None:
        """Move a run to a final state, as KFP's persistence agent would once Argo ends it."""
        with self.lock:
            run = self.runs[run_id]
            run["state"] = state
            run["finished_at"] = _now()
            run["state_history"].append({"update_time": run["finished_at"], "state": state})


def _filtered(items: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The items a request's `filter` (EQUALS predicates on string fields) selects."""
    for predicate in json.loads(query.get("filter", ["{}"])[0]).get("predicates", []):
        if predicate.get("operation") not in (1, "EQUALS"):
            raise KfpError(400, INVALID_ARGUMENT, f"unsupported filter {predicate}")
        key, value = (
            predicate["key"],
            predicate.get("stringValue", predicate.get("string_value")),
        )
        items = [item for item in items if item.get(key) == value]
    return items


@contextlib.contextmanager
def kfp_api(token: str | None) -> Iterator[FakeKfp]:
    """The fake KFP API on 127.0.0.1 (a free port), requiring `token` as a bearer token
    unless it is None; stopped on exit."""
    kfp = FakeKfp(token=token)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            status, answer = kfp.answer(
                Request(
                    method=self.command,
                    path=url.path,
                    query=urllib.parse.parse_qs(url.query),
                    authorization=self.headers.get("Authorization"),
                    body=body,
                )
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PATCH = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    kfp.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kfp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
