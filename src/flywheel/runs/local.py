"""Local runs: the compiled package under kfp.local's SubprocessRunner, in this environment.

A local run executes the same compiled package a cluster would get, so what works
on a laptop is what is submitted.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel import lineage
from flywheel.config import STEPS, Settings
from flywheel.runs.package import compile_package, customise, dump_package, groups, new_run_id
from flywheel.runs.steplog import StepLog, StepState, StepTracker, capture, plain
from flywheel.storage import ObjectStore
from flywheel.usage import Usage

# The run's log, in the folder kfp.local makes for the run under the pipeline root.
LOG_FILE = "run.log"


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
    blessed: bool | None = None  # the gate's verdict, when the run got that far
    error: str | None = None  # why it failed, in one line when the step said why
    failed_task: str | None = None
    failure_report: str | None = None
    outputs: dict[str, Path] | None = None
    registration: dict[str, Any] | None = None
    steps: list[StepUsage] = field(default_factory=list)
    log: Path | None = None  # everything kfp.local and the steps printed

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
    store: ObjectStore,
    *,
    as_of: str = "",
    run_id: str | None = None,
    caching: bool | None = None,
    verbose: bool = False,
    on_step: Callable[[StepState], None] | None = None,
    reason: str = "",
    decision: str = "",
) -> LocalRun:
    """Run the training pipeline with kfp.local's SubprocessRunner in this environment.

    What kfp.local and the steps print goes to the run's log file (LocalRun.log),
    and to stdout too when `verbose`; `on_step` hears of each step's state as it
    changes. `reason` (why the run starts; "manual run" when empty) and `decision`
    (the trigger engine's decision record) go into the lineage of a version it registers;
    `store` is the models' store, where the run's registration is read back.
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
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.glob("*"))
    steplog = StepLog(sys.stdout if verbose else None)
    tracker = StepTracker(
        groups(docs[0]),
        steplog,
        on_step or (lambda state: None),
        log=lambda: _log_path(root, before, run_id),
    )
    # Written beside the run folders until kfp.local has made this run's (hidden, so
    # that it is never taken for one).
    writing = root / f".{run_id}.log"
    try:
        with capture(writing, steplog, tracker):
            task = pipeline(
                config=settings.to_json(),
                run_id=run_id,
                as_of=as_of,
                git_commit=lineage.git_commit() or "",
                trigger_reason=reason,
                trigger_decision=decision,
            )
    except RuntimeError as error:
        failed = tracker.failed
        return LocalRun(
            run_id=run_id,
            succeeded=False,
            seconds=time.monotonic() - started,
            error=tracker.error or plain(str(error)),
            failed_task=failed,
            failure_report=_failure_report(root, before, failed),
            steps=step_usages(_new_run_dir(root, before), succeeded=False, failed=failed),
            log=_log_path(root, before, run_id),
        )
    finally:
        if writing.exists():
            writing.replace(_log_path(root, before, run_id))
    outputs = {name: Path(artifact.path) for name, artifact in task.outputs.items()}
    blessed = json.loads(outputs["decision"].read_text())["blessed"]
    from flywheel.tasks import run_record_key

    raw = store.read_optional(run_record_key(run_id))
    registration = json.loads(raw) if raw is not None else None
    return LocalRun(
        run_id=run_id,
        succeeded=True,
        seconds=time.monotonic() - started,
        blessed=blessed,
        outputs=outputs,
        registration=registration,
        steps=step_usages(_new_run_dir(root, before), blessed=blessed),
        log=_log_path(root, before, run_id),
    )


def _log_path(root: Path, before: set[Path], run_id: str) -> Path:
    """Where a run's log is kept: in the folder kfp.local made for it (beside them if none)."""
    run_dir = _new_run_dir(root, before)
    return run_dir / LOG_FILE if run_dir else root / f"{run_id}.log"


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
    """The Markdown report the failed step wrote before failing, if it wrote one (an HTML
    page, such as evaluate's, is for a browser, not the terminal)."""
    if task is None or not root.exists():
        return None
    for run_dir in sorted(set(root.glob("*")) - before, reverse=True):
        report = run_dir / task / "report"
        if report.is_file():
            text = report.read_text()
            return None if text.lstrip().lower().startswith(("<!doctype", "<html")) else text
    return None
