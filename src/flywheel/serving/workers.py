"""A server is ready once every one of its gunicorn workers has loaded the model.

seldon-core 1.17.1 forks its gunicorn workers before the model is loaded, and each
loads it itself. The first worker to finish answers the health check while the others
are still loading: on a small node their loading takes the CPU the answers need, and
the first seconds of a canary's traffic come back slow enough to fail its latency
check. So each worker marks itself loaded in a file named after its gunicorn arbiter
(its parent) and itself, in the temporary directory the workers of one container
share, and the health check holds off until `GUNICORN_WORKERS` of the arbiter's
workers are marked and alive. A worker's mark is removed when it exits; a worker that
died without removing it no longer counts.

Outside gunicorn (a gRPC child, the model scored in-process) there is nothing to wait for.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

# How many REST workers a serving container runs: seldon-core's own setting, which the
# SeldonDeployment and the local driver both pass.
WORKERS_ENV = "GUNICORN_WORKERS"


def _in_a_gunicorn_worker() -> bool:
    # gunicorn's arbiter sets SERVER_SOFTWARE when it starts, and its workers inherit it;
    # seldon-core forks its gRPC child before the arbiter starts, so the child has none.
    # The model is never loaded in the arbiter itself (seldon-core does not preload).
    software = os.environ.get("SERVER_SOFTWARE", "")
    return software.startswith("gunicorn/") and os.environ.get(WORKERS_ENV, "").isdigit()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, as another user
        pass
    return True


class Workers:
    """This worker's mark, and how many of its arbiter's workers have made theirs."""

    def __init__(self, expected: int, arbiter: int, worker: int, where: Path | None = None) -> None:
        self.expected = expected
        self.arbiter = arbiter
        self.worker = worker
        self.where = where or Path(tempfile.gettempdir())
        # Every mark of one arbiter's workers starts with this; the worker's pid ends it.
        self.prefix = f"flywheel-loaded-{arbiter}-"
        self.mark = self.where / f"{self.prefix}{worker}"
        # Once every worker has loaded, the server stays ready: a worker gunicorn
        # replaces later (max_requests) does not take the pod out of its Service.
        self.all_loaded = False

    @classmethod
    def of_this_process(cls) -> Workers | None:
        """This gunicorn worker's, or None outside gunicorn (nothing to wait for)."""
        if not _in_a_gunicorn_worker():
            return None
        return cls(int(os.environ[WORKERS_ENV]), os.getppid(), os.getpid())

    def loaded(self) -> None:
        """Mark this worker loaded."""
        self.mark.touch()

    def exiting(self) -> None:
        """Remove this worker's mark."""
        with contextlib.suppress(FileNotFoundError):
            self.mark.unlink()

    def ready(self) -> int:
        """How many of the arbiter's workers have loaded and are alive."""
        pids = (path.name.removeprefix(self.prefix) for path in self.where.glob(f"{self.prefix}*"))
        return sum(1 for pid in pids if pid.isdigit() and _alive(int(pid)))

    def waiting_for(self) -> str | None:
        """Why the server is not ready yet, or None once every worker has loaded."""
        if self.all_loaded:
            return None
        ready = self.ready()
        if ready >= self.expected:
            self.all_loaded = True
            return None
        return f"{ready} of {self.expected} workers have loaded the model"
