"""Runs on a Kubeflow Pipelines cluster: starting one from the compiled package, asking
which have ended, and what one registered."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flywheel import lineage
from flywheel.config import Settings
from flywheel.errors import FlywheelError
from flywheel.runs.package import PACKAGE_FILE, compile_package, customise, dump_package, new_run_id
from flywheel.storage import ObjectStore


class SubmitError(FlywheelError):
    """The Kubeflow Pipelines API could not be reached or refused a request."""


def submit(
    settings: Settings,
    *,
    host: str,
    run_id: str | None = None,
    as_of: str = "",
    image: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
    reason: str = "",
    decision: str = "",
) -> dict[str, str]:
    """Compile the training pipeline and start a run of it on a Kubeflow Pipelines API.

    The compiled package travels inline in the run (KFP v2beta1 `POST /runs`), in
    the experiment `pipeline.experiment`, which is created if missing. The bearer
    token, if any, comes from the variable `pipeline.token_env` names (KFP_TOKEN);
    without it, from the ServiceAccount token the kubelet projects for KFP's audience
    (at KF_PIPELINES_SA_TOKEN_PATH, by default /var/run/secrets/kubeflow/pipelines/token),
    re-read as the kubelet rotates it, which is how a pod of the chart authenticates.
    `service_account` is the identity the steps run as; the deploy step needs one
    allowed to patch the model's SeldonDeployment (the chart's pipeline runner).
    `image`, `namespace` and `service_account` default to pipeline.image, .namespace
    and .service_account (the chart sets them), so every caller submits alike.
    `reason` and `decision` reach the registered version's lineage as in `run_local`.
    """
    run_id = run_id or new_run_id()
    image = image or settings.pipeline.image
    namespace = namespace or settings.pipeline.namespace
    service_account = service_account or settings.pipeline.service_account
    docs = compile_package(settings)
    if image:
        docs[0] = customise(docs[0], image=image)
    digest = image.split("@", 1)[1] if image and "@" in image else ""
    with tempfile.TemporaryDirectory() as tmp, _kfp(settings, host, namespace) as client:
        package = Path(tmp) / PACKAGE_FILE
        package.write_text(dump_package(docs))
        result = client.create_run_from_pipeline_package(
            str(package),
            arguments={
                "config": settings.to_json(),
                "run_id": run_id,
                "as_of": as_of,
                "git_commit": lineage.git_commit() or "",
                "image": image or "",
                "image_digest": digest,
                "s3_secret": settings.pipeline.s3_secret,
                "pii_secret": settings.contract.pii_salt_secret,
                "trigger_reason": reason,
                "trigger_decision": decision,
            },
            run_name=run_id,
            experiment_name=settings.pipeline.experiment,
            enable_caching=settings.pipeline.caching,
            service_account=service_account,
        )
    return {"run_id": run_id, "kfp_run_id": str(result.run_id), "host": host}


# A KFP run in one of these states has ended (v2beta1 RuntimeState).
ENDED = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})


def ended_runs(settings: Settings, *, host: str, kfp_run_ids: list[str]) -> dict[str, bool]:
    """Which of these KFP runs have ended, each with whether it succeeded; running ones are left
    out."""
    if not kfp_run_ids:
        return {}
    with _kfp(settings, host, settings.pipeline.namespace) as client:
        states = {run: str(client.get_run(run).state) for run in kfp_run_ids}
    return {run: state == "SUCCEEDED" for run, state in states.items() if state in ENDED}


@dataclass(frozen=True)
class RunStatus:
    """A KFP run's state (v2beta1 RuntimeState) and when KFP created it."""

    state: str
    created_at: datetime

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def run_status(settings: Settings, *, host: str, run_id: str) -> RunStatus | None:
    """The newest KFP run named `run_id` (`submit` names each run by its run id), or None
    when KFP has no run of that name."""
    name = {"operation": "EQUALS", "key": "display_name", "stringValue": run_id}
    with _kfp(settings, host, settings.pipeline.namespace) as client:
        found = client.list_runs(
            page_size=1,
            sort_by="created_at desc",
            namespace=settings.pipeline.namespace,
            filter=json.dumps({"predicates": [name]}),
        )
    if not found.runs:
        return None
    run = found.runs[0]
    return RunStatus(state=str(run.state), created_at=run.created_at)


def registration(store: ObjectStore, run_id: str) -> dict[str, Any] | None:
    """What a run's register step recorded in the models' `store` (the version, its location,
    the aliases it moved), or None while it has not (the run is under way, failed, or its
    gate blessed nothing)."""
    from flywheel.tasks import run_record_key

    raw = store.read_optional(run_record_key(run_id))
    record: dict[str, Any] | None = json.loads(raw) if raw is not None else None
    return record


@contextlib.contextmanager
def _kfp(settings: Settings, host: str, namespace: str | None) -> Iterator[Any]:
    """A kfp.Client for `host`, whose failures inside the block become one SubmitError.

    The bearer token, if any, comes from the variable `pipeline.token_env` names;
    without it, from the ServiceAccount token the kubelet projects for KFP's audience.
    """
    import kfp
    import kfp_server_api  # type: ignore[import-untyped]
    from urllib3.exceptions import HTTPError

    token = os.environ.get(settings.pipeline.token_env) or None
    credentials = None if token else _projected_token()
    try:
        with warnings.catch_warnings():
            # Every kfp.Client warns that it needs KFP 2.0.0-beta.2 or later.
            warnings.filterwarnings("ignore", message="This client only works with")
            client = kfp.Client(
                host=host, namespace=namespace, existing_token=token, credentials=credentials
            )
        yield client
    except kfp_server_api.ApiException as error:
        raise SubmitError(f"KFP at {host} refused the request: {_api_reason(error)}") from None
    except HTTPError as error:
        raise SubmitError(f"cannot reach KFP at {host}: {type(error).__name__}") from None
    except TimeoutError:
        # kfp.Client retries its health check, then gives up with this.
        raise SubmitError(
            f"KFP at {host} did not pass its health check (a missing or wrong "
            f"{settings.pipeline.token_env} is refused there too)"
        ) from None


def _projected_token() -> Any:
    """kfp's reader of the projected KFP ServiceAccount token, if a token file is there."""
    from kfp import client

    path = os.environ.get(client.KF_PIPELINES_SA_TOKEN_ENV) or client.KF_PIPELINES_SA_TOKEN_PATH
    if not Path(path).is_file():
        return None
    return client.ServiceAccountTokenVolumeCredentials(path)


def _api_reason(error: Any) -> str:
    """'401 Unauthorized: <the server's message>' from a kfp_server_api.ApiException."""
    try:
        message = json.loads(error.body).get("message") or ""
    except (TypeError, ValueError, AttributeError):
        message = ""
    return f"{error.status} {error.reason}" + (f": {message}" if message else "")
