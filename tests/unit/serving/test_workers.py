"""A server's readiness across its gunicorn workers: marks in a directory, counted alive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel.serving.workers import Workers


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_server_waits_until_every_worker_has_marked_itself(tmp_path: Path) -> None:
    first = Workers(2, arbiter=10, worker=os.getpid(), where=tmp_path)
    assert first.waiting_for() == "0 of 2 workers have loaded the model"
    first.loaded()
    assert first.waiting_for() == "1 of 2 workers have loaded the model"
    # another arbiter's workers (another server on the host) do not count
    Workers(2, arbiter=11, worker=os.getppid(), where=tmp_path).loaded()
    assert first.ready() == 1
    Workers(2, arbiter=10, worker=os.getppid(), where=tmp_path).loaded()
    assert first.waiting_for() is None
    # once ready, a worker gunicorn replaces does not make the server unready
    first.exiting()
    assert not first.mark.exists()
    assert first.waiting_for() is None


def test_a_worker_that_died_without_removing_its_mark_does_not_count(tmp_path: Path) -> None:
    Workers(2, arbiter=10, worker=_dead_pid(), where=tmp_path).loaded()
    alive = Workers(2, arbiter=10, worker=os.getpid(), where=tmp_path)
    alive.loaded()
    assert alive.waiting_for() == "1 of 2 workers have loaded the model"


def test_only_a_gunicorn_worker_told_its_count_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVER_SOFTWARE", raising=False)
    monkeypatch.setenv("GUNICORN_WORKERS", "2")
    assert Workers.of_this_process() is None  # scored in-process, or seldon-core's gRPC child
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/20.1.0")
    workers = Workers.of_this_process()
    assert workers is not None
    assert (workers.expected, workers.arbiter, workers.worker) == (2, os.getppid(), os.getpid())
    monkeypatch.delenv("GUNICORN_WORKERS")
    assert Workers.of_this_process() is None
