"""`flywheel ui`: its help, a port already taken as one line, and SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


def test_sigterm_stops_the_server_at_once_with_no_traceback(tmp_path: Path) -> None:
    # given a UI serving on a free port
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "flywheel.cli", "ui", "--port", str(port)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "FLYWHEEL_STORAGE__URI": str(tmp_path / "store")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.read() == b"ok"
                    break
            except OSError:
                time.sleep(0.2)
        # when it is sent SIGTERM, as a pod's kubelet does
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=20)
    finally:
        server.kill()
    # then it stops as a terminated process, in one piece, and frees its port
    assert server.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        again.bind(("127.0.0.1", port))
        again.listen()
