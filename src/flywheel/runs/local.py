"""Local runs: the compiled package under kfp.local's SubprocessRunner, in this environment.

A local run executes the same compiled package a cluster would get, so what works
on a laptop is what is submitted.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from flywheel import lineage
from flywheel.config import STEPS, Settings
from flywheel.runs.package import compile_package, customise, dump_package, new_run_id
from flywheel.storage import ObjectNotFound, open_store
from flywheel.usage import Usage

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
