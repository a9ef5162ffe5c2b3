"""The rollout Lease without a cluster: its name, its times, and an API server that cannot be reached.

The Lease against a real kube-apiserver is tests/integration/test_lease.py.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from flywheel.config import Settings
from flywheel.rollout.lease import KubernetesLease, lease_name, micro_time
from flywheel.rollout.state import RolloutError


def test_times_always_carry_six_fractional_digits() -> None:
    # the API server refuses a MicroTime without them, and isoformat() drops zeros
    assert micro_time(1_700_000_000.0) == "2023-11-14T22:13:20.000000Z"
    assert micro_time(1_700_000_000.25) == "2023-11-14T22:13:20.250000Z"


def test_one_lease_per_model_in_the_serving_namespace() -> None:
    settings = Settings.model_validate({"model_name": "churn", "serving": {"namespace": "ml"}})
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:1"))
    lease = KubernetesLease.for_settings(settings, api_client=api)
    assert (lease.namespace, lease.lease) == ("ml", "flywheel-rollout-churn")
    assert lease.name == "Lease ml/flywheel-rollout-churn" == f"Lease ml/{lease_name('churn')}"


def test_an_unreachable_api_server_is_an_error_that_names_it() -> None:
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:1"))
    lease = KubernetesLease("ml", "flywheel-rollout-m", api_client=api, seconds=1)
    with pytest.raises(RolloutError, match=r"cannot reach the API server at http://127.0.0.1:1"):
        lease.acquire()
    assert not lease.held()
    lease.release()  # holds nothing: nothing to send, and no error
