"""`make run` on a fresh copy of the repository, twice, as the README promises."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import fresh_environment

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _fresh_copy(target: Path) -> Path:
    """The tracked files (committed or not) without virtualenvs or local state."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _make_run(project: Path) -> subprocess.CompletedProcess[str]:
    env = fresh_environment()
    return subprocess.run(
        ["make", "run"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )


def test_make_run_trains_registers_and_then_compares(tmp_path: Path) -> None:
    project = _fresh_copy(tmp_path / "flywheel")
    # First run: builds .venv, generates a week of data, registers v1 as production.
    first = _make_run(project)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "wrote 7 stable batch(es) 2026-01-01..2026-01-07" in first.stdout
    assert "Gate: BLESSED" in first.stdout
    assert "Registered loan-default v1 at" in first.stdout
    assert "production is v1" in first.stdout
    assert "v1 went straight to production (nothing was serving before it)" in first.stdout
    # Second run: a new week of data, and the candidate is measured against v1.
    second = _make_run(project)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert "2026-01-08..2026-01-14" in second.stdout
    assert "Compared with production v1 on the newest batch" in second.stdout
    # A blessed v2 goes out as a canary under synthetic traffic, and the run ends
    # with a decision and a summary, whichever way the analysis went.
    if "Registered loan-default v2" in second.stdout:
        assert "canary loan-default v2" in second.stdout
        promoted = "PROMOTED v2" in second.stdout
        assert promoted or "ROLLED BACK v2" in second.stdout, second.stdout[-3000:]
        assert f"production │ loan-default {'v2' if promoted else 'v1'}" in second.stdout
        traffic = next(line for line in second.stdout.splitlines() if line.startswith("Traffic: "))
        assert "failed" not in traffic and "stable 5" not in traffic, traffic
    assert (
        project
        / ".flywheel"
        / "store"
        / "models"
        / "loan-default"
        / "versions"
        / "v1"
        / "manifest.json"
    ).is_file()
