"""The rollout lock on a cluster: a coordination.k8s.io Lease, as Kubernetes controllers hold one.

The Lease `flywheel-rollout-<model>` in the serving namespace names its holder
(`holderIdentity`, the pod's host name plus a token) and how long a renewal
lasts (`leaseDurationSeconds`). The holder renews `renewTime` every third of
that. Every write carries the resourceVersion it read, so when two controllers
try to take the same Lease the API server lets only one of them through.
`kubectl get lease` shows who is acting on a rollout.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from flywheel.config import Settings
from flywheel.rollout.kubernetes import load_client
from flywheel.rollout.lock import LOCK_SECONDS, Holding, Lock
from flywheel.rollout.state import RolloutError


def lease_name(model_name: str) -> str:
    """The Lease that guards a model's rollout."""
    return f"flywheel-rollout-{model_name}"


def micro_time(epoch: float) -> str:
    """A Lease's MicroTime: RFC 3339 with exactly six fractional digits, which the API
    server requires (Python's isoformat drops them when they are all zero)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubernetesLease(Lock):
    """A model's rollout lock as a Lease in the serving namespace."""

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        api_client: Any = None,
        seconds: float = LOCK_SECONDS,
        **options: Any,
    ) -> None:
        from kubernetes import client

        super().__init__(f"Lease {namespace}/{name}", seconds=seconds, **options)
        self.namespace = namespace
        self.lease = name
        self.api = client.CoordinationV1Api(api_client or load_client())

    @classmethod
    def for_settings(cls, settings: Settings, **options: Any) -> KubernetesLease:
        """The Lease of the configured model's rollout."""
        return cls(settings.serving.namespace, lease_name(settings.model_name), **options)

    def _read(self) -> tuple[Holding | None, str | None]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            lease = self.api.read_namespaced_lease(self.lease, self.namespace)
        except HTTPError as error:
            raise self._unreachable(error) from None
        except ApiException as error:
            if error.status == 404:
                return None, None
            raise RolloutError(f"cannot read {self.name}: {error.reason}") from None
        spec = lease.spec

        def epoch(value: datetime | None) -> float:
            return value.timestamp() if value is not None else 0.0

        holding = Holding(
            holder=spec.holder_identity or "",
            renewed=epoch(spec.renew_time),
            seconds=float(spec.lease_duration_seconds or 0),
            acquired=epoch(spec.acquire_time),
            transitions=spec.lease_transitions or 0,
        )
        return holding, str(lease.metadata.resource_version)

    def _write(self, holding: Holding, version: str | None) -> bool:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        spec: dict[str, Any] = {
            "holderIdentity": holding.holder or None,
            # A whole number of seconds, at least one, as the API requires.
            "leaseDurationSeconds": max(1, math.ceil(holding.seconds)),
            "renewTime": micro_time(holding.renewed),
            "leaseTransitions": holding.transitions,
        }
        if holding.acquired:
            spec["acquireTime"] = micro_time(holding.acquired)
        metadata: dict[str, Any] = {
            "name": self.lease,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/managed-by": "flywheel"},
        }
        if version is not None:
            metadata["resourceVersion"] = version
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }
        try:
            if version is None:
                self.api.create_namespaced_lease(self.namespace, body)
            else:
                self.api.replace_namespaced_lease(self.lease, self.namespace, body)
        except HTTPError as error:
            raise self._unreachable(error) from None
        except ApiException as error:
            if error.status == 409:  # created or renewed by another controller since the read
                return False
            raise RolloutError(f"the API server refused {self.name}: {error.reason}") from None
        return True

    def _unreachable(self, error: Exception) -> RolloutError:
        host = self.api.api_client.configuration.host
        return RolloutError(f"cannot reach the API server at {host}: {type(error).__name__}")
