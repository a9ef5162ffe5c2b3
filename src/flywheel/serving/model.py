"""The model class that the seldon-core Python wrapper serves (REST and gRPC).

    seldon-core-microservice flywheel.serving.model.FlywheelModel \\
        --parameters '[{"name": "model_version", "value": "v3", "type": "STRING"}, ...]'

It loads one immutable version from the registry, checks every request against
that version's data contract (a bad request is a Seldon 400 naming the feature),
answers as its contract's problem says (a classifier a probability per class, named and
ordered as the contract's classes; a regression the predicted value, named as the label),
exposes custom metrics, tags and metadata, and logs each request and response without
blocking it.

`stamp_from_request` (default false; the chart and CD never set it) is for replaying
recorded or simulated traffic, as `flywheel simulate --servers` does: the prediction log
and the feedback log are then stamped with the time the client says it sent each message,
`meta.tags.sent_at` (epoch seconds) of the request and of the feedback's `truth`, rather
than the server's clock, and each record is written before the answer, so that a replaying
client can read the log as soon as it is answered and every file is dated by its own
record. A message without the tag is a 400 naming it: nothing is stamped with wall time.

Only `serving/` knows about seldon-core: this class, the patches of seldon-core 1.17.1
in `metrics` and the end of its processes in `shutdown`; serving can move to another
runtime by replacing them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from flywheel.compiled import COMPILED_FILE
from flywheel.config import StorageSettings
from flywheel.contract import Contract
from flywheel.errors import FlywheelError
from flywheel.predictor import Predictor, load_model
from flywheel.problem import Problem, from_model
from flywheel.registry import MODEL_FILE, Registry
from flywheel.serving.feedbacklog import FeedbackLogger, feedback_entry
from flywheel.serving.judgement import Judgement, judge
from flywheel.serving.messages import own_outputs, rounded, sent_at, true_labels
from flywheel.serving.metrics import (
    answer_buckets,
    keep_zero_metrics,
    request_metrics,
    write_metrics_once,
)
from flywheel.serving.predictionlog import DEFAULT_MAX_BYTES, BufferedLog, PredictionLogger
from flywheel.serving.requests import BadRequest, RequestSchema
from flywheel.serving.shutdown import close_on_exit
from flywheel.serving.workers import Workers
from flywheel.storage import open_store

log = logging.getLogger(__name__)


class ModelUnavailable(FlywheelError, RuntimeError):
    """The configured version cannot be served; the server must not become ready."""


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}


class FlywheelModel:
    """A registered model version behind the Seldon protocol."""

    def __init__(
        self,
        model_name: str = "loan-default",
        model_version: str = "",
        store_uri: str = ".flywheel/store",
        store_endpoint: str = "",
        store_secure: bool | str = True,
        log_predictions: bool | str = True,
        max_rows: int | str = 1000,
        max_body_bytes: int | str = 1_048_576,
        stamp_from_request: bool | str = False,
        log_max_bytes: int | str = DEFAULT_MAX_BYTES,
        log_sample: float | str = 1.0,
        log_flush_seconds: float | str = 60.0,
        *,
        clock: Callable[[], float] = time.time,
        registry: Registry | None = None,
    ) -> None:
        if not model_version:
            raise ModelUnavailable("the model_version parameter is required, e.g. v3")
        self.model_name = model_name
        self.model_version = model_version
        # The predictor (a slot) this server runs in, as Seldon's operator names it: a
        # canary of the serving pod runs the same version in two.
        self.served_by = os.environ.get("PREDICTOR_ID", "")
        self.storage = StorageSettings(
            uri=store_uri, endpoint=store_endpoint or None, secure=_bool(store_secure)
        )
        self.log_predictions = _bool(log_predictions)
        self.max_rows = int(max_rows)
        self.max_body_bytes = int(max_body_bytes)
        # The most memory each of the prediction and feedback logs may hold unwritten.
        self.log_max_bytes = int(log_max_bytes)
        # The share of requests logged (monitoring.log_sample), chosen by their ids' keys:
        # their feedback is logged with them.
        self.log_sample = float(log_sample)
        # How often each worker writes a log file at most (sooner once a file's worth is
        # buffered): a minute; a test that reads the log while serving waits less.
        self.log_flush_seconds = float(log_flush_seconds)
        # When requests and feedback are stamped; a simulation passes its simulated clock,
        # a replay (stamp_from_request) the time its last message was sent.
        self.stamp_from_request = _bool(stamp_from_request)
        self._sent_at = 0.0
        self.clock = self._last_sent if self.stamp_from_request else clock
        # A caller scoring in-process (a simulation) may share the registry it has open;
        # else it is opened from the parameters at each use: seldon-core may fork between
        # two uses, and a store's connections must not cross a fork.
        self._shared = registry
        self.predictor: Predictor | None = None
        self.schema: RequestSchema | None = None
        # What the version answers (its contract's task and classes), and a regression's
        # prediction bins: the inner edges of the contract's label profile.
        self.problem: Problem | None = None
        self.edges: tuple[float, ...] | None = None
        self.logger: PredictionLogger | None = None
        # The true labels, joined to the prediction log by request id for monitoring.
        self.feedback_log: FeedbackLogger | None = None
        self.lineage: dict[str, Any] = {}
        # This gunicorn worker's mark, once loaded (None outside gunicorn): the server
        # is healthy once every worker has loaded.
        self.workers: Workers | None = None
        self.bad_requests = 0
        # Request threads (gunicorn's gthread, gRPC's pool) add to these at once.
        self._metrics_lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._gauges_at = 0.0

    @property
    def scorer(self) -> str:
        """What scores requests: the version's compiled scorer, or scikit-learn (a version
        registered without one, or one that did not load here)."""
        if self.predictor is not None and self.predictor.scorer is not None:
            return "compiled"
        return "scikit-learn"

    def _last_sent(self) -> float:
        return self._sent_at

    def _stamp(self, message: Any, where: str) -> float | None:
        """With stamp_from_request, the message's `sent_at` tag (a 400 without), else None."""
        if not self.stamp_from_request:
            return None
        self._sent_at = sent_at(message, where)
        return self._sent_at

    def _written(self, logger: BufferedLog | None) -> None:
        # A replay's records are written before the answer (see the module's docstring).
        if logger is not None and self.stamp_from_request:
            logger.flush()

    # --- lifecycle ----------------------------------------------------------------

    def _registry(self) -> Registry:
        if self._shared is not None:
            return self._shared
        return Registry(open_store(self.storage.uri, self.storage), self.model_name)

    def load(self) -> None:
        """Load the version; any failure stops the server from becoming ready."""
        import json

        registry = self._registry()
        try:
            raw = registry.read(self.model_version, MODEL_FILE)
            contract = Contract.from_json(registry.read(self.model_version, "contract.json"))
            self.lineage = json.loads(registry.read(self.model_version, "lineage.json"))
            model = load_model(raw)
            # The compiled scorer infra-validate checked against scikit-learn, when the version
            # has one (digest-checked: a changed artifact refuses to serve, as model.joblib does).
            compiled = registry.read_optional(self.model_version, COMPILED_FILE)
        except Exception as error:
            raise ModelUnavailable(
                f"cannot serve {self.model_name} {self.model_version} from {self.storage.uri}: {error}"
            ) from error
        self.schema = RequestSchema.from_contract(contract, self.max_rows)
        self.problem = _answered(contract, model, f"{self.model_name} {self.model_version}")
        if not self.problem.is_classifier:
            self.edges = contract.label_profile.edges if contract.label_profile else ()
        self.predictor = Predictor(
            model, list(contract.numeric), list(contract.categorical), compiled=compiled
        )
        # Warm up on a typical row, so the first real request does not pay for
        # scikit-learn's lazy imports and first-call set-up.
        self.predictor.predict_rows(self.schema.checked({"jsonData": [contract.typical_row()]}))
        if self.log_predictions:
            self.logger = PredictionLogger(
                registry.store,
                self.model_name,
                self.model_version,
                numeric=self.schema.numeric,
                categorical=tuple(self.schema.categorical),
                width=len(self.problem.output_names),
                max_bytes=self.log_max_bytes,
                flush_seconds=self.log_flush_seconds,
                share=self.log_sample,
                clock=self.clock,
            )
            self.feedback_log = FeedbackLogger(
                registry.store,
                self.model_name,
                self.model_version,
                max_bytes=self.log_max_bytes,
                flush_seconds=self.log_flush_seconds,
                share=self.log_sample,
                clock=self.clock,
            )
        if "seldon_core.microservice" in sys.modules:  # served, not scored in-process
            keep_zero_metrics()
            write_metrics_once()
            self.workers = Workers.of_this_process()
            if self.workers is not None:
                self.workers.loaded()
            if self.log_predictions or self.workers is not None:
                close_on_exit(self)
        log.info(
            "serving %s %s from %s, scoring with %s",
            self.model_name,
            self.model_version,
            self.storage.uri,
            self.scorer,
        )

    def close(self) -> None:
        """Write what the logs hold; called when the serving process exits."""
        for logger in (self.logger, self.feedback_log):
            if logger is not None:
                logger.close()
        if self.workers is not None:
            self.workers.exiting()

    # --- the Seldon protocol ------------------------------------------------------

    def predict_raw(self, request: Any) -> Any:
        """Score a REST (dict) or gRPC (SeldonMessage) request."""
        from seldon_core.proto import prediction_pb2
        from seldon_core.utils import json_to_seldon_message, seldon_message_to_json

        is_proto = isinstance(request, prediction_pb2.SeldonMessage)
        try:
            response = self.score(seldon_message_to_json(request) if is_proto else request)
        except BadRequest as error:
            self.count_bad_request()
            if is_proto:
                # gRPC has no HTTP status: the Seldon status field carries the 400.
                status = {
                    "code": 400,
                    "info": str(error),
                    "reason": "MICROSERVICE_BAD_DATA",
                    "status": "FAILURE",
                }
                return json_to_seldon_message({"status": status})
            from seldon_core.flask_utils import SeldonMicroserviceException

            raise SeldonMicroserviceException(str(error), status_code=400) from None
        if is_proto:
            # A zero counter adds nothing; a zero gauge is kept (see metrics.keep_zero_metrics).
            response["meta"]["metrics"] = [
                m for m in response["meta"]["metrics"] if m["value"] or m["type"] == "GAUGE"
            ]
            return json_to_seldon_message(response)
        return response

    def score(self, payload: Any) -> dict[str, Any]:
        """A REST request (dict) in, its response out, with no seldon-core in between; what
        predict_raw serves, and what a simulation calls in-process. A bad request is a
        BadRequest."""
        if self.predictor is None or self.schema is None or self.problem is None:
            raise ModelUnavailable(f"{self.model_name} {self.model_version} is not loaded")
        sent_at = self._stamp(payload, "a request")
        started = time.perf_counter()
        rows = self.schema.checked(payload)
        answers = self.predictor.predict_rows(rows)
        elapsed_ms = (time.perf_counter() - started) * 1000
        meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
        request_id = str(meta.get("puid") or uuid.uuid4().hex)
        outputs = rounded(answers)
        names = self.problem.output_names
        # Bucketed as returned, so the gateway, which sees only the response, agrees.
        metrics = request_metrics(
            answer_buckets(outputs, names, self.edges),
            len(outputs),
            elapsed_ms,
            regression=not self.problem.is_classifier,
        )
        with self._metrics_lock:
            self._pending += metrics
        # Taken before this request is logged: else the backlog gauge, counting the
        # record just added, could never read 0.
        metrics = self.metrics()
        if self.logger is not None:
            self.logger.record(
                {
                    "request_id": request_id,
                    "model": self.model_name,
                    "version": self.model_version,
                    "time": self.clock() if sent_at is None else sent_at,
                    "latency_ms": round(elapsed_ms, 3),
                    "features": list(self.schema.names),
                    "inputs": rows,
                    "outputs": outputs,
                }
            )
            self._written(self.logger)
        return {
            "data": {"names": names, "ndarray": outputs},
            "meta": {"tags": {**self.tags(), "request_id": request_id}, "metrics": metrics},
        }

    def send_feedback_raw(self, feedback: Any) -> Any:
        """Seldon feedback with the true labels, over REST or gRPC (both arrive as a Feedback
        message): counts, per labelled row, whether this version's answer was right, or
        for a regression how far off it was.

        The counts are the FEEDBACK counter (correct="true" or "false") of a classifier,
        the ERRORS histogram with the ABS_ERROR and SQUARED_ERROR sums of a regression,
        which seldon-core exports at /metrics and the rollout's label check reads. The raw
        message is
        taken rather than seldon-core's `send_feedback(features, ...)`: that hands the rows
        over as one numpy array, which turns a row of numbers and strings into strings
        and has nothing for a jsonData request.
        """
        from seldon_core.utils import json_to_seldon_message, seldon_message_to_json

        try:
            judgement = self.judge_feedback(
                seldon_message_to_json(feedback.request),
                seldon_message_to_json(feedback.response),
                seldon_message_to_json(feedback.truth),
            )
        except BadRequest as error:
            self.count_bad_request()
            from seldon_core.flask_utils import SeldonMicroserviceException

            refused = SeldonMicroserviceException(
                f"feedback: {error}", status_code=400, reason="MICROSERVICE_BAD_DATA"
            )
            # REST answers a 400 with the message; gRPC has only str(), which is empty
            # unless the message is the exception's argument too.
            refused.args = (f"feedback: {error}",)
            raise refused from None
        metrics = judgement.metrics()
        return json_to_seldon_message({"meta": {"tags": self.tags(), "metrics": metrics}})

    def judge_feedback(self, request: Any, response: Any, truth: Any) -> Judgement:
        """This version's answers to the labelled rows of one feedback, judged: right and
        wrong, or a regression's errors. The labels go to the feedback log, for monitoring:
        a classifier's as the contract's class values, a regression's as numbers.

        The response's own scores are used when it names this version and this
        predictor; otherwise (a label routed to another predictor than the one that
        answered) the request is scored again, so that each version, and each pod of a
        version, is judged on its own answers.
        """
        problem = self.problem
        if self.predictor is None or self.schema is None or problem is None:
            raise ModelUnavailable(f"{self.model_name} {self.model_version} is not loaded")
        sent_at = self._stamp(truth, "the feedback's truth")
        labels = true_labels(truth, problem)
        width = len(problem.output_names)
        outputs = own_outputs(response, self.model_version, width, self.served_by)
        if outputs is None:
            rows = self.schema.checked(request)
            outputs = self.predictor.predict_rows(rows).tolist()
        if len(outputs) != len(labels):
            raise BadRequest(f"{len(labels)} true labels for {len(outputs)} predicted rows")
        judgement = judge(outputs, labels, problem)
        if self.feedback_log is not None:
            logged = [problem.classes[int(c)] for c in labels] if problem.is_classifier else labels
            entry = feedback_entry(
                self.model_name,
                self.model_version,
                request,
                response,
                logged,
                at=self.clock() if sent_at is None else sent_at,
            )
            if entry is not None:
                self.feedback_log.record(entry)
                self._written(self.feedback_log)
        return judgement

    def metrics(self) -> list[dict[str, Any]]:
        """Custom metrics since the last call, and (at most once a second) the running gauges."""
        now = time.monotonic()
        with self._metrics_lock:
            pending, self._pending = self._pending, []
            if now - self._gauges_at < 1.0:
                return pending
            self._gauges_at = now
        gauges = {"flywheel_bad_requests": self.bad_requests}
        if self.logger is not None:
            gauges.update(
                {
                    "flywheel_log_dropped": self.logger.dropped,
                    "flywheel_log_written": self.logger.logged,
                    # Requests left out of the logged share (monitoring.log_sample).
                    "flywheel_log_sampled_out": self.logger.sampled_out,
                    "flywheel_log_backlog": self.logger.backlog,
                }
            )
        return [*pending, *({"type": "GAUGE", "key": k, "value": v} for k, v in gauges.items())]

    def count_bad_request(self) -> None:
        with self._metrics_lock:
            self.bad_requests += 1

    def tags(self) -> dict[str, str]:
        """Added to every response's meta: which model answered, and where."""
        tags = {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "data_hash": str(self.lineage.get("data", {}).get("content_hash", ""))[:16],
        }
        return {**tags, "predictor": self.served_by} if self.served_by else tags

    def health_status(self) -> dict[str, Any]:
        """Healthy once the version is loaded and the log is keeping up."""
        if self.predictor is None:
            raise ModelUnavailable(f"{self.model_name} {self.model_version} is not loaded")
        waiting = self.workers.waiting_for() if self.workers is not None else None
        if waiting is not None:
            raise ModelUnavailable(f"{self.model_name} {self.model_version}: {waiting}")
        status: dict[str, Any] = {"model": self.model_name, "version": self.model_version}
        if self.logger is not None:
            status["log_dropped"] = self.logger.dropped
            status["log_sampled_out"] = self.logger.sampled_out
        return status

    def init_metadata(self) -> dict[str, Any]:
        """What /metadata reports: inputs and outputs from the contract, and lineage."""
        import json

        registry = self._registry()
        try:
            contract = Contract.from_json(registry.read(self.model_version, "contract.json"))
            lineage = json.loads(registry.read(self.model_version, "lineage.json"))
        except Exception as error:
            raise ModelUnavailable(
                f"cannot serve {self.model_name} {self.model_version} from {self.storage.uri}: {error}"
            ) from error
        names = list(contract.features)
        # a probability per class (in the contract's order), or the predicted value
        outputs = contract.problem.output_names
        properties: dict[str, Any] = {n: {"type": ["number", "null"]} for n in contract.numeric}
        properties.update(
            {n: {"enum": [*sorted(p.fractions), None]} for n, p in contract.categorical.items()}
        )
        return {
            "name": self.model_name,
            "versions": [self.model_version],
            "platform": "seldon",
            "inputs": [
                {"messagetype": "ndarray", "schema": {"names": names, "shape": [len(names)]}},
                {
                    "messagetype": "jsonData",
                    "schema": {"type": "object", "properties": properties, "required": names},
                },
            ],
            "outputs": [
                {"messagetype": "ndarray", "schema": {"names": outputs, "shape": [len(outputs)]}}
            ],
            "custom": {
                "data_hash": str(lineage.get("data", {}).get("content_hash", "")),
                "git_commit": str(lineage.get("git_commit") or ""),
                "image_digest": str(lineage.get("image_digest") or ""),
                "pipeline_run_id": str(lineage.get("pipeline_run_id") or ""),
                "scorer": self.scorer,
            },
        }

    @property
    def model_error_handler(self) -> Any:
        """A Flask blueprint that refuses oversized bodies before they are parsed."""
        from flask import Blueprint, jsonify, request

        blueprint = Blueprint("flywheel_limits", __name__)
        limit = self.max_body_bytes

        def _limit_body() -> Any:
            length = request.content_length
            if length is not None and length > limit:
                self.count_bad_request()
                body = {
                    "status": {
                        "status": 1,
                        "code": -1,
                        "reason": "MICROSERVICE_BAD_DATA",
                        "info": f"the request body is {length} bytes; at most {limit} are allowed",
                    }
                }
                response = jsonify(body)
                response.status_code = 413
                return response
            return None

        blueprint.before_app_request(_limit_body)
        return blueprint


def _answered(contract: Contract, model: Any, served: str) -> Problem:
    """The problem the version answers: its contract's, which the model must predict (its
    task, and its classes in the same order), or ModelUnavailable."""
    fixed, fitted = contract.problem, from_model(model, contract.label)
    if (fixed.task, fixed.output_names) != (fitted.task, fitted.output_names):
        raise ModelUnavailable(
            f"cannot serve {served}: its contract fixes {fixed.describe()}, "
            f"and the model predicts {fitted.describe()}"
        )
    return fixed
