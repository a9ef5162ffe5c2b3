"""`flywheel ui` as a person starts it, on a free loopback port, until the test is done."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from harness.servers import free_ports, stop, wait_until


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
        return bool(response.status == 200)


@contextlib.contextmanager
def ui_server(
    config: Path,
    log: Path,
    overrides: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """`flywheel --config CONFIG [--set ...] ui --port P`, its output in `log`; yields its URL
    once /healthz answers, and stops it (its process group) after."""
    (port,) = free_ports(1)
    command = [
        *(sys.executable, "-m", "flywheel.cli", "--config", str(config)),
        *(f"--set={override}" for override in overrides),
        *("ui", "--port", str(port)),
    ]
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            cwd=config.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        wait_until(lambda: _healthy(url), 60, "flywheel ui", process, log)
        yield url
    finally:
        stop(process)
