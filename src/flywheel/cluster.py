"""Settings that only matter on a Kubeflow Pipelines cluster, kept in this one place.

The components name the image CI builds; `flywheel submit --image` swaps in a
digest. Components that reach the object store get its keys from a Secret
through kfp-kubernetes, never from the pipeline's parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

IMAGE_REPOSITORY = "ghcr.io/flywheel-mlops"
COMPONENT_IMAGE = f"{IMAGE_REPOSITORY}/flywheel-components:latest"
SERVING_IMAGE = f"{IMAGE_REPOSITORY}/flywheel-serving:latest"

# Environment of every serving worker. Several gunicorn workers each running
# OpenMP with a thread per core (scikit-learn's tree models do) oversubscribe the
# CPUs and spin-wait: with 2 workers on 2 cores throughput fell from ~80 to ~2
# requests per second. Workers are the parallelism; each scores single-threaded.
SERVING_ENV = {"OMP_NUM_THREADS": "1", "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false"}

# Keys of the Secret named by `pipeline.s3_secret`, and the variables they become.
S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}


def use_store_credentials(task: Any, secret_name: Any) -> Any:
    """Give a pipeline task the object store's keys from a Kubernetes Secret."""
    from kfp import kubernetes

    return kubernetes.use_secret_as_env(
        task, secret_name=secret_name, secret_key_to_env=S3_SECRET_KEYS
    )


def executors(package: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The container specs of a compiled pipeline's executors."""
    deployment = package.get("deploymentSpec", {}).get("executors", {})
    return [spec["container"] for spec in deployment.values() if "container" in spec]


def customise(
    package: Mapping[str, Any],
    *,
    image: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A copy of a compiled pipeline with another image and extra environment variables."""
    out = copy.deepcopy(dict(package))
    for container in executors(out):
        if image:
            container["image"] = image
        if env:
            kept = [e for e in container.get("env", []) if e["name"] not in env]
            container["env"] = kept + [{"name": k, "value": v} for k, v in sorted(env.items())]
    return out
