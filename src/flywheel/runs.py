"""Running the training pipeline: compiled once, then run locally with kfp.local or on a cluster.

A local run executes the same compiled package a cluster would get, through
kfp.local's SubprocessRunner, so what works on a laptop is what is submitted.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from flywheel import lineage
from flywheel.config import STEPS, Settings
from flywheel.errors import FlywheelError
from flywheel.storage import ObjectNotFound, open_store
from flywheel.usage import Usage

log = logging.getLogger(__name__)

PACKAGE_FILE = "training.yaml"


def compile_text(settings: Settings) -> str:
    """The compiled training pipeline as the KFP compiler writes it.

    The settings give each step's resources; everything else reaches the steps as
    run parameters.
    """
    from kfp import compiler

    from flywheel.pipelines.training import build_training_pipeline

    pipeline = build_training_pipeline(settings.pipeline.resources, settings.contract.pii_salt_env)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PACKAGE_FILE
        compiler.Compiler().compile(pipeline, str(path))
        return path.read_text()


def compile_package(settings: Settings) -> list[dict[str, Any]]:
    """The compiled training pipeline: its PipelineSpec and, second, its Kubernetes PlatformSpec."""
    return [doc for doc in yaml.safe_load_all(compile_text(settings)) if doc]


def dump_package(docs: list[dict[str, Any]]) -> str:
    """YAML text of a compiled package."""
    return yaml.safe_dump_all(docs, sort_keys=True)


def write_package(settings: Settings, out_dir: Path) -> Path:
    """Write the compiled pipeline (for `make compile` and CI)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PACKAGE_FILE
    path.write_text(compile_text(settings))
    return path


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


def new_run_id() -> str:
    """A sortable, unique run id."""
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


# The last line of a step's traceback when it failed on a Flywheel error:
# "    flywheel.batches.BatchError: batch 2026-01-04.csv is not readable CSV: ...".
_EXPECTED_ERROR = re.compile(r"^ {4}flywheel\.[\w.]+\.(\w+): (.*)$")


class _StepLog(io.TextIOBase):
    """The steps' streamed logs for a person.

    Drops the executor-input JSON every KFP step prints, and reduces the traceback
    of an expected (Flywheel) error to its one-line reason, which it keeps for the
    run's summary. A traceback of anything else is a bug and is shown whole.
    """

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.skipping = False
        self.pending = ""
        self.traceback: list[str] | None = None
        self.reason: str | None = None

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            self._line(line + "\n")
        return len(text)

    def _line(self, line: str) -> None:
        if "Got executor_input:" in line:
            self.skipping = True
            self.target.write(line.replace("Got executor_input:", "(executor input omitted)"))
        elif self.skipping:
            self.skipping = line.rstrip() != "    }"
        elif line.strip() == "Traceback (most recent call last):":
            self.traceback = [line]
        elif self.traceback is not None:
            self.traceback.append(line)
            if line.startswith("    ") and not line.startswith("     "):  # the exception line
                expected = _EXPECTED_ERROR.match(line.rstrip("\n"))
                if expected:
                    self.reason = expected.group(2)
                    self.target.write(f"    {expected.group(1)}: {expected.group(2)}\n")
                else:
                    self.target.write("".join(self.traceback))
                self.traceback = None
        else:
            self.target.write(line)

    def flush(self) -> None:
        if self.traceback:
            self.target.write("".join(self.traceback))
            self.traceback = None
        if self.pending and not self.skipping:
            self.target.write(self.pending)
        self.pending = ""
        self.target.flush()


@dataclass(frozen=True)
class StepUsage:
    """One step of a run: what it used, or why this run has nothing to show for it."""

    step: str
    status: str  # "ran", "cached", "failed", "not run" or "no record"
    usage: Usage | None = None


@dataclass
class LocalRun:
    """What a local run did."""

    run_id: str
    succeeded: bool
    seconds: float
    error: str | None = None  # why it failed, in one line when the step said why
    failed_task: str | None = None
    failure_report: str | None = None
    outputs: dict[str, Path] | None = None
    registration: dict[str, Any] | None = None
    steps: list[StepUsage] = field(default_factory=list)

    def read(self, name: str) -> Any:
        """A JSON output of the run (window manifest, evaluation or decision)."""
        if not self.outputs or name not in self.outputs:
            return None
        path = self.outputs[name]
        if path.is_dir():
            path = path / "manifest.json"
        return json.loads(path.read_text())


def run_local(
    settings: Settings,
    *,
    as_of: str = "",
    run_id: str | None = None,
    caching: bool | None = None,
    quiet: bool = True,
    reason: str = "",
    decision: str = "",
) -> LocalRun:
    """Run the training pipeline with kfp.local's SubprocessRunner in this environment.

    `reason` (why the run starts; "manual run" when empty) and `decision` (the
    trigger engine's decision record) go into the lineage of a version it registers.
    """
    import kfp.local
    from kfp import components

    run_id = run_id or new_run_id()
    docs = compile_package(settings)
    # Local source changes must invalidate cached steps, as a new image would on a cluster.
    docs[0] = customise(docs[0], env={"FLYWHEEL_CODE_VERSION": lineage.code_version()})
    pipeline = components.load_component_from_text(dump_package(docs))
    root = Path(settings.pipeline.root).resolve()
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=settings.pipeline.caching if caching is None else caching,
        raise_on_error=True,
    )
    started = time.monotonic()
    before = set(root.glob("*")) if root.exists() else set()
    log = _StepLog(sys.stdout)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log if quiet else sys.stdout):
            # kfp.local warns for every image without "python" in its name, and for
            # every step's resources, which only a cluster enforces.
            warnings.filterwarnings("ignore", message="You may be attemping")
            warnings.filterwarnings("ignore", message=r"Task .* have no effect in the current")
            task = pipeline(
                config=settings.to_json(),
                run_id=run_id,
                as_of=as_of,
                git_commit=lineage.git_commit() or "",
                trigger_reason=reason,
                trigger_decision=decision,
            )
    except RuntimeError as error:
        log.flush()
        failed = _failed_task(str(error))
        return LocalRun(
            run_id=run_id,
            succeeded=False,
            seconds=time.monotonic() - started,
            error=log.reason or re.sub(r"\x1b\[[0-9;]*m", "", str(error)),
            failed_task=failed,
            failure_report=_failure_report(root, before, failed),
            steps=step_usages(_new_run_dir(root, before), succeeded=False, failed=failed),
        )
    log.flush()
    outputs = {name: Path(artifact.path) for name, artifact in task.outputs.items()}
    blessed = json.loads(outputs["decision"].read_text())["blessed"]
    store = open_store(settings.storage.uri, settings.storage)
    try:
        from flywheel.tasks import run_record_key

        registration = json.loads(store.read(run_record_key(run_id)))
    except ObjectNotFound:
        registration = None
    return LocalRun(
        run_id=run_id,
        succeeded=True,
        seconds=time.monotonic() - started,
        outputs=outputs,
        registration=registration,
        steps=step_usages(_new_run_dir(root, before), blessed=blessed),
    )


@dataclass
class InProcessRun:
    """What `run_in_process` did: the version it registered ('' if none) and each step's time."""

    version: str
    seconds: dict[str, float]
    blessed: bool | None = None


def run_in_process(
    settings: Settings,
    work: Path,
    *,
    run_id: str = "in-process",
    git_commit: str = "",
    last_step: str = "register",
    reason: str = "",
    decision: str = "",
) -> InProcessRun:
    """Every pipeline step up to `last_step`, in STEPS order, as plain calls in this process.

    The same functions the components call, on files under `work`: for tests and
    for measuring what the pipeline machinery costs (`make bench-pipeline`).
    """
    from flywheel import tasks

    config = settings.to_json()
    seconds: dict[str, float] = {}
    if last_step not in tasks.STEPS:
        raise ValueError(f"last_step must be one of {', '.join(tasks.STEPS)}, not {last_step!r}")
    last = tasks.STEPS.index(last_step)

    def step(name: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        result = function(*args, **kwargs)
        seconds[name] = time.monotonic() - started
        return result

    def done(name: str) -> bool:
        return tasks.STEPS.index(name) >= last

    resolved = step("resolve", tasks.resolve, config, "")
    production, window = resolved["production"], work / "window"
    run = InProcessRun(version="", seconds=seconds)
    step("ingest", tasks.ingest, config, resolved["as_of"], window, resolved["fingerprint"])
    if done("ingest"):
        return run
    step(
        "validate",
        tasks.validate,
        config,
        window,
        production,
        work / "contract.json",
        work / "validation.md",
    )
    if done("validate"):
        return run
    step(
        "train",
        tasks.train,
        config,
        window,
        work / "model.joblib",
        work / "holdout.parquet",
        work / "baselines",
    )
    if done("train"):
        return run
    step(
        "evaluate",
        tasks.evaluate,
        config,
        work / "model.joblib",
        work / "holdout.parquet",
        window,
        production,
        work / "evaluation.json",
        work / "evaluation.html",
        work / "baselines",
    )
    run.blessed = step(
        "gate", tasks.decide, config, work / "evaluation.json", work / "decision.json"
    ).blessed
    if done("gate") or not run.blessed:
        return run
    step("infra-validate", tasks.infra_validate, config, work / "model.joblib", window)
    if done("infra-validate"):
        return run
    run.version = step(
        "register",
        tasks.register,
        config,
        model_path=work / "model.joblib",
        contract_path=work / "contract.json",
        evaluation_path=work / "evaluation.json",
        report_path=work / "evaluation.html",
        decision_path=work / "decision.json",
        validation_path=work / "validation.md",
        window_dir=window,
        run_id=run_id,
        git_commit=git_commit,
        image="",
        image_digest="",
        trigger_reason=reason,
        trigger_decision=decision,
    )
    if not done("register"):
        step("deploy", tasks.deploy, config, run.version)
    return run


def _failed_task(message: str) -> str | None:
    # kfp.local says: "... finished with status FAILURE. Inner task failed: 'validate'."
    # with terminal colours around the names.
    match = re.search(r"Inner task failed: '([^']+)'", re.sub(r"\x1b\[[0-9;]*m", "", message))
    return match.group(1) if match else None


def _new_run_dir(root: Path, before: set[Path]) -> Path | None:
    """The folder kfp.local made for this run under the pipeline root (not its cache)."""
    made = [p for p in set(root.glob("*")) - before if p.is_dir() and not p.name.startswith(".")]
    return max(made, default=None)


def step_usages(
    run_dir: Path | None,
    *,
    succeeded: bool = True,
    failed: str | None = None,
    blessed: bool = True,
) -> list[StepUsage]:
    """Each step's usage as its Metrics recorded it in `run_dir`, in the order the steps run.

    A step with no record in this run was served from the cache if the run went past
    it; otherwise it failed, or did not run (after a failure, or an unblessed gate).
    """
    reached: int | None = len(STEPS)  # the steps before this index ran or came from the cache
    if succeeded and not blessed:
        reached = STEPS.index("gate") + 1
    elif not succeeded:
        reached = STEPS.index(failed) if failed in STEPS else None  # None: unknown
    rows = []
    for index, step in enumerate(STEPS):
        recorded = Usage.read(run_dir / step / "usage") if run_dir else None
        if recorded is not None:
            rows.append(StepUsage(step, "ran", recorded))
        elif step == failed:
            rows.append(StepUsage(step, "failed"))
        elif reached is None:
            rows.append(StepUsage(step, "no record"))
        else:
            rows.append(StepUsage(step, "cached" if index < reached else "not run"))
    return rows


def _failure_report(root: Path, before: set[Path], task: str | None) -> str | None:
    """The Markdown report the failed step wrote before failing, if it wrote one."""
    if task is None or not root.exists():
        return None
    for run_dir in sorted(set(root.glob("*")) - before, reverse=True):
        report = run_dir / task / "report"
        if report.is_file():
            return report.read_text()
    return None


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
