"""The Kubernetes driver and the pipeline's deploy step against a real kube-apiserver.

The control plane is real (etcd, kube-apiserver with the SeldonDeployment CRD,
controller-manager, scheduler, kwok nodes); nothing pretends to be Kubernetes.
Measurements come from a real Prometheus scraping real seldon-core microservices
(labelled as Seldon's operator labels them) and the gateway, which exports the
request histogram of Seldon's executor with the executor's labels, feedback and
status calls included (the executor, like Seldon's operator, is not on the Go module
proxy here). Where a test needs exact counts or gRPC's codes, the histogram is served
by `executor_exporter`, into which the test records the calls the executor would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel.config import Settings
from flywheel.registry import Registry
from flywheel.rollout import seldon
from flywheel.rollout.analysis import analyse
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.driver import Inconclusive
from flywheel.rollout.kubernetes import KubernetesDriver, load_client
from flywheel.rollout.local import newest_batch
from flywheel.rollout.state import RolloutError
from flywheel.rollout.traffic import SyntheticTraffic
from flywheel.stores import Stores
from harness.deployments import on_cluster, seldon_predictors
from harness.servers import (
    Exporter,
    PrometheusServer,
    SeldonServer,
    Target,
    executor_exporter,
    free_ports,
    prometheus,
    seldon_microservice,
    stop,
    wait_until,
)

pytestmark = pytest.mark.integration

# The SeldonDeployment's predictors are slots; the driver's default puts stable in "a".
SLOT = {"stable": "a", "canary": "b"}


@pytest.fixture
def driver(kube: Any, namespace: str, small_settings: Callable[..., Settings]) -> KubernetesDriver:
    settings = on_cluster(small_settings(), namespace)
    return KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))


def test_the_driver_creates_then_shifts_traffic_with_server_side_applies(
    kube: Any, namespace: str, driver: KubernetesDriver
) -> None:
    driver.finish("v1")
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 100)}
    for weight in (10, 50):
        driver.set_traffic("v1", "v2", weight)
        assert seldon_predictors(kube, namespace) == {
            "a": ("v1", 100 - weight),
            "b": ("v2", weight),
        }
    driver.finish("v2")
    assert seldon_predictors(kube, namespace) == {"a": ("v2", 100)}
    # The rest of the object (set by the chart or by hand) is left alone by the patches.
    obj = json.loads(
        kube.kubectl(
            "get", "seldondeployment", "loan-default", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert obj["spec"]["name"] == "loan-default"


def test_what_another_manager_sets_outside_the_rendered_fields_is_kept(
    kube: Any, namespace: str, driver: KubernetesDriver
) -> None:
    driver.set_traffic("v1", "v2", 10)
    kube.kubectl(
        "patch", "seldondeployment", "loan-default", "-n", namespace, "--type=merge",
        "-p", json.dumps({"metadata": {"annotations": {"someone": "else"}}}),
    )  # fmt: skip
    driver.set_traffic("v1", "v2", 50)
    obj = driver.get()
    assert obj is not None and obj["metadata"]["annotations"]["someone"] == "else"
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 50), "b": ("v2", 50)}
    # and the predictors are the controller's alone
    managers = {
        m["manager"]: m["fieldsV1"]
        for m in obj["metadata"]["managedFields"]
        if m["operation"] == "Apply"
    }
    assert "f:predictors" in managers["flywheel-rollout"]["f:spec"]


def test_a_missing_namespace_is_a_clear_error(
    kube: Any, small_settings: Callable[..., Settings]
) -> None:
    settings = on_cluster(small_settings(), "no-such-namespace")
    driver = KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))
    with pytest.raises(
        RolloutError, match="refused SeldonDeployment no-such-namespace/loan-default"
    ):
        driver.finish("v1")


def test_an_unreachable_api_server_is_a_clear_error(
    kube: Any, namespace: str, small_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text(kube.kubeconfig.read_text().replace(kube.server, "https://127.0.0.1:9"))
    driver = KubernetesDriver(
        on_cluster(small_settings(), namespace), api_client=load_client(str(broken))
    )
    driver.api.api_client.configuration.retries = 0
    with pytest.raises(RolloutError, match="cannot reach the API server"):
        driver.finish("v1")


# --- the controller on the cluster -------------------------------------------------------


# --- measurements from a real Prometheus -------------------------------------------------


@dataclass
class Served:
    """One namespace's serving side as Prometheus sees it on a cluster: a seldon-core
    microservice per predictor, labelled as Seldon's operator labels it, behind the
    gateway, which exports Seldon's executor request histogram."""

    gateway: str
    models: dict[str, SeldonServer]
    versions: dict[str, str]
    targets: list[Target]

    def route(self, weights: dict[str, int]) -> None:
        # Each predictor named by the version it serves, as the responses' tags name it.
        routes: dict[str, Any] = {
            role: {
                "version": self.versions[role],
                "url": f"http://{self.models[role].http}",
                "predictor": SLOT[role],
            }
            for role in self.models
        }
        routes["canary_weight"] = weights.get("canary", 0)
        request = urllib.request.Request(
            f"{self.gateway}/admin/routes",
            data=json.dumps(routes).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()

    def send(self, rows: list[dict[str, Any]], count: int) -> Counter[str]:
        """`count` single-row predictions; which predictor answered each."""
        answered: Counter[str] = Counter()
        for i in range(count):
            request = urllib.request.Request(
                f"{self.gateway}/api/v1.0/predictions",
                data=json.dumps({"jsonData": [rows[i % len(rows)]]}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
                answered[response.headers["X-Flywheel-Role"]] += 1
        return answered

    def call(self, path: str, body: Any = None) -> tuple[int, str, Any]:
        """One call to the gateway (a POST with `body`, else a GET): the status, the
        predictor that answered ("" if none did) and the answer."""
        request = urllib.request.Request(
            f"{self.gateway}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, headers, payload = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, headers, payload = error.code, error.headers, error.read()
        return status, headers.get("X-Flywheel-Role", ""), json.loads(payload or b"null")


def _seldon_env(deployment: str, predictor: str) -> dict[str, str]:
    # What Seldon's operator sets in a predictor's model container; the labels of
    # the model's own metrics come from these.
    return {
        "SELDON_DEPLOYMENT_ID": deployment,
        "PREDICTOR_ID": predictor,
        "PREDICTIVE_UNIT_ID": "model",
        "PREDICTOR_LABELS": json.dumps({"version": predictor}),
    }


@contextlib.contextmanager
def _served(settings: Settings, namespace: str, versions: dict[str, str]) -> Iterator[Served]:
    """`versions` (predictor -> model version) served in `namespace`."""
    name = seldon.deployment_name(settings)
    with contextlib.ExitStack() as stack:
        models = {
            role: stack.enter_context(
                seldon_microservice(
                    {p["name"]: p["value"] for p in seldon.parameters(settings, version)},
                    env=_seldon_env(name, SLOT[role]),
                )
            )
            for role, version in versions.items()
        }
        (port,) = free_ports(1)
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flywheel.rollout.gateway",
                f"--port={port}",
                f"--deployment={name}",
            ],
            start_new_session=True,
        )
        stack.callback(stop, gateway)
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: urllib.request.urlopen(f"{url}/health", timeout=2).status == 200,
            30,
            "gateway",
            gateway,
        )
        labels = (("namespace", namespace),)
        served = Served(
            gateway=url,
            models=models,
            versions=versions,
            targets=[
                Target("executor", f"127.0.0.1:{port}", labels=labels),
                *(Target("model", m.metrics, labels=labels) for m in models.values()),
            ],
        )
        served.route({})
        yield served


def _rows(settings: Settings) -> list[dict[str, Any]]:
    frame = newest_batch(Stores(settings).source)
    rows: list[dict[str, Any]] = json.loads(
        frame[list(settings.features.columns)].head(50).to_json(orient="records")
    )
    return rows


def _total(
    prom: PrometheusServer,
    namespace: str,
    metric: str = "seldon_api_executor_server_requests_seconds_count",
) -> float:
    rows = prom.query(f'sum({metric}{{namespace="{namespace}"}})')
    return float(rows[0]["value"][1]) if rows else 0.0  # type: ignore[index]


def test_a_step_counts_its_own_requests_from_the_canarys_series_alone(
    kube: Any, namespace: str, two_versions: Settings
) -> None:
    settings = two_versions
    rows = _rows(settings)
    with (
        _served(settings, namespace, {"stable": "v1", "canary": "v2"}) as here,
        # the same SeldonDeployment name in another namespace, with its own canary
        _served(settings, "elsewhere", {"stable": "v1", "canary": "v2"}) as there,
        prometheus(here.targets + there.targets) as prom,
    ):
        driver = KubernetesDriver(
            settings, api_client=load_client(str(kube.kubeconfig)), prometheus_url=prom.url
        )
        driver.set_traffic("v1", "v2", 50)
        # given traffic before the step: every row to each predictor (so every series
        # the step will add to exists already), scraped by Prometheus
        for side in (here, there):
            for weight in (0, 100):
                side.route({"canary": weight})
                side.send(rows, len(rows))
            side.route({"canary": 50})
        # (a series first scraped in the step counts from 0: the models' too, whose
        # metrics come out a moment after their answers)
        wait_until(
            lambda: (
                _total(prom, namespace) == 2 * len(rows)
                and _total(prom, namespace, "flywheel_scores_total") == 2 * len(rows)
            ),
            30,
            "the first requests scraped",
        )
        # when the step starts and Prometheus has scraped again with no new requests
        since = time.time()
        prom.scraped_after(since + prom.scrape_seconds)
        stable, canary = driver.measure(since)
        # then the step has seen nothing, so it cannot pass on what came before it
        assert (stable.requests, canary.requests) == (0, 0)
        verdict = analyse(
            stable, canary, settings.rollout.model_copy(update={"min_requests": 50}), 5.0
        )
        assert verdict.action == "wait", verdict.reason
        # when requests arrive during the step, here and in the other namespace
        answered = here.send(rows, 60)
        there.send(rows, 35)
        wait_until(
            lambda: _total(prom, namespace) == 2 * len(rows) + 60, 30, "the step's requests scraped"
        )
        # the models' series may be scraped a moment after the gateway's
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stable, canary = driver.measure(since)
            if (sum(stable.scores), sum(canary.scores)) == (stable.requests, canary.requests):
                break
            time.sleep(0.5)
    # then each predictor counts exactly its own requests of this step: not the ones
    # before it, not the other namespace's
    assert (stable.requests, canary.requests) == (answered["stable"], answered["canary"])
    assert answered["stable"] > 0 and answered["canary"] > 0
    for side in (stable, canary):
        assert side.errors == 0
        assert sum(side.latency_counts) == side.requests
        assert sum(side.scores) == side.requests  # one row each, scored by that predictor's model


def test_a_failing_canary_on_the_cluster_is_rolled_back(
    kube: Any, namespace: str, two_versions: Settings
) -> None:
    settings = two_versions.model_copy(
        update={
            "rollout": two_versions.rollout.model_copy(
                update={"interval_seconds": 1.0, "min_requests_to_fail": 5}
            )
        }
    )
    reg = Registry.from_settings(settings)
    with (
        _served(settings, namespace, {"stable": "v1", "canary": "v2"}) as here,
        prometheus(here.targets) as prom,
    ):
        kube_driver = KubernetesDriver(
            settings, api_client=load_client(str(kube.kubeconfig)), prometheus_url=prom.url
        )
        kube_driver.finish("v1")
        # given a canary whose pods are gone: every request routed to it fails
        stop(here.models["canary"].process)
        here.route({"canary": 10})
        load = SyntheticTraffic(
            here.gateway, newest_batch(Stores(settings).source), settings.features, rps=40
        ).start()
        try:
            controller = RolloutController(reg, kube_driver, settings.rollout)
            controller.start("v2")
            assert seldon_predictors(kube, namespace)["b"] == ("v2", 10)
            # when the controller reads the executor's series from Prometheus
            state = controller.run()
        finally:
            load.stop()
    # then it rolls back on the error rate, and the cluster serves v1 alone
    assert state.phase == "rolled_back" and state.reason.startswith("error rate"), state.reason
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 100)}
    assert reg.resolve("production") == "v1"
    (decision,) = [r for r in reg.records("v2") if r.get("decision") == "rollback"]
    assert {c["name"]: c["status"] for c in decision["checks"]}["error rate"] == "fail"


def _pod_template(kube: Any, namespace: str, settings: Settings, **changes: Any) -> str:
    """The chart's kind of PodTemplate for the model, with `changes` to its container."""
    pod = seldon.pod(settings)
    container = {**pod.spec["containers"][0], **changes}
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {
            "name": "fw-model",
            "namespace": namespace,
            "annotations": {seldon.REPLICAS: "3"},
        },
        "template": {"spec": {**pod.spec, "containers": [container]}},
    }
    kube.kubectl("apply", "-f", "-", input=json.dumps(template))
    return "fw-model"


def test_every_predictor_runs_the_pod_of_the_charts_pod_template(
    kube: Any, namespace: str, small_settings: Callable[..., Settings]
) -> None:
    # given the chart's PodTemplate with a pinned image, resources and three replicas
    pinned = "ghcr.io/flywheel-mlops/flywheel-serving@sha256:" + "ab" * 32
    resources = {"requests": {"cpu": "2", "memory": "3Gi"}}
    settings = on_cluster(small_settings(), namespace)
    name = _pod_template(kube, namespace, settings, image=pinned, resources=resources)
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"pod_template": name})}
    )
    driver = KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))
    # when the controller starts a canary
    driver.set_traffic("v1", "v2", 25)
    # then both predictors run that pod, and the PodTemplate owns the SeldonDeployment
    obj = driver.get()
    assert obj is not None
    for p in obj["spec"]["predictors"]:
        container = p["componentSpecs"][0]["spec"]["containers"][0]
        assert (p["replicas"], container["image"], container["resources"]) == (3, pinned, resources)
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 75), "b": ("v2", 25)}
    assert [o["kind"] for o in obj["metadata"]["ownerReferences"]] == ["PodTemplate"]


def test_a_missing_pod_template_is_named(
    kube: Any, namespace: str, small_settings: Callable[..., Settings]
) -> None:
    settings = on_cluster(small_settings("serving.pod_template=fw-model"), namespace)
    driver = KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))
    with pytest.raises(RolloutError, match=rf"PodTemplate {namespace}/fw-model .* does not exist"):
        driver.finish("v1")
    assert driver.get() is None


def test_a_pod_seldon_would_refuse_is_never_sent(
    kube: Any, namespace: str, small_settings: Callable[..., Settings]
) -> None:
    # given a PodTemplate whose container an overlay renamed: every predictor built on
    # it would name a graph node with no container, which Seldon's webhook refuses
    # (this control plane runs no Seldon webhook, so only the driver's check can tell)
    settings = on_cluster(small_settings("serving.pod_template=fw-model"), namespace)
    _pod_template(kube, namespace, settings, name="classifier")
    driver = KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))
    # when a canary step is applied, then it is refused with Seldon's reason
    with pytest.raises(
        RolloutError,
        match=r"would be refused by Seldon: .*graph: node 'model' has no container of that name "
        r"\(containers: classifier\)",
    ):
        driver.set_traffic("v1", "v2", 25)
    # and nothing was written
    assert driver.get() is None


def test_the_controller_between_rollouts_serves_production(
    kube: Any, namespace: str, two_versions: Settings, tmp_path: Path
) -> None:
    # given a registry whose production is v1, and no SeldonDeployment yet
    config = tmp_path / "flywheel.yaml"
    config.write_text(yaml.safe_dump(two_versions.model_dump(mode="json")))
    # when the controller takes one look, as the chart's Deployment runs it
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "flywheel"),
            "--config",
            str(config),
            "rollout",
            "watch",
            "--once",
        ],
        env={**os.environ, "KUBECONFIG": str(kube.kubeconfig)},
        capture_output=True,
        text=True,
        check=False,
    )
    # then it serves production
    assert result.returncode == 0, result.stderr
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 100)}


def test_labels_sent_as_seldon_feedback_reach_the_step_through_prometheus(
    kube: Any, namespace: str, two_versions: Settings
) -> None:
    """Seldon feedback to the deployment reaches the model that answered, which counts
    its right and wrong answers; the driver reads that counter from Prometheus."""
    settings = two_versions
    frame = newest_batch(Stores(settings).source).head(50)
    rows: list[dict[str, Any]] = json.loads(
        frame[list(settings.features.columns)].to_json(orient="records")
    )
    truths = [int(y) for y in frame[settings.features.label]]

    def predict_and_label(here: Served, count: int) -> dict[str, list[int]]:
        """Predictions, then each one's true label as Seldon feedback; per predictor,
        1 for each right answer and 0 for each wrong one."""
        marks: dict[str, list[int]] = {"stable": [], "canary": []}
        for i in range(count):
            row, truth = rows[i % len(rows)], truths[i % len(rows)]
            request = {"jsonData": [row]}
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"{here.gateway}/api/v1.0/predictions",
                    data=json.dumps(request).encode(),
                    headers={"Content-Type": "application/json"},
                ),
                timeout=10,
            ) as answer:
                role, response = answer.headers["X-Flywheel-Role"], json.loads(answer.read())
            feedback = {
                "request": request,
                "response": response,
                "truth": {"data": {"ndarray": [truth]}},
            }
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"{here.gateway}/api/v1.0/feedback",
                    data=json.dumps(feedback).encode(),
                    headers={"Content-Type": "application/json"},
                ),
                timeout=10,
            ) as answer:
                assert answer.headers["X-Flywheel-Role"] == role  # the model that answered
            marks[role].append(int((response["data"]["ndarray"][0][1] >= 0.5) == truth))
        return marks

    with (
        _served(settings, namespace, {"stable": "v1", "canary": "v2"}) as here,
        prometheus(here.targets) as prom,
    ):
        driver = KubernetesDriver(
            settings, api_client=load_client(str(kube.kubeconfig)), prometheus_url=prom.url
        )
        driver.set_traffic("v1", "v2", 50)
        # given labels before the step, to each model (so that its right and wrong
        # series exist, and are scraped, before the step starts)
        for weight in (0, 100):
            here.route({"canary": weight})
            before = predict_and_label(here, len(rows))
            assert 0 < sum(before["stable"] + before["canary"]) < len(rows)
        here.route({"canary": 50})
        # (scraped before the step: a series first scraped in it counts from 0)
        wait_until(
            lambda: _total(prom, namespace, "flywheel_feedback_total") == 2 * len(rows),
            30,
            "the labels before the step scraped",
        )
        since = time.time()
        # when labels come back for the step's predictions
        marks = predict_and_label(here, 60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stable, canary = driver.measure(since)
            if stable.labelled + canary.labelled == 60:
                break
            time.sleep(0.5)
    # then each predictor's window has exactly its own labels and right answers
    measured = {"stable": stable, "canary": canary}
    assert {r: (w.labelled, w.correct) for r, w in measured.items()} == {
        r: (len(m), sum(m)) for r, m in marks.items()
    }
    assert stable.labelled > 0 and canary.labelled > 0


# --- what is counted: predictions alone, from the first scrape of the step ------------------


def test_feedback_and_status_calls_are_neither_requests_errors_nor_latency(
    kube: Any, namespace: str, two_versions: Settings
) -> None:
    """Seldon's executor times feedback and status calls in the histogram it times
    predictions in, told apart by its `service` label; the gateway exports them so."""
    settings = two_versions
    rows = _rows(settings)
    with (
        _served(settings, namespace, {"stable": "v1", "canary": "v2"}) as here,
        prometheus(here.targets) as prom,
    ):
        driver = KubernetesDriver(
            settings, api_client=load_client(str(kube.kubeconfig)), prometheus_url=prom.url
        )
        here.route({"canary": 50})
        since = time.time()
        # given predictions, each followed by its label as Seldon feedback, and status calls
        answered: Counter[str] = Counter()
        canary_answers = []
        for i in range(40):
            request = {"jsonData": [rows[i % len(rows)]]}
            status, role, response = here.call("/api/v1.0/predictions", request)
            assert status == 200
            answered[role] += 1
            feedback = {
                "request": request,
                "response": response,
                "truth": {"data": {"ndarray": [1]}},
            }
            assert here.call("/api/v1.0/feedback", feedback)[:2] == (200, role)
            if role == "canary":
                canary_answers.append(feedback)
            assert here.call("/api/v1.0/health/status")[0] == 200
        assert answered["stable"] > 0 and answered["canary"] > 0
        # and feedback and status calls that fail on the server: the canary's model is gone
        stop(here.models["canary"].process)
        for feedback in canary_answers[:5]:
            assert here.call("/api/v1.0/feedback", feedback)[:2] == (502, "")
        here.route({"canary": 100})
        for _ in range(5):
            assert here.call("/api/v1.0/health/status")[0] == 502
        # when the step is measured once Prometheus has scraped them all
        prom.scraped_after(time.time(), job="executor")
        stable, canary = driver.measure(since)
        # then Prometheus holds every kind of call...
        kinds = {
            (r["metric"]["service"], r["metric"]["code"])  # type: ignore[index]
            for r in prom.query(
                f'seldon_api_executor_server_requests_seconds_count{{namespace="{namespace}"}}'
            )
        }
    assert kinds == {
        ("predictions", "200"),
        ("feedback", "200"),
        ("feedback", "502"),
        ("status", "200"),
        ("status", "502"),
    }
    # ...and the step counts the predictions alone: none of the failed feedback and
    # status calls is an error, and the latency histogram holds predictions only
    assert (stable.requests, canary.requests) == (answered["stable"], answered["canary"])
    assert (stable.errors, canary.errors) == (0, 0)
    assert sum(stable.latency_counts) == stable.requests
    assert sum(canary.latency_counts) == canary.requests


@contextlib.contextmanager
def _exported(
    kube: Any, settings: Settings, scrape_seconds: float = 1.0
) -> Iterator[tuple[Exporter, PrometheusServer, KubernetesDriver]]:
    """The executor's histogram served as the test records it, scraped by a real Prometheus
    with the namespace label a ServiceMonitor gives it, and the driver reading it."""
    namespace = settings.serving.namespace
    with (
        executor_exporter(seldon.deployment_name(settings)) as executor,
        prometheus(
            [Target("executor", executor.address, "/prometheus", (("namespace", namespace),))],
            scrape_seconds,
        ) as prom,
    ):
        driver = KubernetesDriver(
            settings, api_client=load_client(str(kube.kubeconfig)), prometheus_url=prom.url
        )
        yield executor, prom, driver


def test_grpc_server_errors_count_as_errors_and_callers_errors_do_not(
    kube: Any, namespace: str, small_settings: Callable[..., Settings]
) -> None:
    settings = on_cluster(small_settings(), namespace)
    predict, feedback = "/seldon.protos.Seldon/Predict", "/seldon.protos.Seldon/SendFeedback"
    with _exported(kube, settings) as (executor, prom, driver):
        since = time.time()
        # given the canary served over gRPC and the stable predictor over REST, as the
        # executor records them: gRPC by method and code name, REST by service and status
        calls = [
            *[("b", predict, "unary", code) for code in ["OK"] * 6],
            *[("b", predict, "unary", code) for code in ("Internal", "Internal")],
            ("b", predict, "unary", "Unavailable"),
            ("b", predict, "unary", "DeadlineExceeded"),
            *[("b", predict, "unary", "InvalidArgument") for _ in range(3)],
            ("b", predict, "unary", "NotFound"),
            *[("b", feedback, "unary", "Internal") for _ in range(4)],
            *[("a", "predictions", "post", "200") for _ in range(5)],
            ("a", "predictions", "post", "500"),
            ("a", "predictions", "post", "503"),
            *[("a", "predictions", "post", "400") for _ in range(2)],
            *[("a", "feedback", "post", "500") for _ in range(3)],
        ]
        for predictor, service, method, code in calls:
            executor.requests.observe(predictor, service, method, code, 0.02)
        prom.scraped_after(time.time())
        windows = driver.windows(since, ["a", "b"])
    # then Internal, Unavailable and DeadlineExceeded are the canary's server errors, and
    # InvalidArgument and NotFound are its callers'; its failed feedback is no request
    assert (windows["b"].requests, windows["b"].errors) == (14, 4)
    assert (windows["a"].requests, windows["a"].errors) == (9, 2)


def test_a_step_counts_from_its_first_scrape_and_a_new_series_from_its_first_sample(
    kube: Any, namespace: str, small_settings: Callable[..., Settings]
) -> None:
    settings = on_cluster(small_settings(), namespace)
    with _exported(kube, settings) as (executor, prom, driver):
        # given 100 predictions by the stable predictor before the step, scraped
        for _ in range(100):
            executor.requests.observe("a", "predictions", "post", "200", 0.01)
        prom.scraped_after(time.time())
        since = time.time()
        # when the step starts with 5 more, and a canary serves its first 3 (one failing):
        # series that Prometheus has never sampled
        for _ in range(5):
            executor.requests.observe("a", "predictions", "post", "200", 0.01)
        for code in ("200", "200", "500"):
            executor.requests.observe("b", "predictions", "post", code, 0.3)
        # then the first scrape after them shows them all, exactly
        prom.scraped_after(time.time())
        stable, canary = driver.measure(since)
        assert (stable.requests, canary.requests, canary.errors) == (5, 3, 1)
        assert sum(stable.latency_counts) == 5
        assert canary.quantile_ms(0.5) is not None and 250 < canary.quantile_ms(0.5) <= 500
        # and a step that starts after them, scraped since with nothing new, counts nothing
        later = time.time()
        prom.scraped_after(later + prom.scrape_seconds)
        stable, canary = driver.measure(later)
    assert (stable.requests, canary.requests) == (0, 0)


def test_a_stopped_prometheus_makes_the_look_inconclusive(
    kube: Any, namespace: str, small_settings: Callable[..., Settings]
) -> None:
    settings = on_cluster(small_settings(), namespace)
    with _exported(kube, settings) as (executor, prom, driver):
        since = time.time()
        executor.requests.observe("a", "predictions", "post", "200", 0.01)
        prom.scraped_after(time.time())
        assert driver.measure(since)[0].requests == 1
        # when Prometheus stops in the middle of the rollout
        stop(prom.process)
        # then the next look is inconclusive, and says why
        with pytest.raises(
            Inconclusive, match=rf"cannot query Prometheus at {re.escape(prom.url)}: "
        ):
            driver.measure(since)


def test_a_predictor_taking_traffic_without_request_series_makes_the_look_inconclusive(
    kube: Any, namespace: str, small_settings: Callable[..., Settings]
) -> None:
    # Prometheus scrapes every second; the driver allows two intervals of 2 s for a series
    settings = on_cluster(small_settings(), namespace, scrape_interval_seconds=2.0)
    with _exported(kube, settings) as (executor, prom, driver):
        # given v1 serving alone, whose executor records requests; the canary has no series
        driver.finish("v1")
        since = time.time()
        for _ in range(20):
            executor.requests.observe("a", "predictions", "post", "200", 0.01)
        # then a predictor that takes no traffic needs none, however long the step
        prom.scraped_after(since + 2 * 2.0)
        stable, canary = driver.measure(since)
        assert (stable.requests, canary.requests) == (20, 0)
        # when a canary step starts
        driver.set_traffic("v1", "v2", 10)
        since = time.time()
        # then before two scrape intervals, no canary series is no evidence yet
        assert driver.measure(since)[1].requests == 0
        # and after them, a look that cannot see the canary is inconclusive
        prom.scraped_after(since + 2 * 2.0)
        with pytest.raises(
            Inconclusive,
            match=r"no request series of predictor 'b' of .*/loan-default since the step "
            r"began \d+s ago, though it takes 10% of the traffic",
        ):
            driver.measure(since)
        # when the canary's executor records its first request, the look measures again
        executor.requests.observe("b", "predictions", "post", "200", 0.01)
        prom.scraped_after(time.time())
        stable, canary = driver.measure(since)
    assert (stable.requests, canary.requests) == (0, 1)
