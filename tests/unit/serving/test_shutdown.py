"""The end of a serving process: what the model holds is written, on exit and on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

# A process that stands for a serving one: its model writes a file when closed.
CHILD = """
import sys, time
from pathlib import Path
from flywheel.serving.shutdown import close_on_exit

class Model:
    def close(self) -> None:
        Path(sys.argv[1]).write_text("closed")

close_on_exit(Model())
print("ready", flush=True)
if sys.argv[2] == "wait":
    time.sleep(60)
"""


def _start(closed: Path, then: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(closed), then], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def test_a_process_that_exits_closes_its_model(tmp_path: Path) -> None:
    child = _start(tmp_path / "closed", "exit")
    assert child.wait(timeout=30) == 0
    assert (tmp_path / "closed").read_text() == "closed"


def test_sigterm_unwinds_the_process_and_closes_its_model(tmp_path: Path) -> None:
    # given a serving process waiting for requests
    child = _start(tmp_path / "closed", "wait")
    # when it is sent SIGTERM, as Kubernetes stops a pod
    child.send_signal(signal.SIGTERM)
    code = child.wait(timeout=30)
    # then it was not killed by the signal: it unwound, and its model was closed
    assert code != -signal.SIGTERM
    assert (tmp_path / "closed").read_text() == "closed"
