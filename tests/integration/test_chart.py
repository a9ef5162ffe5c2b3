"""The Helm chart and the Kustomize manifests: static checks, then a real control plane.

Every tool here is the real one, built by `make tools`: helm, kubeconform, the
argo CLI, kubectl (with its built-in kustomize) and checkov. kubeconform's
schemas come from the running kube-apiserver's own OpenAPI document and from the
CRDs, since GitHub (where it would download them) is out of reach.

What a real cluster would add and this cannot: kwok moves pods to Running (and
Jobs' pods to Succeeded) without starting containers, so `helm test` proves the
hook is created, scheduled and admitted under the restricted Pod Security
Standard, not that a prediction came back; and no Seldon operator turns the
SeldonDeployment into pods.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel.config import Settings, load_settings
from flywheel.rollout import seldon
from flywheel.rollout.kubernetes import KubernetesDriver, load_client
from flywheel.rollout.local import newest_batch
from flywheel.stores import Stores
from harness import schemas, seldon_operator
from harness.deployments import seldon_predictors
from harness.prometheus_operator import generated_config, prometheus_operator, runnable
from harness.servers import (
    executor_exporter,
    prometheus_configured,
    seldon_microservice,
    wait_until,
)
from tools import manifests
from tools.build import binary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "flywheel"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
OVERLAYS = sorted(p.parent for p in (REPO / "manifests" / "overlays").glob("*/kustomization.yaml"))


def _run(*command: str | Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], input=input, capture_output=True, text=True, check=False
    )


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _render(values: Path | None = None, *sets: str) -> list[dict[str, Any]]:
    args = [*(["-f", str(values)] if values else []), *(f"--set={s}" for s in sets)]
    return _docs(manifests.helm_template(*args))


def _settings(docs: list[dict[str, Any]], tmp_path: Path) -> Settings:
    """The flywheel.yaml the chart gives the rollout controller."""
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    (tmp_path / "flywheel.yaml").write_text(config["data"]["flywheel.yaml"])
    return load_settings(tmp_path / "flywheel.yaml", env={})


def _sdep(values: Path | None, tmp_path: Path) -> dict[str, Any]:
    """The SeldonDeployment the controller renders for a canary on the chart's PodTemplate."""
    docs = _render(values)
    template = next(d for d in docs if d["kind"] == "PodTemplate")
    settings = _settings(docs, tmp_path)
    pod = seldon.pod_from_template(template, settings)
    return seldon.render(settings, seldon.arms("v3", "v4", 10), pod)


# --- static checks ----------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_helm_lint_strict(values: Path | None) -> None:
    result = _run(binary("helm"), "lint", "--strict", CHART, *(["-f", values] if values else []))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["serving.replicas=two"], "at '/serving/replicas': got string, want integer"),
        # versions and traffic are the rollout controller's, never the chart's
        (["model.stable.version=v3"], "at '/model': additional properties 'stable' not allowed"),
        (["storage.existingSecret=wJalrXUtnFEMI/K7MDENG+bPxRfiCY"], "at '/storage/existingSecret'"),
        (["storage.secretAccessKey=wJalrXUtnFEMI"], "additional properties 'secretAccessKey'"),
        (["privacy.existingSecret=Salt/Value+1"], "at '/privacy/existingSecret'"),
        (["images.serving.digest=latest"], "at '/images/serving/digest'"),
        # fail closed: a policy that never requires accuracy before 100% is refused...
        (["rolloutController.steps={10,25,100}"], "at '/rolloutController/steps': no items match"),
        # ...and `accuracy: off` beside a step that requires it is a contradiction
        (["rolloutController.accuracy=off"], "at '/rolloutController/steps': 'not' failed"),
        # a share of requests logged: none at all would leave monitoring blind
        (["monitoring.logSample=0"], "at '/monitoring/logSample': minimum"),
        # the engine's policy is config's triggers section, not a subset of the chart's own
        (["triggers.cooldownHours=24"], "additional properties 'cooldownHours' not allowed"),
        # config's text (--set-file) must be a flywheel.yaml, a mapping of its sections
        (["config=income"], "config: not a flywheel.yaml"),
        # the UI's store key is a Secret's name, read-only: never the engine's, which writes
        (["ui.storeSecret=AKIAIOSFODNN7/EXAMPLE"], "at '/ui/storeSecret'"),
        (["ui.enabled=true", "ui.storeSecret=flywheel-s3"], "ui.storeSecret: the UI reads"),
        # its Service is ClusterIP, whatever the values say
        (["ui.service.type=NodePort"], "at '/ui/service': additional properties 'type'"),
        (["ui.port=80"], "at '/ui/port': minimum"),
        # the engine's scratch is a quantity
        (["triggers.scratch=lots"], "at '/triggers/scratch'"),
    ],
)
def test_invalid_values_fail_naming_the_key(sets: list[str], message: str) -> None:
    with pytest.raises(RuntimeError) as error:
        _render(None, *sets)
    assert message in str(error.value), str(error.value)


def _policy(docs: list[dict[str, Any]], tmp_path: Path) -> Settings:
    """The settings the rollout controller runs with: its ConfigMap and its FLYWHEEL_* env."""
    controller = next(
        d
        for d in docs
        if d["kind"] == "Deployment" and "rollout-controller" in d["metadata"]["name"]
    )
    env = {
        e["name"]: e["value"]
        for e in controller["spec"]["template"]["spec"]["containers"][0].get("env", [])
        if e["name"].startswith("FLYWHEEL_") and "value" in e
    }
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    (tmp_path / "flywheel.yaml").write_text(config["data"]["flywheel.yaml"])
    return load_settings(tmp_path / "flywheel.yaml", env=env)


@pytest.mark.parametrize("source", ["chart", *(o.name for o in OVERLAYS)])
def test_every_shipped_rollout_policy_requires_accuracy_before_100(
    kube: Any, source: str, tmp_path: Path
) -> None:
    # given the rollout controller's settings as the chart or an overlay (rendered by the
    # real kubectl) deploys them
    if source == "chart":
        docs = _render()
    else:
        docs = _docs(
            kube.kubectl("kustomize", str(REPO / "manifests" / "overlays" / source)).stdout
        )
    policy = _policy(docs, tmp_path).rollout
    # then accuracy is on and some step before 100% waits for it: a canary whose accuracy
    # dropped while its scores look alike is never promoted as "accuracy not checked"
    assert policy.accuracy == "on"
    assert [s.weight for s in policy.steps if s.accuracy == "required" and s.weight < 100], (
        policy.steps
    )


# --- one policy on the laptop and the cluster ----------------------------------------------

# A flywheel.yaml with a policy of its own (features, a model, a monitoring window and label
# delay, PSI thresholds per feature, a performance floor), and settings of a laptop that the
# cluster's replace: its store and keys' variables, TLS on (the values below turn it off), the
# local driver. A number written 1.0e-5 comes out of Helm's toYaml as 1e-05.
POLICY = """\
model_name: churn
data:
  source: data/batches
  window_days: 21
features:
  time_column: ts
  label: churned
  numeric: [income, tenure_months, monthly_spend]
  categorical: [plan, region]
  monotonic: {monthly_spend: decreasing}
contract:
  drift: {psi_warn: 0.15, psi_fail: null}
model:
  estimator: sklearn.linear_model.LogisticRegression
  params: {C: 0.5, max_iter: 500, tol: 1.0e-5}
promotion:
  metric: roc_auc
  min_metric: 0.7
  slices: [{column: plan, min_metric: 0.65, min_rows: 100}]
storage:
  uri: .flywheel/store
  secure: true
  access_key_env: MINIO_ACCESS_KEY
  secret_key_env: MINIO_SECRET_KEY
serving:
  namespace: laptop
  max_rows: 500
rollout:
  driver: local
  checks: {false_rollback_rate: 0.01}
monitoring:
  window: hour
  windows: 96
  label_delay_days: 3
  p_value: 0.01
  skew_tolerance: 1.0e-5
  pushgateway: http://localhost:9091
triggers:
  schedule: null
  new_data: {batches: 5}
  drift:
    share: null
    features: {income: 0.2, plan: 0.25}
    windows: 3
  performance: {metric: roc_auc, floor: 0.8, max_drop: null}
  estimated_performance: null
  cooldown_hours: 48
  daily_budget: 1
"""
# The chart's values beside it: an S3-compatible store without TLS.
CLUSTER_VALUES = {"storage": {"endpoint": "minio-service.kubeflow:9000", "secure": False}}


def _cluster_keys() -> set[str]:
    """The keys the chart lays over config, as its README (values.yaml) lists them."""
    row = next(
        line
        for line in (CHART / "README.md").read_text().splitlines()
        if line.startswith("| `config` |")
    )
    return set(re.findall(r"`([a-z_.]+)`", row.split("laid over it", 1)[1]))


def _flywheel_containers(docs: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], Any]]:
    """Every container that runs flywheel, by name: it and its pod's volumes."""
    pods = []
    for doc in docs:
        if doc["kind"] == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            pods.append((spec["containers"], spec["volumes"]))
        elif doc["kind"] == "CronWorkflow":
            spec = doc["spec"]["workflowSpec"]
            steps = [
                {**t["container"], "name": t["name"]} for t in spec["templates"] if "container" in t
            ]
            pods.append((steps, spec["volumes"]))
    return {
        container["name"]: (container, volumes)
        for containers, volumes in pods
        for container in containers
        if "--config" in container.get("args", [])
    }


def _as_the_pod_loads_it(
    docs: list[dict[str, Any]], container: dict[str, Any], volumes: Any, tmp_path: Path
) -> Settings:
    """The configuration a container runs with: the file its --config names, from the
    ConfigMap mounted there, with its FLYWHEEL_* variables over it."""
    path = Path(container["args"][container["args"].index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if path.parent == Path(m["mountPath"])]
    (volume,) = [v for v in volumes if v["name"] == mount["name"]]
    (config,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
    ]
    local = tmp_path / container["name"] / path.name
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(config["data"][path.name])
    env = {
        e["name"]: e["value"]
        for e in container.get("env", [])
        if e["name"].startswith("FLYWHEEL_") and "value" in e
    }
    return load_settings(local, env=env)


def _config_show(path: Path) -> dict[str, Any]:
    """`flywheel config show` on `path`, as a user runs it (no FLYWHEEL_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "flywheel"), "--config", str(path), "config", "show"],
        capture_output=True, text=True, check=True, env=env, cwd=path.parent,
    )  # fmt: skip
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def _leaves(node: Any, path: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        return {
            k: v for key, child in node.items() for k, v in _leaves(child, f"{path}.{key}").items()
        }
    return {path.lstrip("."): node}


@pytest.mark.parametrize(
    "source",
    ["defaults", "values", "set-file", "kustomize-base", *(f"overlay-{o.name}" for o in OVERLAYS)],
)
def test_every_flywheel_pod_runs_what_config_show_resolves_but_the_clusters_keys(
    source: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # given a flywheel.yaml, and the chart rendered with it: none (an empty file), as a
    # mapping in a values file, as the file's text (--set-file), or as the Kustomize base and
    # overlays ship it (the repository's flywheel.yaml, by `make manifests`)
    policy = tmp_path / "policy.yaml"
    if source == "defaults":
        policy.write_text("")
        docs = _render()
    elif source in ("values", "set-file"):
        policy.write_text(POLICY)
        values = tmp_path / "values.yaml"
        given = {"config": yaml.safe_load(POLICY)} if source == "values" else {}
        values.write_text(yaml.safe_dump({**CLUSTER_VALUES, **given}))
        extra = [f"--set-file=config={policy}"] if source == "set-file" else []
        docs = _docs(manifests.helm_template("-f", str(values), *extra))
    elif source == "kustomize-base":
        policy.write_text((REPO / "flywheel.yaml").read_text())
        docs = _docs(manifests.BASE.read_text())
    else:
        policy.write_text((REPO / "flywheel.yaml").read_text())
        overlay = REPO / "manifests" / "overlays" / source.removeprefix("overlay-")
        docs = _docs(request.getfixturevalue("kube").kubectl("kustomize", str(overlay)).stdout)
    local = _leaves(_config_show(policy))
    cluster_keys = _cluster_keys()
    # when each container that runs flywheel loads its configuration as the pod does
    containers = _flywheel_containers(docs)
    assert set(containers) == {"controller", "partitions", "summarise", "monitor", "decide"}
    for name, (container, volumes) in containers.items():
        settings = _as_the_pod_loads_it(docs, container, volumes, tmp_path)
        engine = _leaves(json.loads(settings.to_json()))
        # then it is what `flywheel config show` resolves on the laptop, but for the keys
        # the chart documents as the cluster's
        differing = sorted(k for k in local.keys() | engine.keys() if local.get(k) != engine.get(k))
        foreign = [
            (k, local.get(k), engine.get(k))
            for k in differing
            if not any(k == c or k.startswith(f"{c}.") for c in cluster_keys)
        ]
        assert not foreign, (name, foreign)
        assert "storage.uri" in differing and "rollout.driver" in differing, (name, differing)
        if source in ("values", "set-file"):
            # the policy itself, whole...
            assert settings.features.categorical == ("plan", "region")
            assert settings.triggers.drift is not None
            assert settings.triggers.drift.features == {"income": 0.2, "plan": 0.25}
            assert settings.triggers.performance is not None
            assert settings.triggers.performance.floor == 0.8
            monitoring = settings.monitoring
            assert (monitoring.window, monitoring.windows) == ("hour", 96)
            assert (monitoring.label_delay_days, monitoring.skew_tolerance) == (3, 1e-5)
            assert settings.triggers.schedule is None and settings.triggers.code_change
            # ...a key the chart does not set beside one it does in the same section...
            assert settings.rollout.checks.false_rollback_rate == 0.01
            # ...and the cluster's values over the laptop's, false and null among them
            assert (settings.storage.secure, local["storage.secure"]) == (False, True)
            assert settings.storage.access_key_env == "AWS_ACCESS_KEY_ID"
            assert settings.monitoring.pushgateway is None
            assert settings.model_name == "loan-default"


def test_the_pii_salt_secret_reaches_the_runs_the_engine_submits(tmp_path: Path) -> None:
    # the trigger engine submits runs with this flywheel.yaml: its ingest step reads the Secret
    settings = _settings(_render(None, "privacy.existingSecret=team-salt"), tmp_path)
    assert settings.contract.pii_salt_secret == "team-salt"


def test_the_logged_share_of_requests_reaches_every_predictor(tmp_path: Path) -> None:
    # given the chart with a quarter of requests logged
    values = tmp_path / "values.yaml"
    values.write_text("monitoring:\n  logSample: 0.25\n")
    # when the rollout controller renders the predictors from its flywheel.yaml
    settings = _settings(_render(values), tmp_path)
    deployment = seldon.render(settings, seldon.arms("v3", "v4", 10))
    # then every predictor's model class logs that share
    for predictor in deployment["spec"]["predictors"]:
        parameters = {p["name"]: p["value"] for p in predictor["graph"]["parameters"]}
        assert float(parameters["log_sample"]) == 0.25


def test_the_prometheusrule_ships_the_rules_file_promtool_tests() -> None:
    # given the alerts on, when rendered, then the PrometheusRule's spec is the rules file
    docs = _render(None, "prometheusRule.enabled=true", "prometheusRule.labels.release=kps")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load((CHART / "rules" / "flywheel.rules.yaml").read_text())
    assert rule["metadata"]["labels"]["release"] == "kps"
    # and without the rollout controller, whose metrics the alerts read, there is none
    off = _render(None, "prometheusRule.enabled=true", "rolloutController.enabled=false")
    assert not [d for d in off if d["kind"] == "PrometheusRule"]


def test_the_dashboard_configmap_holds_the_generated_dashboard_for_grafanas_sidecar() -> None:
    docs = _render(None, "dashboards.enabled=true", "dashboards.namespace=grafana")
    (board,) = [d for d in docs if d["kind"] == "ConfigMap" and "flywheel.json" in d["data"]]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["namespace"] == "grafana"
    shipped = json.loads((CHART / "dashboards" / "flywheel.json").read_text())
    assert json.loads(board["data"]["flywheel.json"]) == shipped


def test_the_controllers_servicemonitor_selects_its_service_and_metrics_port() -> None:
    docs = _render(None, "serviceMonitor.enabled=true", "rolloutController.metricsPort=9200")
    monitor = next(
        d
        for d in docs
        if d["kind"] == "ServiceMonitor" and d["metadata"]["name"].endswith("rollout-controller")
    )
    (service,) = [d for d in docs if d["kind"] == "Service"]
    controller = next(d for d in docs if d["kind"] == "Deployment")
    container = controller["spec"]["template"]["spec"]["containers"][0]
    # the ServiceMonitor finds the Service, whose metrics port reaches the container's
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= (
        controller["spec"]["template"]["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = service["spec"]["ports"]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")
    assert port["targetPort"] == container["ports"][0]["name"] == "metrics"
    assert container["ports"][0]["containerPort"] == 9200
    assert container["args"][-2:] == ["--metrics-port", "9200"]
    # and the network policy lets the monitoring namespace reach that port, nothing else
    policy = next(
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("rollout-controller")
    )
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9200, "protocol": "TCP"}]
    # and with network policies off, none keeps a Prometheus elsewhere from scraping it
    open_docs = _render(None, "serviceMonitor.enabled=true", "networkPolicy.enabled=false")
    assert not [
        d["metadata"]["name"]
        for d in open_docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("rollout-controller")
    ]


# --- the read-only web UI ------------------------------------------------------------

UI = ("ui.enabled=true", "ui.storeSecret=store-reader", "ui.port=9090")


def _ui(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The UI's objects, by kind: those named after it or labelled as its component."""
    return {
        d["kind"]: d
        for d in docs
        if d["metadata"]["name"].endswith("-ui")
        or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "ui"
    }


def test_the_ui_serves_the_releases_config_with_a_read_only_key_and_no_api_access(
    tmp_path: Path,
) -> None:
    # given the chart with the UI on, on a store with an endpoint of its own
    docs = _render(None, *UI, "storage.endpoint=minio-service.kubeflow:9000")
    ui = _ui(docs)
    assert set(ui) == {"Deployment", "Service", "ServiceAccount", "NetworkPolicy"}
    pod = ui["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # then it runs `flywheel ui` on its port, with the controller's image
    assert container["args"] == [
        "--config", "/etc/flywheel/flywheel.yaml", "ui", "--host", "0.0.0.0", "--port", "9090",
    ]  # fmt: skip
    assert container["ports"] == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]
    controller = next(
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("controller")
    )
    assert container["image"] == controller["spec"]["template"]["spec"]["containers"][0]["image"]
    # probed at /healthz, which reads nothing: a store that is down does not restart it
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    # and it loads the configuration every other Flywheel pod loads, from the same ConfigMap
    loaded = {
        name: _as_the_pod_loads_it(docs, c, volumes, tmp_path)
        for name, (c, volumes) in _flywheel_containers(docs).items()
    }
    assert loaded["ui"].to_json() == loaded["controller"].to_json()
    # with the store's keys, under the variables that configuration names, from
    # ui.storeSecret alone (never storage.existingSecret's, which writes)
    storage = loaded["ui"].storage
    assert "envFrom" not in container
    assert {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
    } == {
        storage.access_key_env: ("store-reader", "AWS_ACCESS_KEY_ID"),
        storage.secret_key_env: ("store-reader", "AWS_SECRET_ACCESS_KEY"),
    }
    assert "flywheel-s3" not in json.dumps(ui)
    # its own ServiceAccount, no token mounted, and no Role or binding names it
    account = ui["ServiceAccount"]["metadata"]["name"]
    assert pod["serviceAccountName"] == account == "flywheel-ui"
    assert pod["automountServiceAccountToken"] is False
    assert ui["ServiceAccount"]["automountServiceAccountToken"] is False
    assert not [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and any(s["name"] == account for s in d["subjects"])
    ]
    # restricted: non-root, no privilege escalation, no capabilities, a read-only root with
    # a scratch /tmp (the API server's Pod Security admission checks it too, below)
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and security["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert next(v for v in pod["volumes"] if v["name"] == tmp["name"])["emptyDir"]
    assert container["resources"]["limits"] and container["resources"]["requests"]
    # behind a ClusterIP Service whose port reaches the container's
    service = ui["Service"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [
        {"name": "http", "port": 9090, "targetPort": "http", "protocol": "TCP"}
    ]
    labels = ui["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    # which selects no other pod of the chart's
    others = [
        d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] == "Deployment" and d is not ui["Deployment"]
    ]
    assert not [o for o in others if service["selector"].items() <= o.items()]


def test_the_ui_is_off_by_default_and_leaves_nothing_when_off() -> None:
    assert _ui(_render()) == {}
    # the example that turns everything on, with the UI turned back off
    assert _ui(_render(CHART / "examples" / "pinned.yaml")) != {}
    assert _ui(_render(CHART / "examples" / "pinned.yaml", "ui.enabled=false")) == {}


@pytest.mark.parametrize(
    ("sets", "ports"),
    [
        (["storage.endpoint=minio-service.kubeflow:9000"], [9000]),
        # AWS S3, or an endpoint without a port: the scheme's
        ([], [443]),
        (["storage.endpoint=seaweedfs-s3.storage", "storage.secure=false"], [80]),
        # a Service mapping its port to another: the pods' own, as listed
        (
            ["storage.endpoint=seaweedfs-s3.storage:80", "ui.networkPolicy.storePorts={8333}"],
            [8333],
        ),
    ],
)
def test_the_ui_takes_connections_from_the_listed_namespaces_and_reaches_only_the_store(
    sets: list[str], ports: list[int]
) -> None:
    # given the UI with its ingress controller's namespace listed
    docs = _render(None, *UI, "ui.networkPolicy.ingressNamespaces={ingress-nginx}", *sets)
    policy = _ui(docs)["NetworkPolicy"]["spec"]
    labels = _ui(docs)["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    # then only that namespace reaches it, on its port
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                    }
                }
            ],
            "ports": [{"port": 9090, "protocol": "TCP"}],
        }
    ]
    # and it reaches DNS and the store's port, nothing else
    assert policy["egress"] == [
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"ports": [{"port": port, "protocol": "TCP"} for port in ports]},
    ]


def test_the_ui_takes_no_connections_unless_namespaces_are_listed() -> None:
    policy = _ui(_render(None, *UI))["NetworkPolicy"]["spec"]
    # Ingress in policyTypes with no rule: every connection refused (port-forward aside)
    assert "Ingress" in policy["policyTypes"] and "ingress" not in policy
    # egress left open on request (a mesh's sidecar), and no policy with networkPolicy off
    open_egress = _ui(_render(None, *UI, "ui.networkPolicy.restrictEgress=false"))
    assert open_egress["NetworkPolicy"]["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in open_egress["NetworkPolicy"]["spec"]
    assert "NetworkPolicy" not in _ui(_render(None, *UI, "networkPolicy.enabled=false"))


def test_the_chart_readme_is_generated_from_the_values() -> None:
    result = _run(REPO / ".venv" / "bin" / "python", "-m", "tools.chart_readme", "--check")
    assert result.returncode == 0, result.stderr


def test_the_kustomize_base_is_the_chart_rendered() -> None:
    assert manifests.main(["--check"]) == 0, "run `make manifests`"


@pytest.fixture(scope="module")
def schema_dir(kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Strict schemas from the control plane's /openapi/v2 and from every CRD."""
    out = tmp_path_factory.mktemp("schemas")
    swagger = json.loads(kube.kubectl("get", "--raw=/openapi/v2").stdout)
    kinds = {d["kind"] for v in [None, *EXAMPLES] for d in _render(v)}
    schemas.from_openapi(swagger, kinds, out)
    schemas.from_crds(kube.crd_files(schemas=True), out)
    return out


def _kubeconform(schema_dir: Path, text: str) -> dict[str, Any]:
    result = _run(
        binary("kubeconform"),
        "-strict",
        "-summary",
        "-output=json",
        f"-schema-location={schema_dir}/{schemas.LOCATION}",
        "-",
        input=text,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    report["returncode"] = result.returncode
    return report


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_kubeconform_strict_on_every_rendered_object(schema_dir: Path, values: Path | None) -> None:
    docs = _render(values)
    report = _kubeconform(schema_dir, yaml.safe_dump_all(docs))
    assert report["returncode"] == 0, report["resources"]
    assert report["summary"]["valid"] == len(docs) and report["summary"]["skipped"] == 0, report


def test_kubeconform_catches_a_field_the_schema_does_not_know(
    schema_dir: Path, tmp_path: Path
) -> None:
    sdep = _sdep(EXAMPLES[0], tmp_path)
    sdep["spec"]["predictors"][0]["trafic"] = 10
    report = _kubeconform(schema_dir, yaml.safe_dump(sdep))
    assert report["returncode"] != 0 and report["summary"]["invalid"] == 1, report


@pytest.mark.parametrize(
    "source", ["chart", *(p.name for p in OVERLAYS)], ids=lambda s: f"kubeconform-{s}"
)
def test_kubeconform_strict_on_the_overlays(schema_dir: Path, source: str, kube: Any) -> None:
    if source == "chart":
        text = (REPO / "manifests" / "base" / "flywheel.yaml").read_text()
    else:
        text = kube.kubectl("kustomize", str(REPO / "manifests" / "overlays" / source)).stdout
    report = _kubeconform(schema_dir, text)
    assert report["returncode"] == 0 and report["summary"]["skipped"] == 0, report


# --- the model's pod, a PodSpec in the SeldonDeployment CRD ---------------------------

# Pod specs a Pod would be refused for, each set in the model pod the controller renders:
# the path under predictors[0].componentSpecs[0].spec and the value set there.
WRONG_POD_SPECS = [
    pytest.param(("containers",), "x", id="containers-a-string"),
    pytest.param(("containers", 0, "image"), 1, id="image-a-number"),
    pytest.param(("containers", 0, "resources", "limits", "cpu"), [1], id="cpu-limit-a-list"),
    pytest.param(("containers", 0, "resources", "limits", "cpu"), "lots", id="cpu-not-a-quantity"),
    pytest.param(("containers", 0, "imagePullPolicy"), "Sometimes", id="pull-policy-unknown"),
    pytest.param(("containers", 0, "imagePulPolicy"), "Always", id="field-misspelt"),
    pytest.param(("containers", 0), {"image": "model:1"}, id="container-without-a-name"),
]
POD = ("spec", "predictors", 0, "componentSpecs", 0, "spec")


def _model_with(path: tuple[str | int, ...], value: Any, tmp_path: Path) -> dict[str, Any]:
    """The SeldonDeployment with `value` set at `path` in its stable predictor's pod."""
    node = sdep = _sdep(EXAMPLES[0], tmp_path)
    for key in (*POD, *path[:-1]):
        node = node[key]
    node[path[-1]] = value
    return sdep


def _server_dry_run(kube: Any, namespace: str, obj: dict[str, Any]) -> Any:
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    return kube.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(obj), check=False
    )


@pytest.mark.parametrize(("path", "value"), WRONG_POD_SPECS)
def test_kubeconform_refuses_a_model_pod_a_pod_would_not_pass(
    schema_dir: Path, path: tuple[str | int, ...], value: Any, tmp_path: Path
) -> None:
    report = _kubeconform(schema_dir, yaml.safe_dump(_model_with(path, value, tmp_path)))
    assert report["returncode"] != 0 and report["summary"]["invalid"] == 1, report
    # An unknown field is reported at its parent.
    parent = "".join(f"/{key}" for key in (*POD, *path[:-1]))
    assert f"at '{parent}" in report["resources"][0]["msg"], report


@pytest.mark.parametrize(("path", "value"), WRONG_POD_SPECS)
def test_the_api_server_refuses_a_model_pod_a_pod_would_not_pass(
    kube: Any, namespace: str, path: tuple[str | int, ...], value: Any, tmp_path: Path
) -> None:
    result = _server_dry_run(kube, namespace, _model_with(path, value, tmp_path))
    field = ".".join(POD[:2]) + "".join(
        f"[{key}]" if isinstance(key, int) else f".{key}" for key in (*POD[2:], *path)
    )
    assert result.returncode != 0 and field in result.stderr, result.stderr


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_the_api_server_keeps_the_charts_model_pod_as_rendered(
    kube: Any, namespace: str, values: Path | None, tmp_path: Path
) -> None:
    """Accepted, and neither pruned nor defaulted: the CRD knows every field the chart sets."""
    sdep = _sdep(values, tmp_path)
    result = _server_dry_run(kube, namespace, sdep)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"] == sdep["spec"]


def _workflows(docs: list[dict[str, Any]], tmp_path: Path) -> Path:
    path = tmp_path / "workflows.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d["apiVersion"].startswith("argoproj")]))
    return path


def test_argo_lint_offline_passes_the_cronworkflow(tmp_path: Path) -> None:
    path = _workflows(_render(EXAMPLES[0]), tmp_path)
    assert "CronWorkflow" in path.read_text()
    result = _run(binary("argo"), "lint", "--offline", "--output=simple", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("fan_out", [True, False])
def test_monitoring_fans_out_over_the_partitions_it_lists_then_merges_and_decides(
    fan_out: bool, tmp_path: Path
) -> None:
    # given the chart rendered with the fan-out on or off
    docs = _render(EXAMPLES[0], f"triggers.monitorFanOut={str(fan_out).lower()}")
    cron = next(d for d in docs if d["kind"] == "CronWorkflow")
    templates = {t["name"]: t for t in cron["spec"]["workflowSpec"]["templates"]}
    look = [step[0] for step in templates["look"]["steps"]]
    # then argo lints it, and the steps run in order: list, summarise each in parallel,
    # merge and decide
    result = _run(
        binary("argo"), "lint", "--offline", "--output=simple", _workflows(docs, tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if not fan_out:
        assert [s["name"] for s in look] == ["monitor", "decide"]
        return
    assert [s["name"] for s in look] == ["partitions", "summarise", "monitor", "decide"]
    assert templates["partitions"]["container"]["args"][-1] == "--list-partitions"
    summarise = look[1]
    assert summarise["withParam"] == "{{steps.partitions.outputs.result}}"
    assert summarise["arguments"]["parameters"][0]["value"] == (
        "{{item.version}}/{{item.day}}/{{item.hour}}"
    )
    assert templates["summarise"]["container"]["args"][-2:] == [
        "--partition",
        "{{inputs.parameters.partition}}",
    ]
    assert templates["look"]["parallelism"] == 4
    # and each step has the engine's resources and restricted security context
    for name in ("partitions", "summarise", "monitor"):
        container = templates[name]["container"]
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["resources"] == templates["decide"]["container"]["resources"]
    # and a /tmp of the values' size: a day's compacted log, or the join's spill, fits
    volumes = {v["name"]: v for v in cron["spec"]["workflowSpec"]["volumes"]}
    (tmp,) = [
        m for m in templates["monitor"]["container"]["volumeMounts"] if m["mountPath"] == "/tmp"
    ]
    assert volumes[tmp["name"]]["emptyDir"] == {"sizeLimit": "2Gi"}
    bigger = _render(EXAMPLES[0], "triggers.scratch=8Gi")
    cron = next(d for d in bigger if d["kind"] == "CronWorkflow")
    volumes = {v["name"]: v for v in cron["spec"]["workflowSpec"]["volumes"]}
    assert volumes[tmp["name"]]["emptyDir"] == {"sizeLimit": "8Gi"}


def test_argo_lint_offline_catches_a_broken_workflow(tmp_path: Path) -> None:
    docs = _render(EXAMPLES[0])
    cron = next(d for d in docs if d["kind"] == "CronWorkflow")
    cron["spec"]["workflowSpec"]["entrypoint"] = "no-such-template"
    result = _run(
        binary("argo"), "lint", "--offline", "--output=simple", _workflows(docs, tmp_path)
    )
    assert result.returncode != 0 and "no-such-template" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def checkov(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov's results for each render (defaults and each example) by file name: one
    checkov run for them all, as its start takes most of its time."""
    folder = tmp_path_factory.mktemp("checkov")
    for values in [None, *EXAMPLES]:
        name = values.name if values else "defaults.yaml"
        (folder / name).write_text(yaml.safe_dump_all(_render(values)))
    result = _run(binary("checkov"), "-d", folder, "--framework=kubernetes", "--output=json")
    results = json.loads(result.stdout)["results"]
    return {
        path.name: {
            kind: [c for c in results[kind] if c["file_path"] == f"/{path.name}"]
            for kind in ("passed_checks", "failed_checks", "skipped_checks")
        }
        for path in folder.iterdir()
    }


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_checkov_finds_nothing_unjustified(values: Path | None, checkov: dict[str, Any]) -> None:
    """Zero failures; each skip is an annotation in the chart with its reason."""
    report = checkov[values.name if values else "defaults.yaml"]
    assert len(report["passed_checks"]) > 100, len(report["passed_checks"])
    failed = [(c["check_id"], c["resource"]) for c in report["failed_checks"]]
    assert failed == [], failed
    for skipped in report["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_the_charts_model_pod_is_the_one_the_driver_renders(
    values: Path | None, tmp_path: Path
) -> None:
    """Without a PodTemplate (`flywheel deploy` from a laptop) the driver renders the pod
    itself: it is the chart's."""
    docs = _render(values)
    template = next(d for d in docs if d["kind"] == "PodTemplate")
    settings = _settings(docs, tmp_path)
    assert settings.serving.pod_template == template["metadata"]["name"]
    assert seldon.pod_from_template(template, settings).spec == seldon.pod(settings).spec
    assert seldon.pod_from_template(template, settings).replicas == settings.serving.replicas


# --- overlays -----------------------------------------------------------------------

PATCHABLE = ("image", "imagePullPolicy", "replicas", seldon.REPLICAS, "resources", "env")


def _differences(a: Any, b: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            yield from _differences(a.get(key), b.get(key), (*path, str(key)))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _differences(x, y, (*path, str(i)))
    elif a != b:
        yield path


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlays_patch_only_digests_replicas_traffic_policy_and_resources(
    kube: Any, overlay: Path
) -> None:
    def objects(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
        docs = _docs(kube.kubectl("kustomize", str(path)).stdout)
        return {(d["kind"], d["metadata"]["name"]): d for d in docs}

    base, patched = objects(REPO / "manifests" / "base"), objects(overlay)
    assert base.keys() == patched.keys()
    changed = set()
    for key in base:
        for path in _differences(base[key], patched[key]):
            field = next((p for p in reversed(path) if p in PATCHABLE), None)
            assert field, f"{overlay.name} changes {key} at {'/'.join(path)}"
            if field == "env":
                # The rollout policy, and the environment's own registry prefix.
                at = path[: path.index("env") + 1]
                added, kept = _at(patched[key], at), _at(base[key], at)
                assert all(
                    e in kept
                    or e["name"].startswith("FLYWHEEL_ROLLOUT__")
                    or e["name"] == "FLYWHEEL_STORAGE__URI"
                    for e in added
                ), added
            changed.add(field)
    assert "image" in changed
    images = [container["image"] for doc in patched.values() for container in _containers(doc)]
    # the controller, the model's PodTemplate, and the trigger engine's four steps
    assert len(images) == 6 and all("@sha256:" in image for image in images), images


def _at(node: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container spec in an object, wherever its kind keeps them."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers"):
                yield from value
            elif key == "container" and isinstance(value, dict):
                yield value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


# --- against the control plane ---------------------------------------------------------


def _release_objects(kube: Any, namespace: str, release: str) -> list[str]:
    kinds = "deployment,service,job,pod,configmap,serviceaccount,role,rolebinding,networkpolicy,poddisruptionbudget,cronworkflow,podtemplate,seldondeployment,servicemonitor"
    result = kube.kubectl(
        "get", kinds, "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "name"
    )
    return result.stdout.split()


def _controller(kube: Any, namespace: str, configmap: str) -> KubernetesDriver:
    """The Kubernetes driver as the chart's rollout controller runs it: its flywheel.yaml
    from the release's ConfigMap (the `rollout watch` loop itself needs the registry)."""
    config = json.loads(
        kube.kubectl("get", "configmap", configmap, "-n", namespace, "-o", "json").stdout
    )
    path = kube.work / f"{namespace}-{configmap}.yaml"
    path.write_text(config["data"]["flywheel.yaml"])
    settings = load_settings(path, env={})
    return KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))


def _images(kube: Any, namespace: str) -> set[str]:
    obj = json.loads(
        kube.kubectl(
            "get", "seldondeployment", "loan-default", "-n", namespace, "-o", "json"
        ).stdout
    )
    return {
        c["image"]
        for p in obj["spec"]["predictors"]
        for c in p["componentSpecs"][0]["spec"]["containers"]
    }


def test_install_test_upgrade_and_uninstall(kube: Any, namespace: str) -> None:
    release = "fw"
    minimal = str(CHART / "examples" / "minimal.yaml")
    kube.helm(
        "install", release, str(CHART), "-n", namespace, "-f", minimal, "--wait", "--timeout=120s"
    )
    deployment = kube.kubectl(
        "get", "deployment", f"{release}-flywheel-rollout-controller", "-n", namespace, "-o", "json"
    )
    assert json.loads(deployment.stdout)["status"]["readyReplicas"] == 1
    tested = kube.helm("test", release, "-n", namespace, "--timeout=120s")
    assert "Phase:          Succeeded" in tested.stdout, tested.stdout
    # the controller serves production on the chart's pod
    _controller(kube, namespace, f"{release}-flywheel-config").finish("v3")
    assert seldon_predictors(kube, namespace) == {"a": ("v3", 100)}

    # An upgrade whose controller can never be scheduled (more CPU than any node has)
    # times out, and --atomic puts the previous release back.
    failed = kube.helm(
        "upgrade", release, str(CHART), "-n", namespace, "-f", minimal, "--atomic",
        "--timeout=20s",
        "--set=rolloutController.resources.requests.cpu=64,rolloutController.resources.limits.cpu=64",
        check=False,
    )  # fmt: skip
    assert failed.returncode != 0 and "rolled back" in failed.stdout + failed.stderr
    assert seldon_predictors(kube, namespace) == {"a": ("v3", 100)}
    history = json.loads(kube.helm("history", release, "-n", namespace, "-o", "json").stdout)
    assert history[-1]["status"] == "deployed" and history[-1]["revision"] == 3

    # uninstalling takes the model down too: its PodTemplate owns the SeldonDeployment
    kube.helm("uninstall", release, "-n", namespace, "--wait", "--timeout=120s")
    wait_until(
        lambda: not kube.kubectl("get", "seldondeployment", "-n", namespace, "-o", "name").stdout,
        60,
        "the SeldonDeployment collected",
    )
    assert _release_objects(kube, namespace, release) == []


def _predictor(kube: Any, namespace: str, slot: str) -> dict[str, Any]:
    obj = json.loads(
        kube.kubectl(
            "get", "seldondeployment", "loan-default", "-n", namespace, "-o", "json"
        ).stdout
    )
    return next(p for p in obj["spec"]["predictors"] if p["name"] == slot)


def _slot_images(kube: Any, namespace: str) -> dict[str, str]:
    predictors = json.loads(
        kube.kubectl(
            "get", "seldondeployment", "loan-default", "-n", namespace, "-o", "json"
        ).stdout
    )["spec"]["predictors"]
    return {p["name"]: p["componentSpecs"][0]["spec"]["containers"][0]["image"] for p in predictors}


SERVING_IMAGE = "ghcr.io/flywheel-mlops/flywheel-serving@sha256:"


def test_upgrades_and_overlays_never_reset_versions_traffic_or_pods_the_controller_set(
    kube: Any, namespace: str
) -> None:
    """The chart and the overlays own the pod template; the controller owns which versions
    serve, their traffic and which slot runs which pod (server-side apply, field manager
    flywheel-rollout): a new pod reaches a slot only as a canary's."""
    minimal = str(CHART / "examples" / "minimal.yaml")
    kube.helm("install", "fw", str(CHART), "-n", namespace, "-f", minimal)
    controller = _controller(kube, namespace, "fw-flywheel-config")
    # given v2 in production in slot a
    controller.finish("v2", slot="a")
    (old,) = _slot_images(kube, namespace).values()

    def upgrade(digit: str) -> None:
        kube.helm(
            "upgrade", "fw", str(CHART), "-n", namespace, "-f", minimal,
            f"--set=images.serving.digest=sha256:{digit * 64}",
        )  # fmt: skip

    # when a release changes the serving image's digest, and the controller looks again
    upgrade("2")
    controller.finish("v2", slot="a")
    # then production keeps its version, traffic and pod, and the driver names the change
    assert seldon_predictors(kube, namespace) == {"a": ("v2", 100)}
    assert _slot_images(kube, namespace) == {"a": old}
    change = controller.pod_change("a")
    assert change is not None and change.description == f"image {old} -> {SERVING_IMAGE}{'2' * 64}"
    # when a canary of v3 goes live at 25%, it runs on the new pod in slot b
    controller.set_traffic("v2", "v3", 25, slot="a")
    assert seldon_predictors(kube, namespace) == {"a": ("v2", 75), "b": ("v3", 25)}
    assert _slot_images(kube, namespace) == {"a": old, "b": SERVING_IMAGE + "2" * 64}
    # and another digest arriving mid-canary waits: neither arm moves at the next look
    upgrade("3")
    controller.set_traffic("v2", "v3", 25, slot="a")
    assert _slot_images(kube, namespace) == {"a": old, "b": SERVING_IMAGE + "2" * 64}
    assert seldon_predictors(kube, namespace) == {"a": ("v2", 75), "b": ("v3", 25)}
    # when v3 is promoted (all traffic to its slot, then slot a retired)
    before = _predictor(kube, namespace, "b")
    controller.set_traffic("v2", "v3", 100, slot="a")
    assert seldon_predictors(kube, namespace) == {"a": ("v2", 0), "b": ("v3", 100)}
    assert _predictor(kube, namespace, "a")["replicas"] == before["replicas"]
    controller.finish("v3", slot="b")
    # then the promoted predictor's pods and replicas are unchanged, byte for byte
    after = _predictor(kube, namespace, "b")
    for field in ("componentSpecs", "replicas", "labels"):
        assert json.dumps(after[field], sort_keys=True) == json.dumps(before[field], sort_keys=True)
    assert seldon_predictors(kube, namespace) == {"b": ("v3", 100)}
    # and a helm upgrade after the promotion leaves it at 100%, on its pod
    upgrade("4")
    assert seldon_predictors(kube, namespace) == {"b": ("v3", 100)}
    assert _slot_images(kube, namespace) == {"b": SERVING_IMAGE + "2" * 64}

    # the same through the prod overlay, applied server-side as a GitOps tool would
    kube.kubectl("create", "namespace", "flywheel", check=False)
    overlay = kube.kubectl("kustomize", str(REPO / "manifests" / "overlays" / "prod")).stdout
    kube.kubectl("apply", "--server-side", "-f", "-", input=overlay)
    gitops = _controller(kube, "flywheel", "flywheel-config")
    try:
        gitops.finish("v2", slot="b")
        gitops.set_traffic("v2", "v3", 25, slot="b")
        live = _slot_images(kube, "flywheel")
        moved = overlay.replace("sha256:" + "0" * 64, "sha256:" + "9" * 64)
        kube.kubectl("apply", "--server-side", "-f", "-", input=moved)
        # during a live canary the overlay leaves the canary's model, weight and pods alone
        assert seldon_predictors(kube, "flywheel") == {"b": ("v2", 75), "a": ("v3", 25)}
        gitops.set_traffic("v2", "v3", 25, slot="b")
        assert seldon_predictors(kube, "flywheel") == {"b": ("v2", 75), "a": ("v3", 25)}
        assert _slot_images(kube, "flywheel") == live
        # after the promotion, the overlay applied again leaves the promoted version at 100%
        gitops.set_traffic("v2", "v3", 100, slot="b")
        gitops.finish("v3", slot="a")
        kube.kubectl("apply", "--server-side", "-f", "-", input=moved)
        assert seldon_predictors(kube, "flywheel") == {"a": ("v3", 100)}
        assert _slot_images(kube, "flywheel") == {"a": live["a"]}
    finally:
        kube.kubectl("delete", "-f", "-", "--wait=false", input=overlay, check=False)
        kube.kubectl("delete", "seldondeployment", "loan-default", "-n", "flywheel", check=False)


@pytest.fixture
def installed(kube: Any, namespace: str) -> Iterator[str]:
    kube.helm("install", "fw", str(CHART), "-n", namespace, "-f", str(EXAMPLES[0]))
    yield namespace
    kube.helm("uninstall", "fw", "-n", namespace, check=False)


@pytest.mark.parametrize(
    ("identity", "verb", "resource", "allowed"),
    [
        ("pipeline-runner", "get", "seldondeployments/loan-default", True),
        ("pipeline-runner", "patch", "seldondeployments/loan-default", True),
        ("pipeline-runner", "create", "seldondeployments", True),
        ("pipeline-runner", "get", "podtemplates/fw-flywheel-model", True),
        ("pipeline-runner", "patch", "podtemplates/fw-flywheel-model", False),
        ("pipeline-runner", "create", "workflowtaskresults.argoproj.io", True),
        ("pipeline-runner", "patch", "seldondeployments/another-model", False),
        ("pipeline-runner", "delete", "seldondeployments/loan-default", False),
        ("pipeline-runner", "get", "secrets/flywheel-s3", False),
        ("pipeline-runner", "list", "secrets", False),
        ("pipeline-runner", "create", "pods", False),
        ("rollout-controller", "patch", "seldondeployments/loan-default", True),
        ("rollout-controller", "get", "seldondeployments/loan-default", True),
        ("rollout-controller", "create", "seldondeployments", True),
        ("rollout-controller", "get", "podtemplates/fw-flywheel-model", True),
        ("rollout-controller", "get", "podtemplates/another-template", False),
        ("rollout-controller", "list", "podtemplates", False),
        (
            "rollout-controller",
            "update",
            "leases.coordination.k8s.io/flywheel-rollout-loan-default",
            True,
        ),
        ("rollout-controller", "update", "leases.coordination.k8s.io/kube-scheduler", False),
        (
            "pipeline-runner",
            "get",
            "leases.coordination.k8s.io/flywheel-rollout-loan-default",
            True,
        ),
        ("rollout-controller", "list", "seldondeployments", False),
        ("rollout-controller", "get", "secrets/flywheel-s3", False),
        ("rollout-controller", "create", "workflowtaskresults.argoproj.io", False),
    ],
)
def test_rbac_grants_what_is_used_and_nothing_more(
    kube: Any, installed: str, identity: str, verb: str, resource: str, allowed: bool
) -> None:
    account = f"system:serviceaccount:{installed}:fw-flywheel-{identity}"
    result = kube.kubectl(
        "auth", "can-i", verb, resource, "-n", installed, as_user=account, check=False
    )
    assert result.stdout.strip() == ("yes" if allowed else "no"), (account, verb, resource)


def test_rbac_is_confined_to_the_release_namespace(kube: Any, installed: str) -> None:
    account = f"system:serviceaccount:{installed}:fw-flywheel-rollout-controller"
    result = kube.kubectl(
        "auth", "can-i", "get", "seldondeployments/loan-default", "-n", "default",
        as_user=account, check=False,
    )  # fmt: skip
    assert result.stdout.strip() == "no"


def _kfp_review(kube: Any, namespace: str, user: str, verb: str, resource: str) -> bool:
    """The SubjectAccessReview multi-user KFP's API server sends before it acts (its
    resource.IsAuthorized): the caller as TokenReview named it, group
    pipelines.kubeflow.org, version v1beta1, the object's name. Answered by RBAC."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {
                "namespace": namespace,
                "verb": verb,
                "group": "pipelines.kubeflow.org",
                "version": "v1beta1",
                "resource": resource,
                "name": "run-20260115-030000-abcdef" if resource == "runs" else "flywheel",
            },
        },
    }
    answer = kube.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review))
    return bool(json.loads(answer.stdout)["status"].get("allowed"))


def test_the_trigger_engine_may_submit_runs_and_nothing_else(kube: Any, installed: str) -> None:
    """The engine's CronWorkflow submits through the KFP API: in multi-user mode KFP asks the
    API server whether its ServiceAccount may, in the profile namespace."""
    account = f"system:serviceaccount:{installed}:fw-flywheel-triggers"
    # what `flywheel triggers check --submit` calls: GetRun (has the last run ended?),
    # ListExperiments, CreateExperiment, CreateRun
    for verb, resource in (
        ("get", "runs"),
        ("list", "experiments"),
        ("create", "experiments"),
        ("create", "runs"),
    ):
        assert _kfp_review(kube, installed, account, verb, resource), (verb, resource)
    # and no more at KFP: no listing, deleting or retrying runs, no pipelines uploaded
    for verb, resource in (("list", "runs"), ("delete", "runs"), ("create", "pipelines")):
        assert not _kfp_review(kube, installed, account, verb, resource), (verb, resource)
    # nor anywhere but the release namespace
    assert not _kfp_review(kube, "default", account, "create", "runs")
    # and at the Kubernetes API, only Argo's executor's step results. (`kubectl auth can-i`
    # cannot ask about KFP's runs: no API serves them, so kubectl's discovery does not know
    # the group and it sends the resource "runs.pipelines.kubeflow.org" in the core group,
    # which RBAC always refuses; the reviews above ask as KFP does.)
    expected = {
        ("create", "workflowtaskresults.argoproj.io", installed): "yes",
        ("get", "secrets/flywheel-s3", installed): "no",
        ("list", "secrets", installed): "no",
        ("patch", "seldondeployments/loan-default", installed): "no",
        ("create", "seldondeployments", installed): "no",
        ("create", "workflows.argoproj.io", installed): "no",
        ("create", "pods", installed): "no",
    }
    answers = {
        (verb, resource, namespace): kube.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, as_user=account, check=False
        ).stdout.strip()
        for verb, resource, namespace in expected
    }
    assert answers == expected
    # the steps KFP runs as the pipeline runner cannot start runs themselves
    runner = f"system:serviceaccount:{installed}:fw-flywheel-pipeline-runner"
    assert not _kfp_review(kube, installed, runner, "create", "runs")


def test_the_ui_is_admitted_as_restricted_and_may_do_nothing_at_the_api(
    kube: Any, namespace: str
) -> None:
    """Installed into a namespace enforcing the restricted Pod Security Standard: its pods
    are admitted, and its ServiceAccount is bound to nothing."""
    # given the chart installed with the UI on
    kube.helm(
        "install", "fw", str(CHART), "-n", namespace, "-f", str(EXAMPLES[0]), *(f"--set={s}" for s in UI),
        "--set=ui.replicas=2", "--wait", "--timeout=120s",
    )  # fmt: skip
    try:
        # then its pods run, each admitted by Pod Security as restricted, with no token
        deployment = json.loads(
            kube.kubectl(
                "get", "deployment", "fw-flywheel-ui", "-n", namespace, "-o", "json"
            ).stdout
        )
        assert deployment["status"]["readyReplicas"] == 2
        pods = json.loads(
            kube.kubectl(
                "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=ui", "-o", "json"
            ).stdout
        )["items"]  # fmt: skip
        assert len(pods) == 2
        for pod in pods:
            assert pod["spec"]["serviceAccountName"] == "fw-flywheel-ui"
            assert pod["spec"]["automountServiceAccountToken"] is False
            assert not [v for v in pod["spec"]["volumes"] if "projected" in v], pod["spec"][
                "volumes"
            ]
            assert not [
                m
                for c in pod["spec"]["containers"]
                for m in c["volumeMounts"]
                if m["mountPath"].startswith("/var/run/secrets/kubernetes.io")
            ]
        # the same pod, asked about directly, passes restricted with no warning; without its
        # container's security context it is refused (the namespace does enforce it)
        template = deployment["spec"]["template"]
        as_pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "ui-check"},
            "spec": template["spec"],
        }
        admitted = _server_dry_run(kube, namespace, as_pod)
        assert admitted.returncode == 0 and "PodSecurity" not in admitted.stderr, admitted.stderr
        bare = json.loads(json.dumps(as_pod))
        del bare["spec"]["containers"][0]["securityContext"]
        refused = _server_dry_run(kube, namespace, bare)
        assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr
        # its Service is a ClusterIP one, with no node port
        service = json.loads(
            kube.kubectl("get", "service", "fw-flywheel-ui", "-n", namespace, "-o", "json").stdout
        )["spec"]
        assert service["type"] == "ClusterIP" and service["clusterIP"] not in ("", "None")
        assert [p.get("nodePort") for p in service["ports"]] == [None]
        # and its ServiceAccount may do at the API what any unbound account may, nothing more
        account = f"system:serviceaccount:{namespace}:fw-flywheel-ui"
        unbound = f"system:serviceaccount:{namespace}:default"
        rights = [
            kube.kubectl("auth", "can-i", "--list", "-n", namespace, as_user=user).stdout
            for user in (account, unbound)
        ]
        assert rights[0] == rights[1], rights
        for verb, resource in (
            ("get", "secrets/store-reader"),
            ("get", "configmaps/fw-flywheel-config"),
            ("list", "pods"),
            ("get", "seldondeployments/loan-default"),
        ):
            answer = kube.kubectl(
                "auth", "can-i", verb, resource, "-n", namespace, as_user=account, check=False
            )
            assert answer.stdout.strip() == "no", (verb, resource)
        bindings = json.loads(
            kube.kubectl("get", "rolebindings,clusterrolebindings", "-A", "-o", "json").stdout
        )["items"]
        assert not [
            b["metadata"]["name"]
            for b in bindings
            for subject in b.get("subjects") or []
            if subject.get("name") == "fw-flywheel-ui"
            or subject.get("name") == f"system:serviceaccounts:{namespace}"
        ]
    finally:
        kube.helm("uninstall", "fw", "-n", namespace, check=False)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlays_are_accepted_by_the_api_server(kube: Any, overlay: Path) -> None:
    kube.kubectl("create", "namespace", "flywheel", check=False)
    result = kube.kubectl("apply", "--dry-run=server", "-k", str(overlay), check=False)
    assert result.returncode == 0, result.stderr
    assert "podtemplate/flywheel-model created (server dry run)" in result.stdout
    # the SeldonDeployment is the rollout controller's, never the overlay's
    assert "seldondeployment" not in result.stdout


# --- the ServiceMonitor, through the Prometheus Operator and Prometheus ----------------

# What the ServiceMonitor scrapes in each pod: (its endpoint, the container).
SCRAPED = {"executor": ("http", seldon_operator.EXECUTOR), "model": ("metrics", "model")}
# The calls each predictor's executor records: (service, code) -> how many.
CALLS = {
    "a": {("predictions", "200"): 7, ("feedback", "200"): 4, ("status", "200"): 2},
    "b": {("predictions", "200"): 3, ("predictions", "500"): 1, ("feedback", "500"): 2},
}
# The predictions each predictor's model scores.
SCORED = {"a": 3, "b": 2}
# Two Prometheus: one honoring the ServiceMonitor's honorLabels (discovering through
# Endpoints), one overriding it (through EndpointSlices).
PROMETHEUS_KINDS: dict[str, dict[str, Any]] = {
    "honoring": {},
    "overriding": {"overrideHonorLabels": True, "serviceDiscoveryRole": "EndpointSlice"},
}


def test_the_servicemonitor_scrapes_each_predictor_pods_executor_and_model_once(
    kube: Any, two_versions: Settings
) -> None:
    """The chart's ServiceMonitor, turned into Prometheus' scrape configuration by the real
    Prometheus Operator (v0.85.0) against the real API server, run by the real Prometheus
    with Kubernetes discovery: the targets it finds, their labels, and what the rollout
    driver reads through them.

    Faked, because they cannot run here: Seldon's operator and executor. The test creates
    the Deployments and Services Seldon's operator makes of the SeldonDeployment
    (harness.seldon_operator; the controller-manager makes the pods, the Endpoints and
    EndpointSlices, and kwok runs the pods); each executor is an exporter of its
    histogram into which the test records calls. The models are real seldon-core
    microservices with the environment Seldon's operator gives them. kwok's pod IPs go
    nowhere: discovery and relabeling are the operator's and Prometheus' own, and only
    then is each scrape sent to the loopback stand-in (harness.prometheus_operator).
    Both ways a Prometheus may treat the executor's `service` label are run: honoring the
    ServiceMonitor's honorLabels, and overriding it (overrideHonorLabels).
    """
    settings = two_versions
    namespace = settings.serving.namespace
    # given a canary at 50%, made into pods and Services as Seldon's operator makes them
    sdep, made, pods = _made_by_seldons_operator(kube, settings)
    # and the chart's ServiceMonitor, scraping every second
    rendered = kube.helm(
        "template", "fw", str(CHART), "-n", namespace,
        "--set=serviceMonitor.enabled=true", "--set=serviceMonitor.interval=1s",
    ).stdout  # fmt: skip
    monitor = next(
        d
        for d in _docs(rendered)
        if d["kind"] == "ServiceMonitor" and d["metadata"]["name"] == "fw-flywheel"
    )
    kube.kubectl("apply", "-f", "-", input=json.dumps(monitor))
    # when the Prometheus Operator configures the two Prometheus from it
    with prometheus_operator(kube, namespace) as operator:
        for name, spec in PROMETHEUS_KINDS.items():
            prometheus_object = {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "Prometheus",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"serviceMonitorSelector": {}, **spec},
            }
            kube.kubectl("apply", "-f", "-", input=json.dumps(prometheus_object))
        configs = {
            name: generated_config(kube, namespace, name, operator, jobs=len(SCRAPED))
            for name in PROMETHEUS_KINDS
        }
    assert {
        name: [j["honor_labels"] for j in c["scrape_configs"] if j["job_name"].endswith("/0")]
        for name, c in configs.items()
    } == {"honoring": [True], "overriding": [False]}
    with contextlib.ExitStack() as stack:
        addresses = _stand_ins(stack, settings, sdep, made, pods)
        for name, config in configs.items():
            # and each runs it, reading the calls the stand-ins took
            since = time.time()
            with prometheus_configured(
                runnable(config, str(kube.kubeconfig), addresses), scrape_seconds=1.0
            ) as prom:
                wait_until(
                    lambda: (
                        len(prom.targets()) >= len(SCRAPED) * len(pods)
                        and all(t["health"] != "unknown" for t in prom.targets())
                    ),
                    60,
                    f"{name}: the targets discovered and scraped once",
                )
                targets = prom.targets()
                prom.scraped_after(time.time())
                executor_series = [
                    s["metric"]
                    for s in prom.query(
                        "seldon_api_executor_server_requests_seconds_count"
                        f'{{namespace="{namespace}"}}'
                    )
                ]
                driver = KubernetesDriver(
                    settings, api_client=load_client(str(kube.kubeconfig)), prometheus_url=prom.url
                )
                stable, canary = driver.measure(since)
            # then each pod is scraped once at its executor and once at its model,
            # named by namespace, Service, pod and container
            assert [t["health"] for t in targets] == ["up"] * len(targets), (name, targets)
            assert sorted(
                (
                    t["labels"]["namespace"],
                    t["labels"]["service"],
                    t["labels"]["pod"],
                    t["labels"]["container"],
                    t["labels"]["endpoint"],
                    t["scrapeUrl"].rsplit("/", 1)[1],
                )
                for t in targets
            ) == sorted(
                (
                    namespace,
                    f"loan-default-{pod['metadata']['labels']['version']}",
                    pod["metadata"]["name"],
                    container,
                    endpoint,
                    "prometheus",
                )
                for pod in pods
                for endpoint, container in SCRAPED.values()
            ), name
            # found as the pods of the SeldonDeployment's predictor Services
            assert {
                (
                    t["discoveredLabels"]["__meta_kubernetes_namespace"],
                    t["discoveredLabels"]["__meta_kubernetes_service_label_seldon_deployment_id"],
                    t["discoveredLabels"]["__meta_kubernetes_pod_label_version"],
                )
                for t in targets
            } == {(namespace, "loan-default", "a"), (namespace, "loan-default", "b")}
            # and the executor's series keep its own `service` label, whatever the Prometheus
            assert {
                (m["predictor_name"], m["service"], m["code"], m["container"])  # type: ignore[index]
                for m in executor_series
            } == {
                (predictor, service, code, seldon_operator.EXECUTOR)
                for predictor, calls in CALLS.items()
                for service, code in calls
            }, name
            assert not any("exported_service" in m for m in executor_series), name
            # and the driver reads each predictor's predictions and scores, nothing else
            assert (stable.requests, stable.errors, sum(stable.scores)) == (7, 0, 3), name
            assert (canary.requests, canary.errors, sum(canary.scores)) == (4, 1, 2), name


def _made_by_seldons_operator(
    kube: Any, settings: Settings
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The driver's canary at 50%; the objects Seldon's operator makes of it, applied;
    and their pods once they run behind their Services."""
    namespace = settings.serving.namespace
    # Seldon's operator gives the executor's container no securityContext: the namespace's
    # restricted Pod Security Standard would refuse its pods.
    kube.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline",
        "--overwrite",
    )  # fmt: skip
    driver = KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))
    driver.set_traffic("v1", "v2", 50)
    sdep = driver.get()
    assert sdep is not None
    made = seldon_operator.objects(sdep)
    items = {"apiVersion": "v1", "kind": "List", "items": made}
    kube.kubectl("apply", "-f", "-", input=json.dumps(items))
    count = sum(p["replicas"] for p in sdep["spec"]["predictors"])
    found: list[dict[str, Any]] = []

    def running() -> bool:
        pods = json.loads(
            kube.kubectl(
                "get", "pods", "-n", namespace, "-l", "seldon-deployment-id", "-o", "json"
            ).stdout
        )["items"]
        found[:] = [p for p in pods if p["status"].get("phase") == "Running"]
        endpoints = json.loads(
            kube.kubectl("get", "endpoints", "-n", namespace, "-o", "json").stdout
        )["items"]
        backing = [
            a for e in endpoints for subset in e.get("subsets") or [] for a in subset["addresses"]
        ]
        # each pod backs its predictor's Service and its model's
        return len(found) == count and len(backing) == 2 * count

    wait_until(running, 90, "the predictors' pods running behind their Services")
    return sdep, made, found


def _stand_ins(
    stack: contextlib.ExitStack,
    settings: Settings,
    sdep: dict[str, Any],
    made: list[dict[str, Any]],
    pods: list[dict[str, Any]],
) -> dict[str, str]:
    """Each predictor's executor (an exporter, with CALLS recorded) and model (seldon-core,
    with the environment of its Deployment, SCORED predictions scored), on loopback; and
    where each pod's executor and model metrics ports are to be scraped."""
    deployments = {d["metadata"]["labels"]["version"]: d for d in made if d["kind"] == "Deployment"}
    rows = json.loads(
        newest_batch(Stores(settings).source)[list(settings.features.columns)]
        .head(5)
        .to_json(orient="records")
    )
    executors, models = {}, {}
    # Predictors are slots: stable (v1) in a, the canary (v2) in b.
    for predictor, version in (("a", "v1"), ("b", "v2")):
        executors[predictor] = stack.enter_context(executor_exporter(sdep["metadata"]["name"]))
        for (service, code), count in CALLS[predictor].items():
            method = "get" if service == "status" else "post"
            for _ in range(count):
                executors[predictor].requests.observe(predictor, service, method, code, 0.02)
        models[predictor] = stack.enter_context(
            seldon_microservice(
                {p["name"]: p["value"] for p in seldon.parameters(settings, version)},
                env=seldon_operator.model_env(deployments[predictor]),
            )
        )
        for row in rows[: SCORED[predictor]]:
            request = urllib.request.Request(
                f"http://{models[predictor].http}/api/v1.0/predictions",
                data=json.dumps({"jsonData": [row]}).encode(),
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=10).close()
    addresses = {}
    for pod in pods:
        predictor, ip = pod["metadata"]["labels"]["version"], pod["status"]["podIP"]
        addresses[f"{ip}:{seldon_operator.EXECUTOR_HTTP}"] = executors[predictor].address
        addresses[f"{ip}:{seldon_operator.METRICS_PORT}"] = models[predictor].metrics
    return addresses
