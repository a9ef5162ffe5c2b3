"""Lineage: enough about a model's origin to trace any prediction back to its data and code."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# Packages whose versions decide whether a model loads and behaves the same elsewhere.
_PACKAGES = ("flywheel", "scikit-learn", "numpy", "pandas", "scipy", "joblib", "kfp", "seldon-core")

# Why a run that was started by hand (or by anything that gave no reason) trained.
MANUAL_RUN = "manual run"


def git_commit(cwd: Path | None = None) -> str | None:
    """The commit of the working tree (with -dirty if it has changes), or FLYWHEEL_GIT_COMMIT."""
    baked = os.environ.get("FLYWHEEL_GIT_COMMIT")
    if baked:
        return baked
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that matter for a model, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def code_version() -> str:
    """A digest of Flywheel's own source files, so a local code change invalidates cached steps."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def record(
    *,
    model_name: str,
    data: dict[str, Any],
    config: dict[str, Any],
    run_id: str,
    git: str | None,
    image: str | None,
    image_digest: str | None,
    trained_with: dict[str, str],
    reason: str = "",
    decision: str = "",
) -> dict[str, Any]:
    """The lineage record stored with a model version.

    `reason` is why the run was started (a trigger's one line, or "manual run"),
    `decision` the store key of the trigger engine's decision record, if any.
    """
    return {
        "model_name": model_name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": data,
        "git_commit": git,
        "config": config,
        "packages": trained_with,
        "pipeline_run_id": run_id,
        "image": image,
        "image_digest": image_digest,
        "trigger": {"reason": " ".join(reason.split()) or MANUAL_RUN, "decision": decision or None},
    }


def trained_because(record: dict[str, Any]) -> str:
    """Why the version a lineage record describes was trained, in one line."""
    trigger = record.get("trigger")
    if not isinstance(trigger, dict) or not trigger.get("reason"):
        return "not recorded (registered before runs carried a reason)"
    return str(trigger["reason"])
