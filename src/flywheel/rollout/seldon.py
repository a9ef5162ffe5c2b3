"""SeldonDeployment (machinelearning.seldon.io/v1) for a model: stable and canary predictors.

The rollout controller owns the SeldonDeployment: it renders the whole object and
applies it server-side as its own field manager. What the model's pod looks like
(image digest, resources, replicas) belongs to the chart or a Kustomize overlay,
in a PodTemplate (`serving.pod_template`) the controller reads at every apply;
without one, the pod is rendered from the configuration, as the chart's would be.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from flywheel.config import Settings
from flywheel.rollout.slots import other_slot
from flywheel.serving.workers import WORKERS_ENV
from flywheel.storage import S3_SECRET_KEYS

API_VERSION = "machinelearning.seldon.io/v1"
KIND = "SeldonDeployment"
CONTAINER = "model"
# The class the seldon-core wrapper serves, in every serving path.
MODEL_CLASS = "flywheel.serving.model.FlywheelModel"
# Environment of every serving worker. Several gunicorn workers each running
# OpenMP with a thread per core (scikit-learn's tree models do) oversubscribe the
# CPUs and spin-wait: with 2 workers on 2 cores throughput fell from ~80 to ~2
# requests per second. Workers are the parallelism; each scores single-threaded.
SERVING_ENV = {"OMP_NUM_THREADS": "1", "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false"}
HTTP_PORT, GRPC_PORT, METRICS_PORT = 9000, 9500, 6000


def deployment_name(settings: Settings) -> str:
    """The SeldonDeployment's name."""
    return settings.serving.deployment or settings.model_name


def image_reference(settings: Settings) -> str:
    """The serving image, by digest (repository@sha256:...) when one is configured."""
    image, digest = settings.serving.image, settings.serving.image_digest
    if not digest:
        return image
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return f"{repository}@{digest}"


def parameters(settings: Settings, version: str) -> list[dict[str, str]]:
    """The model class's arguments, as the wrapper's --parameters (and SeldonDeployment) take them."""
    s = settings
    values = {
        "model_name": s.model_name,
        "model_version": version,
        "store_uri": s.storage.uri,
        "store_endpoint": s.storage.endpoint or "",
        "store_secure": str(s.storage.secure).lower(),
        "log_predictions": str(s.serving.log_predictions).lower(),
        "max_rows": str(s.serving.max_rows),
        "max_body_bytes": str(s.serving.max_body_bytes),
        "log_max_bytes": str(s.serving.log_max_bytes),
        "log_sample": str(s.monitoring.log_sample),
    }
    return [{"name": k, "type": "STRING", "value": v} for k, v in values.items()]


def _probe(path: str, initial: int, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": initial,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


# The PodTemplate annotation with the predictors' replica count (a PodTemplate has none).
REPLICAS = "flywheel.io/replicas"


@dataclass(frozen=True)
class Pod:
    """What every predictor's pod is: its spec and how many replicas of it."""

    spec: dict[str, Any]
    replicas: int
    # The PodTemplate it came from: the SeldonDeployment's owner, so uninstalling
    # the chart takes the model down with it.
    owner: dict[str, Any] | None = None


def pod_from_template(template: dict[str, Any], settings: Settings) -> Pod:
    """The pod a PodTemplate (as the API returns it) describes."""
    annotations = template.get("metadata", {}).get("annotations") or {}
    name = template.get("metadata", {}).get("name")
    try:
        replicas = int(annotations.get(REPLICAS, settings.serving.replicas))
    except ValueError:
        raise ValueError(
            f"PodTemplate {name}: annotation {REPLICAS} is {annotations[REPLICAS]!r}, not a number"
        ) from None
    spec = template.get("template", {}).get("spec")
    if not spec:
        raise ValueError(f"PodTemplate {name} has no template.spec")
    uid = template.get("metadata", {}).get("uid")
    owner = {"apiVersion": "v1", "kind": "PodTemplate", "name": name, "uid": uid} if uid else None
    return Pod(spec=spec, replicas=replicas, owner=owner)


def pod(settings: Settings) -> Pod:
    """The model's pod rendered from the configuration (the chart's PodTemplate holds the same)."""
    s = settings.serving
    env = [
        *({"name": k, "value": v} for k, v in SERVING_ENV.items()),
        {"name": WORKERS_ENV, "value": str(s.workers)},
        *(
            {
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": settings.pipeline.s3_secret, "key": key}},
            }
            for key, var in S3_SECRET_KEYS.items()
        ),
    ]
    container = {
        "name": CONTAINER,
        "image": image_reference(settings),
        # By digest the image never changes; by tag it may (the chart's rule too).
        "imagePullPolicy": "IfNotPresent" if s.image_digest else "Always",
        "env": env,
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": {
            "requests": {"cpu": s.resources.cpu_request, "memory": s.resources.memory_request},
            "limits": {"cpu": s.resources.cpu_limit, "memory": s.resources.memory_limit},
        },
        # /health/status calls the model: ready only once the version has loaded.
        "readinessProbe": _probe("/health/status", 10, 5),
        "livenessProbe": _probe("/health/ping", 30, 10),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return Pod(
        spec={
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "automountServiceAccountToken": False,
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        },
        replicas=s.replicas,
    )


@dataclass(frozen=True)
class Arm:
    """One predictor wanted: the slot it runs in, the version it serves, its traffic."""

    slot: str
    version: str
    traffic: int


def arms(stable: str, canary: str | None, canary_weight: int, slot: str = "a") -> tuple[Arm, ...]:
    """Stable in `slot` alone, or with the canary in the other slot sharing traffic."""
    if canary is None:
        return (Arm(slot, stable, 100),)
    return (Arm(slot, stable, 100 - canary_weight), Arm(other_slot(slot), canary, canary_weight))


VERSION_LABEL = "flywheel.io/model-version"


def pod_hash_key(slot: str) -> str:
    """The SeldonDeployment annotation holding the hash of the pod a slot was rendered on."""
    return f"flywheel.io/pod-{slot}"


# The SeldonDeployment annotation naming the pod (its hash) whose canary was rolled back.
REFUSED_POD = "flywheel.io/refused-pod"


def pod_hash(spec: dict[str, Any]) -> str:
    """A short hash of a pod spec, to tell whether the chart's pod changed since a slot began."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _kept(arm: Arm, deployed: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The arm's predictor as deployed, when it goes on serving the same version there."""
    live = deployed.get(arm.slot)
    if live is not None and (live.get("labels") or {}).get(VERSION_LABEL) == arm.version:
        return live
    return None


def predictor(
    settings: Settings,
    arm: Arm,
    model_pod: Pod | None = None,
    kept: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One predictor: `arm.version` with `arm.traffic` percent of requests, on the pod it
    runs already (`kept`, as deployed: its pods never restart for a traffic change or a
    promotion) or on `model_pod` (or the configured one) for a slot that is new or changes
    version."""
    model_pod = model_pod or pod(settings)
    if kept is not None:
        components = copy.deepcopy(kept["componentSpecs"])
    else:
        components = [{"spec": copy.deepcopy(model_pod.spec)}]
    return {
        "name": arm.slot,
        "replicas": model_pod.replicas,
        "traffic": arm.traffic,
        "labels": {"version": arm.slot, VERSION_LABEL: arm.version},
        "componentSpecs": components,
        "graph": {
            "name": CONTAINER,
            "type": "MODEL",
            "endpoint": {"type": "REST"},
            "parameters": parameters(settings, arm.version),
        },
    }


def live_predictors(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A deployed SeldonDeployment's predictors by name."""
    return {p["name"]: p for p in ((obj or {}).get("spec") or {}).get("predictors") or []}


def render(
    settings: Settings,
    wanted: tuple[Arm, ...],
    model_pod: Pod | None = None,
    live: dict[str, Any] | None = None,
    refused_pod: str | None = None,
) -> dict[str, Any]:
    """The whole SeldonDeployment serving `wanted`, keeping the pods of the `live` one's
    predictors that go on serving their version.

    A new predictor runs `model_pod`, unless that is the pod `refused_pod` names (its
    canary was rolled back): then it runs the pod a kept predictor runs, so a refused
    pod reaches no slot, not even with another model version, until the chart's pod
    changes again.
    """
    if not all(0 <= arm.traffic <= 100 for arm in wanted):
        raise ValueError(f"traffic must be within 0..100, got {[a.traffic for a in wanted]}")
    deployed = live_predictors(live)
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    name = deployment_name(settings)
    template = model_pod or pod(settings)
    kept = {arm.slot: k for arm in wanted if (k := _kept(arm, deployed)) is not None}
    hashes = {
        pod_hash_key(slot): annotations.get(pod_hash_key(slot))
        or pod_hash(k["componentSpecs"][0]["spec"])
        for slot, k in kept.items()
    }
    fresh = pod_hash(template.spec)
    if refused_pod is not None and fresh == refused_pod and kept:
        slot, serving = next(iter(kept.items()))
        spec = copy.deepcopy(serving["componentSpecs"][0]["spec"])
        template = Pod(spec=spec, replicas=template.replicas, owner=template.owner)
        fresh = hashes[pod_hash_key(slot)]
    for arm in wanted:
        # A kept predictor runs the pod it began on; a new one the pod rendered now.
        hashes.setdefault(pod_hash_key(arm.slot), fresh)
    if refused_pod is not None:
        hashes[REFUSED_POD] = refused_pod
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": settings.serving.namespace,
        "labels": {
            "app.kubernetes.io/name": "flywheel",
            "app.kubernetes.io/component": "model",
            "app.kubernetes.io/instance": name,
            "flywheel.io/model": settings.model_name,
        },
        "annotations": hashes,
    }
    if template.owner is not None:
        metadata["ownerReferences"] = [template.owner]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "name": name,
            "protocol": "seldon",
            "predictors": [
                predictor(settings, arm, template, kept.get(arm.slot)) for arm in wanted
            ],
        },
    }


def admission_errors(obj: dict[str, Any]) -> list[str]:
    """What Seldon Core's validating webhook (1.17) would refuse in this SeldonDeployment.

    The same rules as its `ValidateSeldonDeployment` for what Flywheel writes: at
    least one predictor, unique predictor names, traffic that sums to 100 across
    several predictors (or is 100 or unset for one), at most one shadow, and a
    container for every graph node that has no prepackaged implementation.
    """
    predictors = obj.get("spec", {}).get("predictors") or []
    if not predictors:
        return ["spec.predictors: there must be at least one predictor"]
    errors = []
    names = [p.get("name") for p in predictors]
    errors += [
        f"spec.predictors: predictor name {n!r} is used twice"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    shadows = [p for p in predictors if p.get("shadow")]
    if len(shadows) > 1:
        errors.append("spec.predictors: more than one shadow predictor")
    if len(shadows) == len(predictors):
        errors.append("spec.predictors: a shadow cannot be the only predictor")
    traffic = sum(int(p.get("traffic", 0)) for p in predictors if not p.get("shadow"))
    live = len(predictors) - len(shadows)
    if live > 1 and traffic != 100:
        errors.append(f"spec.predictors: traffic must sum to 100, not {traffic}")
    if live == 1 and 0 < traffic < 100:
        errors.append(f"spec.predictors: a single predictor's traffic must be 100, not {traffic}")
    for p in predictors:
        containers = {
            c.get("name")
            for spec in p.get("componentSpecs") or []
            for c in (spec.get("spec") or {}).get("containers") or []
        }
        nodes = [p.get("graph") or {}]
        while nodes:
            node = nodes.pop()
            if node.get("implementation") in (None, "", "UNKNOWN_IMPLEMENTATION") and (
                node.get("name") not in containers
            ):
                errors.append(
                    f"spec.predictors[{p.get('name')}].graph: node {node.get('name')!r} has no "
                    f"container of that name (containers: {', '.join(sorted(map(str, containers))) or 'none'})"
                )
            nodes.extend(node.get("children") or [])
    return errors
