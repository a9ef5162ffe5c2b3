"""The end of a serving process: what a model holds unwritten is written before it exits.

seldon-core 1.17.1 serves REST from gunicorn workers and gRPC from multiprocessing
children, and calls the model's `load()` in each; `close_on_exit` is called there.
"""

from __future__ import annotations

import atexit
import signal
import threading
from typing import Any, Protocol


class Closing(Protocol):
    """What holds records to write when its process ends."""

    def close(self) -> None: ...


def close_on_exit(model: Closing) -> None:
    """Close `model` (writing its buffered log records) when its serving process ends.

    A gunicorn worker ends through the interpreter's exit (after finishing its
    requests), so atexit runs there. A gRPC child ends through multiprocessing, which
    skips atexit but runs its finalizers; and nothing in it handles SIGTERM, so it
    would die at once: there SIGTERM becomes a KeyboardInterrupt, which seldon-core's
    wait loop answers by stopping the gRPC server, and the child then exits normally.
    """
    import multiprocessing.util

    atexit.register(model.close)
    multiprocessing.util.Finalize(model, model.close, exitpriority=10)
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
