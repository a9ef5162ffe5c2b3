"""The model deployed on the test control plane: settings that serve it in a namespace through
the Kubernetes rollout driver, and its SeldonDeployment's predictors as kubectl sees them."""

from __future__ import annotations

import json
from typing import Any

from flywheel.config import RolloutSettings, Settings


def on_cluster(settings: Settings, namespace: str, **rollout: Any) -> Settings:
    """The settings with serving in `namespace` and the Kubernetes rollout driver, whose
    Prometheus (harness.servers.prometheus) scrapes every second unless `rollout` says."""
    return settings.model_copy(
        update={
            "serving": settings.serving.model_copy(update={"namespace": namespace}),
            # Validated, not copied: a step given as a number becomes a TrafficStep.
            "rollout": RolloutSettings.model_validate_json(
                json.dumps(
                    {
                        **settings.rollout.model_dump(mode="json"),
                        "driver": "kubernetes",
                        "scrape_interval_seconds": 1.0,
                        **rollout,
                    }
                )
            ),
        }
    )


def seldon_predictors(kube: Any, namespace: str, name: str = "loan-default") -> dict[str, Any]:
    """What kubectl (not the driver's own client) sees: predictor -> (version, traffic)."""
    obj = json.loads(
        kube.kubectl("get", "seldondeployment", name, "-n", namespace, "-o", "json").stdout
    )
    return {
        p["name"]: (p["labels"]["flywheel.io/model-version"], p.get("traffic", 0))
        for p in obj["spec"]["predictors"]
    }
