"""What kfp.local prints while it runs the steps: every line to the run's log file, each step's
state as it changes, why a step failed in one line, and the steps' output for a person.

kfp.local logs its task events on the root logger (inside its own handler's context
for a task it executes, on the root logger's handlers for a cache hit or a skipped
task) and prints each step subprocess's output, indented by four spaces, on stdout.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from flywheel.config import STEPS

# kfp.local colours task names and statuses.
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")

# kfp.local's records that change a task's state (task_dispatcher, task_executor and
# enhanced_dag_orchestrator in kfp/local): the task, and its new state.
_RECORDS = [
    (re.compile(r"^Executing task '([^']+)'"), "running"),
    (re.compile(r"^Task '([^']+)' finished with status SUCCESS"), "done"),
    (re.compile(r"^Task '([^']+)' finished with status FAILURE"), "failed"),
    (re.compile(r"^Task (\S+) cache hit"), "cached"),
    (re.compile(r"^Skipping conditional task (\S+) "), "skipped"),
    (re.compile(r"^Skipping task (\S+): upstream"), "not run"),
]


def plain(text: str) -> str:
    """Text without kfp.local's terminal colours."""
    return _COLOUR.sub("", text)


@dataclass(frozen=True)
class StepState:
    """A step of a local run that changed state; how long it ran once it ended, and why and
    where its log is if it failed."""

    step: str
    state: str  # "running", "done", "cached", "failed", "skipped" or "not run"
    seconds: float | None = None
    error: str | None = None
    log: Path | None = None


class StepLog(io.TextIOBase):
    """The steps' streamed logs for a person, and the one-line reason of each step's error.

    Drops the executor-input JSON every KFP step prints, and reduces the traceback
    of an expected (Flywheel) error to its one-line reason. A traceback of anything
    else is a bug and is shown whole. Without a target it shows nothing and only
    keeps the reason.
    """

    def __init__(self, target: TextIO | None) -> None:
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

    def _show(self, text: str) -> None:
        if self.target is not None:
            self.target.write(text)

    def _line(self, line: str) -> None:
        if "Got executor_input:" in line:
            self.skipping = True
            self._show(line.replace("Got executor_input:", "(executor input omitted)"))
        elif self.skipping:
            self.skipping = line.rstrip() != "    }"
        elif line.strip() == "Traceback (most recent call last):":
            self.traceback = [line]
        elif self.traceback is not None:
            self.traceback.append(line)
            if line.startswith("    ") and not line.startswith("     "):  # the exception line
                # "    flywheel.batches.BatchError: batch ... is not readable CSV: ..."
                kind, _, message = line.strip().partition(": ")
                name = kind.rsplit(".", 1)[-1]
                if kind.startswith("flywheel.") and message:
                    self.reason = message
                    self._show(f"    {name}: {message}\n")
                else:
                    self.reason = f"{name}: {message}" if message else name
                    self._show("".join(self.traceback))
                self.traceback = None
        else:
            self._show(line)

    def flush(self) -> None:
        if self.traceback:
            self._show("".join(self.traceback))
            self.traceback = None
        if self.pending and not self.skipping:
            self._show(self.pending)
        self.pending = ""
        if self.target is not None:
            self.target.flush()


class StepTracker(logging.Filter):
    """Each step's state, read from the records kfp.local logs on the root logger.

    `groups` maps a group task (a dsl.If's condition-N) to the steps inside it,
    `on_step` hears of every change, and `log` says where the run's log will be,
    for a failed step. The reason of a failure is the failed step's own error, as
    `steplog` read it from the step's output.
    """

    def __init__(
        self,
        groups: Mapping[str, Sequence[str]],
        steplog: StepLog,
        on_step: Callable[[StepState], None],
        log: Callable[[], Path],
    ) -> None:
        super().__init__()
        self.groups, self.steplog, self.on_step, self.log = groups, steplog, on_step, log
        self.started: dict[str, float] = {}
        self.failed: str | None = None
        self.error: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = plain(record.getMessage())
        for pattern, state in _RECORDS:
            match = pattern.match(message)
            if match:
                tasks = self.groups.get(match.group(1), [match.group(1)])
                for step in (step for step in STEPS if step in tasks):
                    self.on_step(self._change(step, state))
        return True

    def _change(self, step: str, state: str) -> StepState:
        now = time.monotonic()
        if state == "running":
            self.started[step] = now
            self.steplog.reason = None  # a reason read from now on is this step's
            return StepState(step, state)
        seconds = now - self.started[step] if step in self.started else None
        if state != "failed":
            return StepState(step, state, seconds)
        self.failed = step
        self.error = self.steplog.reason or "the step ended without an error message"
        return StepState(step, state, seconds, self.error, self.log())


class _Tee(io.TextIOBase):
    """The run's log file, without colours, and the step log."""

    def __init__(self, file: TextIO, steplog: StepLog) -> None:
        self.file, self.steplog = file, steplog

    def write(self, text: str) -> int:
        self.file.write(plain(text))
        self.steplog.write(text)
        return len(text)

    def flush(self) -> None:
        self.file.flush()


@contextlib.contextmanager
def capture(path: Path, steplog: StepLog, tracker: StepTracker) -> Iterator[None]:
    """Send what kfp.local prints and logs to the log file at `path` and to `steplog`, and its
    records past `tracker`, until the block ends."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with path.open("w") as file, warnings.catch_warnings():
        tee = _Tee(file, steplog)
        handler = logging.StreamHandler(tee)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
        # kfp.local swaps the root logger's handlers for its own while it executes a task
        # and puts these back; its other records (a cache hit, a skipped task) reach them.
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        root.addFilter(tracker)
        # kfp.local warns for every image without "python" in its name, and for
        # every step's resources, which only a cluster enforces.
        warnings.filterwarnings("ignore", message="You may be attemping")
        warnings.filterwarnings("ignore", message=r"Task .* have no effect in the current")
        try:
            with contextlib.redirect_stdout(tee):
                yield
        finally:
            root.removeFilter(tracker)
            root.handlers[:] = handlers
            root.setLevel(level)
            steplog.flush()
