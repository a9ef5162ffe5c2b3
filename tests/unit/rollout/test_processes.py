"""Process groups Flywheel owns: a directory has one owner, and a reused PID is never killed.

Every test uses real processes (`sleep`, and a shell with a child) in their own sessions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from flywheel.rollout.processes import DirectoryBusy, Identity, ProcessBook, identity, stop_group


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left is killed after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()


def _group(spawned: list[subprocess.Popen[bytes]], command: str) -> subprocess.Popen[bytes]:
    """A shell leading a new process group, with a `sleep` child of its own."""
    process = subprocess.Popen(["sh", "-c", command], start_new_session=True)
    spawned.append(process)
    return process


def _alive(pid: int) -> bool:
    return (
        identity(pid) is not None
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[:1]
    )


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _recorded_group(
    book: Path, spawned: list[subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], int]:
    """A group (a shell and its `sleep` child) recorded in `book`'s directory: its leader
    and the child."""
    leader = _group(spawned, "sleep 60 & wait")
    time.sleep(0.2)
    child = _children(leader.pid)[0]
    ProcessBook(book).record([leader.pid])
    return leader, child


def _dead(pid: int, within: float = 5) -> bool:
    """Whether `pid` is dead (or a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


def test_identity_tells_a_live_process_by_start_time_and_command() -> None:
    me = identity(os.getpid())
    assert me is not None
    assert me.pid == os.getpid()
    assert sys.executable.rsplit("/", 1)[-1] in me.command
    assert me == identity(os.getpid())  # stable while the process lives
    assert identity(2**22 + 1) is None  # above pid_max: never a process


def test_a_successor_stops_the_groups_an_earlier_owner_left(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    # given an owner that recorded a group (a shell and its child) and then died
    leader, child = _recorded_group(tmp_path, spawned)
    # when the next owner takes the directory
    stopped = ProcessBook(tmp_path).reap()
    leader.wait(5)
    # then the whole group is gone and the record with it
    assert stopped == [leader.pid]
    assert not _alive(child)
    assert not (tmp_path / "processes.json").exists()


def test_a_group_whose_leader_died_first_is_still_stopped(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    # given a recorded group whose leader was killed alone, and not yet reaped by its parent:
    # a zombie, with no command line, while its child lives on in the group
    leader, child = _recorded_group(tmp_path, spawned)
    os.kill(leader.pid, 9)
    assert _dead(leader.pid)
    zombie = identity(leader.pid)
    assert zombie is not None and zombie.command == ""
    # when a successor reaps
    stopped = ProcessBook(tmp_path).reap()
    # then the leader's start time named it, and its orphan is stopped
    assert stopped == [leader.pid]
    assert _dead(child)


@pytest.mark.parametrize(
    "disguise",
    [
        # the kernel gave the PID to an unrelated process: same PID, another start time
        lambda real: Identity(real.pid, str(int(real.started) - 1), real.command),
        # same PID and start time, but not the command Flywheel started
        lambda real: Identity(real.pid, real.started, "python -m flywheel.rollout.gateway"),
    ],
    ids=["reused-pid", "other-command"],
)
def test_a_process_that_is_not_the_recorded_one_is_never_signalled(
    tmp_path: Path,
    spawned: list[subprocess.Popen[bytes]],
    disguise: Callable[[Identity], Identity],
) -> None:
    # given a record naming a live bystander's PID, but not as the process it is
    bystander = _group(spawned, "sleep 60")
    real = identity(bystander.pid)
    assert real is not None
    (tmp_path / "processes.json").write_text(json.dumps([asdict(disguise(real))]))
    # when a successor reaps
    stopped = ProcessBook(tmp_path).reap()
    # then the bystander lives
    assert stopped == []
    time.sleep(0.3)
    assert bystander.poll() is None


def test_a_directory_has_one_owner_and_the_refusal_names_it(tmp_path: Path) -> None:
    first = ProcessBook(tmp_path)
    first.acquire()
    try:
        with pytest.raises(DirectoryBusy, match=rf"is in use by flywheel \(pid {os.getpid()}"):
            ProcessBook(tmp_path).acquire()
    finally:
        first.release()
    second = ProcessBook(tmp_path)
    second.acquire()  # free again once released
    second.release()


def test_an_owner_that_died_frees_the_directory(tmp_path: Path) -> None:
    # given an owner process that was killed while holding the directory
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from flywheel.rollout.processes import ProcessBook; "
            f"book = ProcessBook(Path({str(tmp_path)!r})); book.acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert owner.stdout is not None and owner.stdout.readline() == b"held\n"
    with pytest.raises(DirectoryBusy):
        ProcessBook(tmp_path).acquire()
    owner.kill()
    owner.wait()
    # then the kernel dropped its lock with it
    book = ProcessBook(tmp_path)
    book.acquire()
    book.release()


def test_stop_group_escalates_to_sigkill(spawned: list[subprocess.Popen[bytes]]) -> None:
    stubborn = _group(spawned, "trap '' TERM; sleep 60 & wait; sleep 60")
    time.sleep(0.2)
    started = time.monotonic()
    stop_group(stubborn.pid, timeout=0.5)
    stubborn.wait(5)
    assert time.monotonic() - started < 5
    assert stubborn.returncode == -9
