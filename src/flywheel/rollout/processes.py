"""The process groups Flywheel starts on a laptop, recorded so that they, and only they, get stopped.

A serving directory belongs to one Flywheel process at a time (an flock held for
its lifetime), so a `serve` and a `deploy` never stop each other's servers. Each
group started there is recorded with its leader's start time and command line; a
successor that finds the record stops a group only if that leader is still the
very same process, so a PID the kernel has since reused is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from flywheel.errors import FlywheelError

log = logging.getLogger(__name__)


class DirectoryBusy(FlywheelError):
    """Another live Flywheel process owns this serving directory."""


@dataclass(frozen=True)
class Identity:
    """What tells one process from a later one that reuses its PID."""

    pid: int
    started: str
    command: str


def identity(pid: int) -> Identity | None:
    """The running process `pid`, or None if there is none."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.joinpath("self").exists():
        try:
            # The command name in field 2 may hold spaces and parentheses: split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return None
        return Identity(pid, fields[19], command.decode(errors="replace").strip())
    # No /proc (macOS): ps gives the same two facts.
    result = subprocess.run(
        ["ps", "-o", "lstart=", "-o", "command=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    line = result.stdout.strip()
    if result.returncode != 0 or not line:
        return None
    return Identity(pid, line[:24], line[24:].strip())


def stop_group(leader: int, timeout: float = 10) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left after `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(leader):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)


def _group_alive(leader: int) -> bool:
    try:
        os.killpg(leader, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A leader that exited but was not yet reaped by its parent still counts: reap it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(leader, os.WNOHANG)
    return True


def _same(now: Identity, recorded: Identity) -> bool:
    """Whether the process now at a recorded PID is the one recorded. A leader that died
    before its group, and that no parent has reaped yet, is a zombie with no command line
    left: its start time still names it, and its group's orphans are still Flywheel's."""
    return now == recorded or (not now.command and now.started == recorded.started)


class ProcessBook:
    """The serving directory's lock and its record of the process groups started there."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "processes.json"
        self._lock: IO[str] | None = None

    def acquire(self) -> None:
        """Own the directory, or raise DirectoryBusy naming the process that does."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = (self.directory / "owner.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise DirectoryBusy(
                f"{self.directory} is in use by {owner}: stop it first (Ctrl-C, or kill its PID), "
                "or give this one its own pipeline.root"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"flywheel (pid {os.getpid()}: {' '.join(sys.argv)})")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        """A clean exit: nothing recorded is left running, so forget the record and give
        the directory up (the kernel releases it too if this process dies)."""
        self.path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def record(self, leaders: list[int]) -> None:
        """Remember these group leaders, with what identifies them."""
        found = [identity(pid) for pid in leaders]
        entries = [asdict(i) for i in found if i is not None]
        # Replaced whole: an owner killed mid-write must not leave a book its successor cannot read.
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(entries))
        partial.replace(self.path)

    def reap(self) -> list[int]:
        """Stop the groups an earlier owner recorded and left running; return their leaders."""
        try:
            entries = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        stopped = []
        for entry in entries:
            recorded = Identity(**entry)
            now = identity(recorded.pid)
            if now is not None and not _same(now, recorded):
                log.info("not stopping PID %s: it is now another process", recorded.pid)
                continue
            # A leader that is gone cannot be checked, but then only its own orphans
            # can hold its group ID: the kernel never hands out a PID that is still
            # some group's ID, so this signals nothing else.
            stop_group(recorded.pid, timeout=2)
            stopped.append(recorded.pid)
            log.info("stopped process group %s left by an earlier run", recorded.pid)
        self.path.unlink(missing_ok=True)
        return stopped
