"""`flywheel ui`: its help, and a port already taken as one line."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def flywheel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flywheel.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "FLYWHEEL_STORAGE__URI": str(cwd / "store")},
    )


def test_help_names_what_it_shows(tmp_path: Path) -> None:
    result = flywheel("ui", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "read-only web UI" in result.stdout and "--host" in result.stdout


def test_a_port_in_use_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = flywheel("ui", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
