"""Lineage: the commit (dirty or baked in), package versions, the code digest and the record."""

from __future__ import annotations

import platform
import re
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest

from flywheel import lineage


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def no_baked_commit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLYWHEEL_GIT_COMMIT", raising=False)
    # git must not find a repository above tmp_path
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))


@pytest.mark.usefixtures("no_baked_commit")
def test_the_commit_is_heads_and_dirty_only_for_tracked_changes(tmp_path: Path) -> None:
    # given a repository with one commit
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD")
    # when nothing changed, or only an untracked file appeared, then it is HEAD
    assert lineage.git_commit(tmp_path) == head
    (tmp_path / "untracked.txt").write_text("scratch")
    assert lineage.git_commit(tmp_path) == head
    # when a tracked file changes, then it is HEAD-dirty
    (tmp_path / "a.py").write_text("x = 2\n")
    assert lineage.git_commit(tmp_path) == f"{head}-dirty"


@pytest.mark.usefixtures("no_baked_commit")
def test_outside_a_repository_there_is_no_commit(tmp_path: Path) -> None:
    assert lineage.git_commit(tmp_path) is None


def test_a_baked_in_commit_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # given an image built with FLYWHEEL_GIT_COMMIT and no repository to ask
    monkeypatch.setenv("FLYWHEEL_GIT_COMMIT", "0123abc")
    assert lineage.git_commit(tmp_path) == "0123abc"


def test_package_versions_are_the_installed_ones_and_skip_what_is_absent() -> None:
    versions = lineage.package_versions()
    assert versions["python"] == platform.python_version()
    assert versions["scikit-learn"] == metadata.version("scikit-learn")
    assert versions["numpy"] == metadata.version("numpy")
    # seldon-core lives in the serving virtualenv only
    assert "seldon-core" not in versions
    assert set(versions) <= {"python", *lineage._PACKAGES}


def test_the_code_version_changes_with_any_source_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the real tree gives a short, stable digest
    real = lineage.code_version()
    assert re.fullmatch(r"[0-9a-f]{16}", real) and lineage.code_version() == real
    # given a copy of a package tree (code_version hashes the tree its module sits in)
    package = tmp_path / "flywheel"
    (package / "sub").mkdir(parents=True)
    (package / "lineage.py").write_text("# lineage\n")
    (package / "sub" / "b.py").write_text("y = 1\n")
    monkeypatch.setattr(lineage, "__file__", str(package / "lineage.py"))
    first = lineage.code_version()
    # when a non-Python file changes, then nothing changes
    (package / "notes.md").write_text("notes")
    assert lineage.code_version() == first
    # when a source file changes, or is renamed, then the digest changes
    (package / "sub" / "b.py").write_text("y = 2\n")
    edited = lineage.code_version()
    (package / "sub" / "b.py").rename(package / "sub" / "c.py")
    assert len({first, edited, lineage.code_version()}) == 3


def test_the_record_holds_what_traces_a_model_back() -> None:
    record = lineage.record(
        model_name="m",
        data={"content_hash": "h"},
        config={"model_name": "m"},
        run_id="r1",
        git="abc",
        image="ghcr.io/x/y:1",
        image_digest="sha256:0",
        trained_with={"numpy": "1.26.4"},
    )
    created = datetime.fromisoformat(record.pop("created_at"))
    assert created.tzinfo is not None
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert record == {
        "model_name": "m",
        "data": {"content_hash": "h"},
        "git_commit": "abc",
        "config": {"model_name": "m"},
        "packages": {"numpy": "1.26.4"},
        "pipeline_run_id": "r1",
        "image": "ghcr.io/x/y:1",
        "image_digest": "sha256:0",
        "trigger": {"reason": "manual run", "decision": None},
    }


def test_the_record_keeps_why_the_run_started_on_one_line() -> None:
    # given a run started by the trigger engine, its reason folded over two lines
    record = lineage.record(
        model_name="m",
        data={},
        config={},
        run_id="r2",
        git=None,
        image=None,
        image_digest=None,
        trained_with={},
        reason="drift on income (PSI 0.31)\n  on 2026-01-15",
        decision="triggers/decisions/2026-01-15T00:00:00Z.json",
    )
    # then the record says why on one line, and which decision started it
    assert record["trigger"] == {
        "reason": "drift on income (PSI 0.31) on 2026-01-15",
        "decision": "triggers/decisions/2026-01-15T00:00:00Z.json",
    }
    assert lineage.trained_because(record) == "drift on income (PSI 0.31) on 2026-01-15"


def test_a_version_registered_before_reasons_were_kept_says_so() -> None:
    assert lineage.trained_because({"pipeline_run_id": "r0"}).startswith("not recorded")
    assert lineage.trained_because({"trigger": None}).startswith("not recorded")
