"""The rollout controller on a real control plane: a new serving pod is canaried like a
version, and a promotion restarts nothing.

Also: a look that cannot measure (Prometheus stopped) rolls the canary back within the
limit, and a controller killed again and again cannot keep a step past its timeout.

The control plane is real (etcd, kube-apiserver with the SeldonDeployment CRD, kwok
nodes), and so are the chart, helm and the controller's SeldonDeployment applies. What
cannot run here is Seldon's operator and executor, so no pod serves a request: where a
test judges a canary, the driver's measurements are stood in for by fixed windows (what a
healthy or a failing canary looks like to the analysis); where it breaks the measuring,
a real Prometheus scrapes a stand-in for the executor's histogram
(harness.servers.executor_exporter), and the controllers are real `flywheel rollout
watch` processes. Everything else is the controller's own path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel.config import Settings, load_settings
from flywheel.registry import PRODUCTION, Registry
from flywheel.rollout.analysis import Window
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.kubernetes import KubernetesDriver, load_client, serve_production
from flywheel.rollout.lease import lease_name
from flywheel.rollout.lock import LOCK_SECONDS
from flywheel.storage import LocalStore
from harness.deployments import seldon_predictors
from harness.servers import Target, executor_exporter, prometheus, stop, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "flywheel"
MINIMAL = CHART / "examples" / "minimal.yaml"
FLYWHEEL = Path(sys.executable).parent / "flywheel"
SERVING = "ghcr.io/flywheel-mlops/flywheel-serving@sha256:"
# Enough requests a side for every check to decide at the first look: the latency check
# bounds stable's p99 from its counts, which 400 requests cannot do.
HEALTHY = Window(
    requests=1000,
    latency_counts=(0,) * 7 + (1000,) + (0,) * 15,
    scores=(100, 80, 60, 40, 20, 40, 20, 20, 10, 10),
)
FAILING = HEALTHY.model_copy(update={"errors": 300})


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
    registry.move_alias(PRODUCTION, "v1", expected=None, reason="first", actor="test")
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

    # and a model canary meanwhile goes into the free slot on production's pod, not on the
    # refused one, stable keeping its pod
    driver.canary = HEALTHY
    controller.start("v2")
    assert _images(kube, namespace) == {"b": ("v1", new), "a": ("v2", new)}
    assert controller.run().phase == "promoted"
    assert _images(kube, namespace) == {"a": ("v2", new)}
    # and the refused pod is still not tried until the chart's pod changes again
    assert serve_production(controller, driver) == "serving v2 from slot a"
    newest = upgrade("4")
    assert "canary of the serving pod" in serve_production(controller, driver)
    assert _images(kube, namespace) == {"a": ("v2", new), "b": ("v2", newest)}


# --- fail closed: a look that cannot measure, a controller that keeps dying ---------------


def _policy(tmp_path: Path, namespace: str, prometheus_url: str, **rollout: Any) -> Path:
    """A flywheel.yaml for the Kubernetes driver: a store in `tmp_path`, Prometheus scraping
    every second, a look every second, and no step that waits for labels."""
    config = {
        "storage": {"uri": str(tmp_path / "store")},
        "serving": {"namespace": namespace},
        "rollout": {
            "driver": "kubernetes",
            "prometheus_url": prometheus_url,
            "scrape_interval_seconds": 1,
            "interval_seconds": 1,
            "steps": [50, 100],
            "accuracy": "off",
            "min_requests": 1000,
            **rollout,
        },
    }
    path = tmp_path / "flywheel.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _holder(kube: Any, namespace: str) -> str:
    """Who holds the rollout's Lease, as kubectl reads it ("" when nobody does)."""
    lease = kube.kubectl(
        "get", "lease", lease_name("loan-default"), "-n", namespace, "-o", "json", check=False
    )
    if lease.returncode != 0:
        return ""
    return str(json.loads(lease.stdout)["spec"].get("holderIdentity") or "")


def _registry(settings: Settings) -> Registry:
    registry = Registry.from_settings(settings)
    for run in ("r1", "r2"):
        registry.register({"model.joblib": run.encode()}, run_id=run)
    registry.move_alias(PRODUCTION, "v1", expected=None, reason="first", actor="test")
    return registry


def test_a_prometheus_that_stops_mid_step_rolls_the_canary_back_within_the_limit(
    kube: Any, namespace: str, tmp_path: Path
) -> None:
    with executor_exporter("loan-default") as executor:
        scraped = [Target("executor", executor.address, "/prometheus", (("namespace", namespace),))]
        with prometheus(scraped, 1.0) as prom:
            settings = load_settings(
                _policy(tmp_path, namespace, prom.url, checks={"max_inconclusive": 4}), env={}
            )
            registry = _registry(settings)
            driver = KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))
            controller = RolloutController(registry, driver, settings.rollout)
            # given a canary at its first step, both slots serving a few requests, measured
            for slot in ("a", "b"):
                for _ in range(5):
                    executor.requests.observe(slot, "predictions", "post", "200", 0.01)
            controller.start("v2")
            prom.scraped_after(time.time())
            assert controller.tick().phase == "progressing"
            # when Prometheus stops
            stop(prom.process)
        stopped = time.monotonic()
        final = controller.run()
    # then the canary is rolled back after max_inconclusive looks, naming Prometheus
    took = time.monotonic() - stopped
    assert final.phase == "rolled_back", final.reason
    assert final.reason.startswith("4 looks in a row could not measure"), final.reason
    assert f"Prometheus at {prom.url}" in final.reason
    assert took < 4 * settings.rollout.interval_seconds + 10, took
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 100)}
    assert registry.resolve(PRODUCTION) == "v1"
    looks = registry.records("v2", "rollout-look")
    assert [look["action"] for look in looks][-4:] == ["inconclusive"] * 4
    assert [s["decision"] for s in registry.records("v2", "rollout-step")] == ["rollback"]


def test_a_controller_killed_again_and_again_cannot_keep_a_step_past_its_timeout(
    kube: Any, namespace: str, tmp_path: Path
) -> None:
    # A timeout of nearly three Leases: each controller killed after it took the Lease
    # leaves it to expire before the next can look, so three or four of them die in it.
    timeout = 40.0
    with executor_exporter("loan-default") as executor:
        scraped = [Target("executor", executor.address, "/prometheus", (("namespace", namespace),))]
        with prometheus(scraped, 1.0) as prom:
            config = _policy(tmp_path, namespace, prom.url, step_timeout_seconds=timeout)
            settings = load_settings(config, env={})
            registry = _registry(settings)
            # given a canary whose step waits for traffic that never comes in full
            for slot in ("a", "b"):
                for _ in range(5):
                    executor.requests.observe(slot, "predictions", "post", "200", 0.01)
            driver = KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))
            started = RolloutController(registry, driver, settings.rollout).start("v2")
            began = time.time()
            env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig)}
            command = [str(FLYWHEEL), "--config", str(config), "rollout", "watch"]
            # when each `flywheel rollout watch` is killed two seconds after it took the
            # rollout's Lease (and looked), and replaced by a new one
            kills = 0
            while not registry.records("v2", "rollout-rolled-back") and time.time() - began < 120:
                process = subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                try:
                    wait_until(
                        lambda pid=process.pid: (
                            f"-{pid}-" in _holder(kube, namespace)
                            or bool(registry.records("v2", "rollout-rolled-back"))
                        ),
                        LOCK_SECONDS + 15,
                        "the new controller holding the Lease",
                        process,
                    )
                    time.sleep(2)
                finally:
                    process.kill()
                    process.wait()
                    kills += 1
            ended = time.time()
    # then the step timed out on the wall clock from its recorded start: one Lease's
    # expiry after the timeout at most, though no controller lived more than four seconds
    state = RolloutController(registry, driver, settings.rollout).state()
    assert state is not None and state.rollout_id == started.rollout_id
    assert state.phase == "rolled_back", state.reason
    assert "canary requests in" in state.reason, state.reason
    assert kills >= 3
    assert ended - began < timeout + LOCK_SECONDS + 10, ended - began
    # with exactly one decision for the step, and production unchanged
    assert [s["decision"] for s in registry.records("v2", "rollout-step")] == ["rollback"]
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 100)}


def test_predictors_edited_by_hand_mid_rollout_are_restored_and_the_look_says_so(
    kube: Any, namespace: str, tmp_path: Path
) -> None:
    config = _policy(tmp_path, namespace, "http://127.0.0.1:9")
    settings = load_settings(config, env={})
    registry = _registry(settings)
    driver = Measured(settings, api_client=load_client(str(kube.kubeconfig)))
    controller = RolloutController(registry, driver, settings.rollout, sleep=lambda _: None)
    # given a canary at 50%, its look recorded with nothing to restore
    controller.start("v2")
    controller.tick()
    assert "restored" not in registry.records("v2", "rollout-look")[-1]
    # when someone sends all the traffic to the canary by hand
    live = json.loads(
        kube.kubectl(
            "get", "seldondeployment", "loan-default", "-n", namespace, "-o", "json"
        ).stdout
    )
    predictors = live["spec"]["predictors"]
    for p in predictors:
        p["traffic"] = 100 if p["name"] == "b" else 0
    kube.kubectl(
        "patch", "seldondeployment", "loan-default", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"predictors": predictors}}),
    )  # fmt: skip
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 0), "b": ("v2", 100)}
    # then the next look restores the step's weights and its record names who edited them
    controller.tick()
    assert seldon_predictors(kube, namespace) == {"a": ("v1", 50), "b": ("v2", 50)}
    look = registry.records("v2", "rollout-look")[-1]
    assert look["restored"].startswith(
        f"spec.predictors of {namespace}/loan-default was edited outside the controller "
        "(by kubectl-patch)"
    ), look
    # and only once: the controller owns the predictors again
    controller.tick()
    assert "restored" not in registry.records("v2", "rollout-look")[-1]
