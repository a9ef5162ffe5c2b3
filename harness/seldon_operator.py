"""What Seldon's operator (seldon-core v1.17.1) makes of a SeldonDeployment, for the tests:
the operator is not on the Go module proxy, so it cannot run here.

With the executor in the model's pod (Seldon's default), it makes for each predictor
(operator/controllers/seldondeployment_controller.go and seldondeployment_engine.go):

- a Deployment `<deployment>-<predictor>-0-<containers>` whose pod is the predictor's
  componentSpec after Seldon's defaulting webhook (a `metrics` port on the model's
  container, 6000 unless it has one) and the operator (the model's environment, and
  the executor's container `seldon-container-engine`: http and metrics on 8000, grpc
  on 5001), labelled with the SeldonDeployment, the predictor's labels and its
  Services' selectors;
- the predictor's Service `<deployment>-<predictor>`: the executor's http and grpc
  ports, labelled seldon-app, seldon-deployment-id and managed-by;
- the model container's Service `<deployment>-<predictor>-<container>`: the model's
  own http and grpc ports, labelled also seldon-app-svc-<container> and seldon.io/model.

Only what service discovery reads is rendered: names, labels, selectors, ports,
probes and the model's Seldon environment. Names longer than 63 characters, which
the operator hashes, are not handled.
"""

from __future__ import annotations

import copy
import json
from typing import Any

EXECUTOR = "seldon-container-engine"
EXECUTOR_IMAGE = "docker.io/seldonio/seldon-core-executor:1.17.1"
EXECUTOR_HTTP, EXECUTOR_GRPC = 8000, 5001
METRICS_PORT = 6000
PROMETHEUS_PATH = "/prometheus"
MANAGED_BY = {"app.kubernetes.io/managed-by": "seldon-core"}


def objects(sdep: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployments and Services the operator makes of `sdep`, one set per predictor."""
    out: list[dict[str, Any]] = []
    for predictor in sdep["spec"]["predictors"]:
        out += _predictor(sdep, predictor)
    return out


def model_env(deployment: dict[str, Any]) -> dict[str, str]:
    """The Seldon environment of a Deployment's model container (its literal values)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _predictor(sdep: dict[str, Any], predictor: dict[str, Any]) -> list[dict[str, Any]]:
    name, namespace = sdep["metadata"]["name"], sdep["metadata"]["namespace"]
    service = f"{name}-{predictor['name']}"
    pod = copy.deepcopy(predictor["componentSpecs"][0]["spec"])
    graph = predictor["graph"]
    model = next(c for c in pod["containers"] if c["name"] == graph["name"])
    container_service = f"{service}-{model['name']}"
    ports = {p["name"]: p["containerPort"] for p in model.get("ports", [])}
    if "metrics" not in ports:  # the defaulting webhook's
        model.setdefault("ports", []).append(
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}
        )
        ports["metrics"] = METRICS_PORT
    model.setdefault("env", []).extend(
        {"name": k, "value": v}
        for k, v in {
            "PREDICTIVE_UNIT_SERVICE_PORT": str(ports["http"]),
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(ports["http"]),
            "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(ports["grpc"]),
            "PREDICTIVE_UNIT_PARAMETERS": json.dumps(graph.get("parameters", [])),
            "PREDICTIVE_UNIT_ID": model["name"],
            "PREDICTIVE_UNIT_IMAGE": model.get("image", ""),
            "PREDICTOR_ID": predictor["name"],
            "PREDICTOR_LABELS": json.dumps(predictor.get("labels", {})),
            "SELDON_DEPLOYMENT_ID": name,
            "SELDON_EXECUTOR_ENABLED": "true",
            "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(ports["metrics"]),
            "PREDICTIVE_UNIT_METRICS_ENDPOINT": PROMETHEUS_PATH,
        }.items()
    )
    app = f"{service}-0-{'-'.join(c['name'] for c in pod['containers'])}"
    pod["containers"].append(_executor(name, namespace, predictor["name"]))
    selector = {
        "seldon-deployment-id": name,
        f"seldon-app-svc-{model['name']}": container_service,
        "seldon-app": service,
    }
    labels = {
        **selector,
        "app": app,
        "fluentd": "true",
        **predictor.get("labels", {}),
        **({"seldon.io/model": "true"} if graph.get("type") == "MODEL" else {}),
        **MANAGED_BY,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": app,
            "namespace": namespace,
            "labels": {**labels, "seldon-deployment-contains-svcorch": "true"},
        },
        "spec": {
            "replicas": predictor.get("replicas", 1),
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/path": PROMETHEUS_PATH,
                        "prometheus.io/scrape": "true",
                    },
                },
                "spec": pod,
            },
        },
    }

    def ports_of(http: int, grpc: int) -> list[dict[str, Any]]:
        return [
            {"name": "http", "port": http, "targetPort": http, "protocol": "TCP"},
            {"name": "grpc", "port": grpc, "targetPort": grpc, "protocol": "TCP"},
        ]

    predictor_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service,
            "namespace": namespace,
            "labels": {"seldon-app": service, "seldon-deployment-id": name, **MANAGED_BY},
        },
        "spec": {
            "selector": {"seldon-app": service},
            "ports": ports_of(EXECUTOR_HTTP, EXECUTOR_GRPC),
        },
    }
    model_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": container_service,
            "namespace": namespace,
            "labels": {
                f"seldon-app-svc-{model['name']}": container_service,
                "seldon-deployment-id": name,
                "seldon-app": service,
                **({"seldon.io/model": "true"} if graph.get("type") == "MODEL" else {}),
                **MANAGED_BY,
            },
        },
        "spec": {
            "selector": {f"seldon-app-svc-{model['name']}": container_service},
            "ports": ports_of(ports["http"], ports["grpc"]),
        },
    }
    return [deployment, predictor_service, model_service]


def _executor(deployment: str, namespace: str, predictor: str) -> dict[str, Any]:
    """The executor's container as createExecutorContainer makes it (no securityContext:
    the operator sets none)."""

    def probe(path: str) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": EXECUTOR_HTTP, "scheme": "HTTP"},
            "initialDelaySeconds": 20,
            "periodSeconds": 5,
            "failureThreshold": 3,
            "successThreshold": 1,
            "timeoutSeconds": 60,
        }

    return {
        "name": EXECUTOR,
        "image": EXECUTOR_IMAGE,
        "args": [
            *("--sdep", deployment, "--namespace", namespace, "--predictor", predictor),
            *("--http_port", str(EXECUTOR_HTTP), "--grpc_port", str(EXECUTOR_GRPC)),
            *("--protocol", "seldon", "--transport", "rest", "--server_type", "rpc"),
            *("--prometheus_path", PROMETHEUS_PATH),
        ],
        "ports": [
            {"name": "http", "containerPort": EXECUTOR_HTTP, "protocol": "TCP"},
            {"name": "metrics", "containerPort": EXECUTOR_HTTP, "protocol": "TCP"},
            {"name": "grpc", "containerPort": EXECUTOR_GRPC, "protocol": "TCP"},
        ],
        "readinessProbe": probe("/ready"),
        "livenessProbe": probe("/live"),
    }
