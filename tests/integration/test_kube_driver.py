"""The Kubernetes driver and the pipeline's deploy step against a real kube-apiserver.

The control plane is real (etcd, kube-apiserver with the SeldonDeployment CRD,
controller-manager, scheduler, kwok nodes); nothing pretends to be Kubernetes.
Prometheus is the one stand-in: it cannot be built here, so `measure()` is
tested against a small HTTP server that answers `/api/v1/query` in Prometheus'
documented response format, with the series the Seldon executor exports.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conftest import on_cluster, seldon_predictors
from flywheel.config import Settings
from flywheel.registry import Registry
from flywheel.rollout.controller import RolloutController, RolloutError
from flywheel.rollout.kubernetes import KubernetesDriver, load_client

pytestmark = pytest.mark.integration


@pytest.fixture
def driver(kube: Any, namespace: str, small_settings: Callable[..., Settings]) -> KubernetesDriver:
    settings = on_cluster(small_settings(), namespace)
    return KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))


def test_the_driver_creates_then_shifts_traffic_with_merge_patches(
    kube: Any, namespace: str, driver: KubernetesDriver
) -> None:
    driver.apply("v1", None, 0)
    assert seldon_predictors(kube, namespace) == {"stable": ("v1", 100)}
    for weight in (10, 50):
        driver.set_traffic("v1", "v2", weight)
        assert seldon_predictors(kube, namespace) == {
            "stable": ("v1", 100 - weight),
            "canary": ("v2", weight),
        }
    driver.finish("v2")
    assert seldon_predictors(kube, namespace) == {"stable": ("v2", 100)}
    # The rest of the object (set by the chart or by hand) is left alone by the patches.
    obj = json.loads(
        kube.kubectl(
            "get", "seldondeployment", "loan-default", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert obj["spec"]["name"] == "loan-default"


def test_a_concurrent_change_is_refused_not_overwritten(
    kube: Any, namespace: str, driver: KubernetesDriver
) -> None:
    driver.apply("v1", "v2", 10)
    stale = driver.get()
    kube.kubectl(
        "patch", "seldondeployment", "loan-default", "-n", namespace, "--type=merge",
        "-p", json.dumps({"metadata": {"annotations": {"someone": "else"}}}),
    )  # fmt: skip
    driver.get = lambda: stale  # type: ignore[method-assign]  # the driver read before the change
    with pytest.raises(RolloutError, match="changed while being patched"):
        driver.set_traffic("v1", "v2", 50)
    assert seldon_predictors(kube, namespace) == {"stable": ("v1", 90), "canary": ("v2", 10)}


def test_a_missing_namespace_is_a_clear_error(
    kube: Any, small_settings: Callable[..., Settings]
) -> None:
    settings = on_cluster(small_settings(), "no-such-namespace")
    driver = KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))
    with pytest.raises(
        RolloutError, match="refused SeldonDeployment no-such-namespace/loan-default"
    ):
        driver.apply("v1", None, 0)


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
        driver.apply("v1", None, 0)


# --- the controller on the cluster -------------------------------------------------------


class _Prometheus(BaseHTTPRequestHandler):
    """Answers instant queries like Prometheus' HTTP API, from `series` per metric name."""

    series: ClassVar[dict[str, list[dict[str, Any]]]] = {}

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["query"][0]
        metric = next((m for m in sorted(self.series, key=len, reverse=True) if m in query), None)
        rows = list(self.series.get(metric or "", []))
        if 'code=~"5.."' in query:
            rows = [r for r in rows if r["metric"].get("code", "").startswith("5")]
        grouped: dict[tuple[Any, ...], float] = {}
        by = query.split("sum by (")[1].split(")")[0].replace(" ", "").split(",")
        for r in rows:
            key = tuple(r["metric"].get(label, "") for label in by)
            grouped[key] = grouped.get(key, 0.0) + r["value"]
        body = {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": dict(zip(by, key, strict=True)), "value": [0, str(value)]}
                    for key, value in grouped.items()
                ],
            },
        }
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def _executor_series(predictor: str, ok: int, failed: int) -> list[dict[str, Any]]:
    """seldon_api_executor_server_requests_seconds, as the executor exports it."""
    rows = []
    for code, count in (("200", ok), ("500", failed)):
        labels = {"predictor_name": predictor, "code": code}
        rows.append({"metric": labels, "value": float(count)})
    return rows


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_failing_canary_on_the_cluster_is_rolled_back(
    kube: Any, namespace: str, two_versions: Settings, prometheus: str
) -> None:
    requests = "seldon_api_executor_server_requests_seconds"
    _Prometheus.series = {
        f"{requests}_count": [
            *_executor_series("stable", ok=900, failed=0),
            *_executor_series("canary", ok=60, failed=40),
        ],
        f"{requests}_bucket": [
            {"metric": {"predictor_name": p, "le": le}, "value": float(n)}
            for p, total in (("stable", 900), ("canary", 100))
            for le, n in (("0.01", total * 0.9), ("0.05", total), ("+Inf", total))
        ],
        "flywheel_scores_total": [
            {"metric": {"predictor_name": p, "bucket": str(b)}, "value": float(n)}
            for p, total in (("stable", 900), ("canary", 60))
            for b, n in enumerate([total // 2, total - total // 2])
        ],
    }
    api = load_client(str(kube.kubeconfig))
    reg = Registry.from_settings(two_versions)
    kube_driver = KubernetesDriver(two_versions, api_client=api, prometheus_url=prometheus)
    kube_driver.apply("v1", None, 0)
    controller = RolloutController(reg, kube_driver, two_versions.rollout, sleep=lambda _: None)
    controller.start("v2")
    assert seldon_predictors(kube, namespace)["canary"] == ("v2", 10)
    state = controller.run()
    assert state.phase == "rolled_back" and state.reason.startswith("error rate"), state.reason
    assert seldon_predictors(kube, namespace) == {"stable": ("v1", 100)}
    assert reg.resolve("production") == "v1"
    (decision,) = [r for r in reg.records("v2") if r.get("decision") == "rollback"]
    assert {c["name"]: c["status"] for c in decision["checks"]}["error rate"] == "fail"


def test_traffic_changes_keep_what_the_chart_or_an_overlay_set(
    kube: Any, namespace: str, driver: KubernetesDriver
) -> None:
    driver.apply("v1", None, 0)
    pinned = "ghcr.io/flywheel-mlops/flywheel-serving@sha256:" + "ab" * 32
    resources = {"requests": {"cpu": "2", "memory": "3Gi"}}
    kube.kubectl(
        "patch", "seldondeployment", "loan-default", "-n", namespace, "--type=json", "-p",
        json.dumps([
            {"op": "replace", "path": "/spec/predictors/0/replicas", "value": 3},
            {"op": "replace", "path": "/spec/predictors/0/componentSpecs/0/spec/containers/0/image", "value": pinned},
            {"op": "replace", "path": "/spec/predictors/0/componentSpecs/0/spec/containers/0/resources", "value": resources},
        ]),
    )  # fmt: skip
    driver.set_traffic("v1", "v2", 25)
    obj = driver.get()
    assert obj is not None
    for p in obj["spec"]["predictors"]:
        container = p["componentSpecs"][0]["spec"]["containers"][0]
        assert (p["replicas"], container["image"], container["resources"]) == (3, pinned, resources)
    assert seldon_predictors(kube, namespace) == {"stable": ("v1", 75), "canary": ("v2", 25)}


def test_a_patch_seldon_would_refuse_is_never_sent(
    kube: Any, namespace: str, driver: KubernetesDriver
) -> None:
    # given a live object whose container an overlay renamed: the traffic patch, built
    # on it, would name a graph node with no container, which Seldon's webhook refuses
    # (this control plane runs no Seldon webhook, so only the driver's check can tell)
    driver.apply("v1", None, 0)
    kube.kubectl(
        "patch", "seldondeployment", "loan-default", "-n", namespace, "--type=json", "-p",
        json.dumps([
            {"op": "replace", "path": "/spec/predictors/0/componentSpecs/0/spec/containers/0/name", "value": "classifier"},
        ]),
    )  # fmt: skip
    before = driver.get()
    # when a canary step is applied, then it is refused with Seldon's reason
    with pytest.raises(
        RolloutError,
        match=r"would be refused by Seldon: .*graph: node 'model' has no container of that name "
        r"\(containers: classifier\)",
    ):
        driver.set_traffic("v1", "v2", 25)
    # and nothing was written
    after = driver.get()
    assert after is not None and before is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
