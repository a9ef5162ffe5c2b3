"""The rollout controller on a real control plane: a new serving pod is canaried like a
version, and a promotion restarts nothing.

The control plane is real (etcd, kube-apiserver with the SeldonDeployment CRD, kwok
nodes), and so are the chart, helm and the controller's SeldonDeployment applies. What
cannot run here is Seldon's operator and executor, so no pod serves a request: the
driver's measurements are stood in for by fixed windows (what a healthy or a failing
canary looks like to the analysis), and everything else is the controller's own path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import load_settings
from flywheel.registry import PRODUCTION, Registry
from flywheel.rollout.analysis import Window
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.kubernetes import KubernetesDriver, load_client, serve_production
from flywheel.storage import LocalStore
from harness.deployments import seldon_predictors

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "flywheel"
MINIMAL = CHART / "examples" / "minimal.yaml"
SERVING = "ghcr.io/flywheel-mlops/flywheel-serving@sha256:"
HEALTHY = Window(
    requests=400,
    latency_counts=(0,) * 7 + (400,) + (0,) * 15,
    scores=(100, 80, 60, 40, 20, 40, 20, 20, 10, 10),
)
FAILING = HEALTHY.model_copy(update={"errors": 120})


class Measured(KubernetesDriver):
    """The Kubernetes driver, its measurements stood in for (no pod serves here)."""

    canary = HEALTHY

    def measure(self, since: float) -> tuple[Window, Window]:
        return HEALTHY, self.canary


def _images(kube: Any, namespace: str) -> dict[str, tuple[str, str]]:
    """slot -> (model version, serving image), as kubectl reads them."""
    obj = json.loads(
        kube.kubectl(
            "get", "seldondeployment", "loan-default", "-n", namespace, "-o", "json"
        ).stdout
    )
    return {
        p["name"]: (
            p["labels"]["flywheel.io/model-version"],
            p["componentSpecs"][0]["spec"]["containers"][0]["image"],
        )
        for p in obj["spec"]["predictors"]
    }


def test_a_new_serving_pod_is_canaried_like_a_version_and_a_refused_one_is_not_retried(
    kube: Any, namespace: str, tmp_path: Path
) -> None:
    # given the chart installed, and v1 in production in a store the controller reads
    kube.helm("install", "fw", str(CHART), "-n", namespace, "-f", str(MINIMAL))
    config = json.loads(
        kube.kubectl("get", "configmap", "fw-flywheel-config", "-n", namespace, "-o", "json").stdout
    )
    (tmp_path / "flywheel.yaml").write_text(config["data"]["flywheel.yaml"])
    settings = load_settings(
        tmp_path / "flywheel.yaml",
        env={},
        overrides=["rollout.steps=[50, 100]", "rollout.accuracy=off", "rollout.min_requests=100"],
    )
    registry = Registry(LocalStore(tmp_path / "store"), settings.model_name)
    for run in ("r1", "r2"):
        registry.register({"model.joblib": run.encode()}, run_id=run)
    registry.move_alias(PRODUCTION, "v1", expected=None, reason="first")
    driver = Measured(settings, api_client=load_client(str(kube.kubeconfig)))
    controller = RolloutController(registry, driver, settings.rollout, sleep=lambda _: None)
    assert serve_production(controller, driver) == "serving v1 from slot a"
    (old,) = {image for _, image in _images(kube, namespace).values()}

    def upgrade(digit: str) -> str:
        kube.helm(
            "upgrade", "fw", str(CHART), "-n", namespace, "-f", str(MINIMAL),
            f"--set=images.serving.digest=sha256:{digit * 64}",
        )  # fmt: skip
        return SERVING + digit * 64

    # when a release brings a new serving image, the controller canaries it in slot b
    new = upgrade("2")
    started = serve_production(controller, driver)
    assert started.endswith(f"canary of the serving pod (image {old} -> {new})"), started
    assert _images(kube, namespace) == {"a": ("v1", old), "b": ("v1", new)}
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 50), "b": ("v1", 50)}
    # then a healthy one is promoted: it serves on from slot b, production's version unchanged
    assert controller.run().phase == "promoted"
    assert _images(kube, namespace) == {"b": ("v1", new)}
    assert registry.resolve(PRODUCTION) == "v1"
    (start,) = registry.records("v1", "rollout-start")
    assert start["pod"] == f"image {old} -> {new}"
    # and with nothing new, the next look only serves production
    assert serve_production(controller, driver) == "serving v1 from slot b"

    # when another image arrives and its canary fails, it is rolled back...
    newer = upgrade("3")
    driver.canary = FAILING
    assert "canary of the serving pod" in serve_production(controller, driver)
    assert _images(kube, namespace) == {"b": ("v1", new), "a": ("v1", newer)}
    assert controller.run().phase == "rolled_back"
    # ...and not tried again until the pod changes again
    assert serve_production(controller, driver) == "serving v1 from slot b"
    assert _images(kube, namespace) == {"b": ("v1", new)}

    # and a model canary meanwhile goes into the free slot, stable keeping its pod
    driver.canary = HEALTHY
    controller.start("v2")
    assert _images(kube, namespace) == {"b": ("v1", new), "a": ("v2", newer)}
    assert controller.run().phase == "promoted"
    assert _images(kube, namespace) == {"a": ("v2", newer)}
