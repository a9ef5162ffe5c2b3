"""The Kubernetes driver: traffic through the SeldonDeployment, measurements from Prometheus.

The driver owns the SeldonDeployment. It renders the whole object (the model
version and traffic of each predictor, on the pod of the chart's PodTemplate)
and applies it server-side as field manager `flywheel-rollout`, taking the
fields it renders from any other manager. Nothing else renders the object, so a
`helm upgrade` or `kubectl apply -k` never resets the traffic or drops a canary;
they change the PodTemplate, which the next apply rolls out.

Measurements come from Prometheus' HTTP API: request counts, server errors and
latency histograms from the Seldon executor (`seldon_api_executor_server_requests_seconds`),
and the answer distribution and labels from the model's own metrics (SCORES or
PREDICTIONS; FEEDBACK, or a regression's ERRORS with its sums), all selected by namespace,
SeldonDeployment and predictor, and counted over the step alone. A regression's predicted
values are counted in each version's bins, its contract's label profile, which a new
version takes from production's contract (`contract.keep_label_bins`), so both sides
count in the same ones.
The executor times feedback, status and metadata calls in the same histogram as
predictions, told apart by its `service` label: only prediction series are selected.
A look that cannot measure (Prometheus down or refusing, no series where traffic
flows) raises `Inconclusive`: it judges nothing.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flywheel.config import Settings
from flywheel.registry import PRODUCTION, Registry
from flywheel.rollout import seldon
from flywheel.rollout.analysis import Window
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.driver import Inconclusive
from flywheel.rollout.slots import SLOTS, other_slot
from flywheel.rollout.state import RolloutError
from flywheel.serving.metrics import (
    ABS_ERROR,
    ERRORS,
    FEEDBACK,
    PREDICTIONS,
    REQUESTS,
    SCORE_BUCKETS,
    SCORES,
    SQUARED_ERROR,
)

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "machinelearning.seldon.io", "v1", "seldondeployments"
# The field manager of everything the driver renders in the SeldonDeployment.
FIELD_MANAGER = "flywheel-rollout"

# The executor's `service` label of a prediction: "predictions" over REST, the full
# method over gRPC (the Seldon protocol, the one Flywheel's SeldonDeployment speaks).
# Feedback ("feedback", ".../SendFeedback"), status and metadata calls are not traffic.
PREDICTION_SERVICES = ("predictions", "/seldon.protos.Seldon/Predict")
# The model's own counters a window reads (serving.metrics).
MODEL_COUNTERS = (SCORES, PREDICTIONS, FEEDBACK, ERRORS, ABS_ERROR, SQUARED_ERROR)
# Server-side failures among the executor's codes: over REST the HTTP status (5xx);
# over gRPC the code's name, and these are the codes grpc-gateway answers with a 5xx
# (Unknown, Internal and DataLoss 500, Unimplemented 501, Unavailable 503,
# DeadlineExceeded 504). The rest (InvalidArgument, NotFound, ResourceExhausted...) are
# the caller's, as a REST 4xx is; Canceled is the caller hanging up.
GRPC_SERVER_ERRORS = frozenset(
    {"Unknown", "DeadlineExceeded", "Unimplemented", "Internal", "Unavailable", "DataLoss"}
)
# How far before a step the driver looks for each series' last sample: Prometheus'
# default lookback delta, beyond which it holds a series absent itself. A series with
# no sample in it is new in the step, and counts from its first sample.
LOOKBACK_SECONDS = 300.0


def load_client(kubeconfig: str | None = None) -> Any:
    """An API client from KUBECONFIG (or `kubeconfig`), or the in-cluster service account."""
    from kubernetes import client, config

    try:
        # KUBECONFIG is read now, not when the kubernetes package was imported.
        config.load_kube_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"))
    except (config.ConfigException, FileNotFoundError, TypeError):
        config.load_incluster_config()
    return client.ApiClient()


class KubernetesDriver:
    """Drives one SeldonDeployment's predictors."""

    def __init__(
        self,
        settings: Settings,
        *,
        api_client: Any = None,
        prometheus_url: str | None = None,
    ) -> None:
        from kubernetes import client

        self.settings = settings
        self.namespace = settings.serving.namespace
        self.name = seldon.deployment_name(settings)
        self.api = client.CustomObjectsApi(api_client or load_client())
        self.prometheus = (prometheus_url or settings.rollout.prometheus_url).rstrip("/")
        # (stable, canary) slots as the controller last set them: what `measure` reads.
        self._slots: tuple[str, str] = (SLOTS[0], other_slot(SLOTS[0]))
        # What the last apply had to undo: predictors edited by another field manager.
        self.restored: str | None = None

    # --- the SeldonDeployment -------------------------------------------------------

    def get(self) -> dict[str, Any] | None:
        """The SeldonDeployment as the API server has it, or None."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            obj: dict[str, Any] = self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
        except HTTPError as error:
            raise self._unreachable(error) from None
        except ApiException as error:
            if error.status == 404:
                return None
            raise RolloutError(
                f"cannot read SeldonDeployment {self.namespace}/{self.name}: {error.reason}"
            ) from None
        return obj

    def model_pod(self) -> seldon.Pod | None:
        """The pod of the configured PodTemplate (the chart's), or None when none is set."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        name = self.settings.serving.pod_template
        if name is None:
            return None
        try:
            template = client.CoreV1Api(self.api.api_client).read_namespaced_pod_template(
                name, self.namespace
            )
        except HTTPError as error:
            raise self._unreachable(error) from None
        except ApiException as error:
            if error.status == 404:
                raise RolloutError(
                    f"PodTemplate {self.namespace}/{name} (serving.pod_template) does not "
                    "exist: install the chart, or unset serving.pod_template"
                ) from None
            raise RolloutError(
                f"cannot read PodTemplate {self.namespace}/{name}: {error.reason}"
            ) from None
        try:
            return seldon.pod_from_template(
                self.api.api_client.sanitize_for_serialization(template), self.settings
            )
        except ValueError as error:
            raise RolloutError(str(error)) from None

    def apply(self, arms: tuple[seldon.Arm, ...], *, finishing: bool = False) -> dict[str, Any]:
        """Create the SeldonDeployment, or bring its predictors to these slots, versions and
        weights; a predictor that goes on serving its version keeps its pods as deployed.
        `finishing`: `arms` is the one slot that serves on, the other one retired."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        live = self.get()
        template = self.model_pod()
        fresh = seldon.pod_hash((template or seldon.pod(self.settings)).spec)
        refused_pod = _refused_pod(live, fresh, arms[0] if finishing else None)
        wanted = seldon.render(self.settings, arms, template, live, refused_pod)
        editors = _predictor_editors(live)
        # The test control plane runs no Seldon webhook, and on a cluster its refusal
        # would come back less clearly: check its rules before sending anything.
        refused = seldon.admission_errors(wanted)
        if refused:
            raise RolloutError(
                f"SeldonDeployment {self.namespace}/{self.name} would be refused by Seldon: "
                + "; ".join(refused)
            )
        try:
            # Server-side apply (the client's patch methods send merge patches only).
            applied: dict[str, Any] = self.api.api_client.call_api(
                f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}",
                "PATCH",
                path_params={"namespace": self.namespace, "name": self.name},
                query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                header_params={
                    "Content-Type": "application/apply-patch+yaml",
                    "Accept": "application/json",
                },
                body=wanted,
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except HTTPError as error:
            raise self._unreachable(error) from None
        except ApiException as error:
            detail = _reason(error)
            raise RolloutError(
                f"the API server refused SeldonDeployment {self.namespace}/{self.name}: {detail}"
            ) from None
        self.restored = (
            f"spec.predictors of {self.namespace}/{self.name} was edited outside the "
            f"controller (by {', '.join(editors)}): its versions and weights were restored"
            if editors
            else None
        )
        if self.restored:
            log.warning("%s", self.restored)
        return applied

    def pod_change(self, slot: str) -> PodChange | None:
        """How the chart's pod (its PodTemplate: a new image digest, resources) differs from
        the pod `slot` runs on, or None when it does not or nothing is deployed there."""
        live = self.get()
        deployed = seldon.live_predictors(live).get(slot)
        if live is None or deployed is None:
            return None
        spec = (self.model_pod() or seldon.pod(self.settings)).spec
        new = seldon.pod_hash(spec)
        running = deployed["componentSpecs"][0]["spec"]
        old = _annotations(live).get(seldon.pod_hash_key(slot)) or seldon.pod_hash(running)
        if new in (old, _annotations(live).get(seldon.REFUSED_POD)):
            return None  # the same pod, or one whose canary was rolled back
        before, after = _image(running), _image(spec)
        what = f"image {before} -> {after}" if before != after else "pod spec changed"
        return PodChange(pod_hash=new, description=what)

    def _unreachable(self, error: Exception) -> RolloutError:
        host = self.api.api_client.configuration.host
        return RolloutError(f"cannot reach the API server at {host}: {type(error).__name__}")

    def weights(self) -> dict[str, tuple[str, int]]:
        """predictor name -> (model version, traffic) as deployed."""
        current = self.get() or {}
        return {
            p["name"]: (
                p.get("labels", {}).get("flywheel.io/model-version", ""),
                int(p.get("traffic", 0)),
            )
            for p in current.get("spec", {}).get("predictors", [])
        }

    # --- the Driver protocol ----------------------------------------------------------

    def set_traffic(
        self, stable: str, canary: str, canary_weight: int, *, slot: str = SLOTS[0]
    ) -> str | None:
        self._slots = (slot, other_slot(slot))
        self.apply(seldon.arms(stable, canary, canary_weight, slot))
        return self.restored

    def finish(self, serving: str, *, slot: str = SLOTS[0]) -> None:
        self.apply(seldon.arms(serving, None, 0, slot), finishing=True)

    def measure(self, since: float) -> tuple[Window, Window]:
        """What the stable and canary predictors did from `since` (the step's start) to now;
        `Inconclusive` when that cannot be measured."""
        predictors = self._predictors()
        windows, sampled = self._measured(since, predictors)
        if time.time() - since >= 2 * self.settings.rollout.scrape_interval_seconds:
            # Two scrapes into the step, a predictor that takes traffic has been scraped
            # with its requests: none at all means Prometheus cannot see it.
            try:
                traffic = {name: weight for name, (_, weight) in self.weights().items()}
            except RolloutError as error:
                raise Inconclusive(str(error)) from None
            blind = [p for p in predictors if traffic.get(p, 0) > 0 and p not in sampled]
            if blind:
                raise Inconclusive(
                    f"Prometheus at {self.prometheus} has no request series of predictor "
                    f"{blind[0]!r} of {self.namespace}/{self.name} since the step began "
                    f"{time.time() - since:.0f}s ago, though it takes "
                    f"{traffic[blind[0]]}% of the traffic"
                )
        stable, canary = (windows[p] for p in predictors)
        return stable, canary

    def _predictors(self) -> tuple[str, str]:
        """The predictors' names: the stable one's slot, then the canary's, as the
        controller last set them."""
        return self._slots

    def windows(self, since: float, predictors: Sequence[str]) -> dict[str, Window]:
        """What each of `predictors` did from `since` to now, from one set of queries."""
        return self._measured(since, predictors)[0]

    def _measured(
        self, since: float, predictors: Sequence[str]
    ) -> tuple[dict[str, Window], set[str]]:
        """Each predictor's window, and which predictors' request series Prometheus sampled
        at or after `since`.

        Counted from the raw samples, never with `increase()`, which extrapolates to
        the window's edges. A series counts from its last sample before `since`, so the
        first scrape at or after the step's start already shows the step's requests
        (with what came in after the scrape before it); a series with no sample in the
        LOOKBACK_SECONDS before `since` is new in the step (a new canary pod's, a code
        or bucket seen for the first time) and counts from 0, its first sample included.
        """
        now = time.time()
        if not predictors:
            return {}, set()
        start = since - LOOKBACK_SECONDS
        # A range selector is left-open; the samples before `since` are the baselines.
        millis = math.ceil((now - start) * 1000) + 1
        selector = (
            f'namespace="{self.namespace}",deployment_name="{self.name}",'
            f'predictor_name=~"{_regex(predictors)}"'
        )
        served = f'{selector},service=~"{_regex(PREDICTION_SERVICES)}"'

        def increases(metric: str, labels: str) -> list[tuple[dict[str, str], float, bool]]:
            return [
                (series, _counted(samples, since), any(float(t) >= since for t, _ in samples))
                for series, samples in self._samples(f"{metric}{{{labels}}}[{millis}ms]", now)
            ]

        requests = increases(f"{REQUESTS}_count", served)
        buckets = increases(f"{REQUESTS}_bucket", served)
        # The model's own counters in one query, told apart by name.
        own = increases("", f'__name__=~"{_regex(MODEL_COUNTERS)}",{selector}')

        def named(metric: str) -> list[tuple[dict[str, str], float, bool]]:
            return [row for row in own if row[0].get("__name__") == metric]

        def window(predictor: str) -> Window:
            def mine(
                rows: list[tuple[dict[str, str], float, bool]],
            ) -> list[tuple[dict[str, str], float]]:
                return [(s, n) for s, n, _ in rows if s.get("predictor_name") == predictor]

            cumulative: dict[str, float] = {}
            for labels, n in mine(buckets):
                cumulative[labels["le"]] = cumulative.get(labels["le"], 0.0) + n
            bounds, counts = _histogram(cumulative)
            score: list[int] = [0] * SCORE_BUCKETS
            by_class: dict[str, list[int]] = {}
            for labels, n in mine(named(SCORES)) + mine(named(PREDICTIONS)):
                name = labels.get("class")
                histogram = (
                    score if name is None else by_class.setdefault(name, [0] * SCORE_BUCKETS)
                )
                bucket = int(labels.get("bucket", 0))
                histogram.extend([0] * (bucket + 1 - len(histogram)))
                histogram[bucket] += round(n)
            marks: dict[str, float] = {}
            for labels, n in mine(named(FEEDBACK)):
                marks[labels.get("correct", "")] = marks.get(labels.get("correct", ""), 0.0) + n
            errors: list[int] = []
            for labels, n in mine(named(ERRORS)):
                bucket = int(labels.get("bucket", 0))
                errors.extend([0] * (bucket + 1 - len(errors)))
                errors[bucket] += round(n)
            return Window(
                requests=round(sum(n for _, n in mine(requests))),
                errors=round(
                    sum(n for labels, n in mine(requests) if server_error(labels.get("code", "")))
                ),
                latency_bounds_ms=bounds,
                latency_counts=counts,
                scores=tuple(score),
                class_scores={k: tuple(v) for k, v in by_class.items()},
                labelled=round(marks.get("true", 0.0) + marks.get("false", 0.0)) + sum(errors),
                correct=round(marks.get("true", 0.0)),
                label_errors=tuple(errors),
                abs_error_sum=sum(n for _, n in mine(named(ABS_ERROR))),
                squared_error_sum=sum(n for _, n in mine(named(SQUARED_ERROR))),
            )

        sampled = {s.get("predictor_name", "") for s, _, seen in requests if seen}
        return {p: window(p) for p in predictors}, sampled

    # --- Prometheus -----------------------------------------------------------------

    def _query(self, promql: str, at: float) -> dict[str, Any]:
        """An instant query's data; `Inconclusive` when Prometheus cannot answer it."""
        query = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
        url = f"{self.prometheus}/api/v1/query?{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            # Prometheus answers a bad query with 400/422/503 and says why in the body.
            try:
                body = json.loads(error.read())
            except ValueError:
                raise Inconclusive(f"Prometheus at {self.prometheus} answered {error}") from None
        except (OSError, ValueError, http.client.HTTPException) as error:
            # HTTPException: an answer cut short (IncompleteRead), a malformed status line
            raise Inconclusive(
                f"cannot query Prometheus at {self.prometheus}: {type(error).__name__}: {error}"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            why = body.get("error") if isinstance(body, dict) else body
            raise Inconclusive(f"Prometheus refused {promql!r}: {why}")
        data: dict[str, Any] = body["data"]
        return data

    def _samples(self, selector: str, at: float) -> list[tuple[dict[str, str], list[list[Any]]]]:
        """Each series' labels and raw samples in the range `selector` names."""
        data = self._query(selector, at)
        if data.get("resultType") != "matrix":
            raise Inconclusive(
                f"Prometheus answered {selector!r} with a {data.get('resultType')}, not a matrix"
            )
        return [(r["metric"], r["values"]) for r in data["result"]]


@dataclass(frozen=True)
class PodChange:
    """The chart's pod differs from the one production runs on: canaried like a version."""

    pod_hash: str
    description: str


def _predictor_editors(live: dict[str, Any] | None) -> list[str]:
    """Field managers other than the controller that own the predictors: a hand edit
    (`kubectl edit`, `kubectl patch`) or another tool, which the next apply takes back."""
    managed = ((live or {}).get("metadata") or {}).get("managedFields") or []
    return sorted(
        {
            str(entry.get("manager"))
            for entry in managed
            if entry.get("manager") != FIELD_MANAGER
            and "f:predictors" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        }
    )


def _annotations(live: dict[str, Any] | None) -> dict[str, str]:
    return ((live or {}).get("metadata") or {}).get("annotations") or {}


def _version(predictor: dict[str, Any]) -> str | None:
    return (predictor.get("labels") or {}).get(seldon.VERSION_LABEL)


def _refused_pod(live: dict[str, Any] | None, fresh: str, kept: seldon.Arm | None) -> str | None:
    """The pod no new slot may run: the one the SeldonDeployment names already, or, when
    `kept` serves on alone, the chart's pod (`fresh`) if the slot being retired ran it
    under the same version while `kept` ran another: a canary of that pod rolled back."""
    named = _annotations(live).get(seldon.REFUSED_POD)
    if kept is None:
        return named
    predictors = seldon.live_predictors(live)
    retired, serving = predictors.get(other_slot(kept.slot)), predictors.get(kept.slot)
    if retired is None or serving is None:
        return named
    same_version = _version(retired) == _version(serving) == kept.version
    retired_pod = _slot_pod(live, other_slot(kept.slot))
    if same_version and retired_pod == fresh != _slot_pod(live, kept.slot):
        return fresh
    return named


def _slot_pod(live: dict[str, Any] | None, slot: str) -> str | None:
    """The hash of the pod `slot` was rendered on."""
    deployed = seldon.live_predictors(live).get(slot)
    if deployed is None:
        return None
    return _annotations(live).get(seldon.pod_hash_key(slot)) or seldon.pod_hash(
        deployed["componentSpecs"][0]["spec"]
    )


def _image(spec: dict[str, Any]) -> str:
    containers = {c.get("name"): c for c in spec.get("containers") or []}
    return str((containers.get(seldon.CONTAINER) or {}).get("image", "?"))


def serve_production(controller: RolloutController, driver: KubernetesDriver) -> str:
    """Between rollouts: serve production from its slot, or, when the chart's pod changed
    (a new serving image), start a canary of that pod under production's version. A pod
    whose canary was rolled back is not tried again until the pod changes again."""
    production = controller.registry.resolve(PRODUCTION)
    if production is None:
        return "nothing in production yet"
    slot = controller.production_slot()
    change = driver.pod_change(slot)
    last = controller.state()
    refused = last is not None and last.phase == "rolled_back" and last.pod_hash is not None
    if change is not None and not (
        refused and last is not None and last.pod_hash == change.pod_hash
    ):
        state = controller.start_pod(change.pod_hash, change.description)
        return f"{state.rollout_id}: canary of the serving pod ({change.description})"
    driver.finish(production, slot=slot)
    return f"serving {production} from slot {slot}"


def start_on_cluster(
    settings: Settings,
    registry: Registry,
    version: str,
    *,
    api_client: Any = None,
    lock: Any = None,
) -> dict[str, Any]:
    """Serve `version` of `registry` on the cluster if it is production already, else start its canary,
    or find the one already under way (a retried pipeline step); the controller
    (`flywheel rollout watch`) takes it from there. With `lock` (the rollout's Lease),
    only while no other controller is acting on the rollout."""
    driver = KubernetesDriver(settings, api_client=api_client)
    controller = RolloutController(registry, driver, settings.rollout, lock=lock)
    with controller.holding(wait=30):
        if registry.resolve(PRODUCTION) == version:
            driver.finish(version, slot=controller.production_slot())
            return {
                "version": version,
                "action": "serving",
                "reason": "already in production (the first model goes straight in)",
            }
        state = controller.resume_or_start(version)
    return {
        "version": version,
        "action": "canary" if not state.done else state.phase,
        "rollout_id": state.rollout_id,
        "stable": state.stable,
        "weight": state.weight,
        "reason": state.reason,
    }


def server_error(code: str) -> bool:
    """Whether the executor's `code` label is a server-side failure (REST or gRPC)."""
    return (len(code) == 3 and code.startswith("5") and code.isdigit()) or (
        code in GRPC_SERVER_ERRORS
    )


def _regex(values: Sequence[str]) -> str:
    """A PromQL regex matcher's string (inside double quotes) matching exactly `values`."""
    return "|".join(re.escape(v) for v in values).replace("\\", "\\\\")


def _counted(samples: list[list[Any]], since: float) -> float:
    """A counter's increase from `since` to its last sample, through resets (a restarted
    pod starts at 0): from its last sample before `since`, or from 0 when it has none."""
    total, previous = 0.0, 0.0
    for at, value in samples:
        now = float(value)
        if float(at) >= since:
            total += now - previous if now >= previous else now
        previous = now
    return total


def _histogram(cumulative: dict[str, float]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Cumulative `le` buckets in seconds -> per-bucket counts with upper bounds in ms."""
    points = sorted((float(le), n) for le, n in cumulative.items())
    if not points:
        return (math.inf,), (0,)
    bounds, counts, previous = [], [], 0.0
    for le, n in points:
        bounds.append(le * 1000 if math.isfinite(le) else math.inf)
        counts.append(max(0, round(n - previous)))
        previous = n
    return tuple(bounds), tuple(counts)


def _reason(error: Any) -> str:
    try:
        return str(json.loads(error.body).get("message"))
    except (TypeError, ValueError, AttributeError):
        return str(error.reason)
