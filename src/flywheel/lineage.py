"""Lineage: enough about a model's origin to trace any prediction back to its data and code."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from dataclasses import dataclass
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


def flat(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested configuration as dotted keys: {"promotion.min_metric": 0.75, ...}; lists
    are values, as `--set` writes them."""
    if not isinstance(config, dict) or (prefix and not config):
        return {prefix: config}
    items: dict[str, Any] = {}
    for key, value in config.items():
        items.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return items


def batch_days(record: dict[str, Any]) -> list[str]:
    """The days of the batches a version trained on."""
    batches = (record.get("data") or {}).get("batches", [])
    return [b["day"] if isinstance(b, dict) else str(b) for b in batches]


def features(record: dict[str, Any]) -> list[str]:
    """The features a version was configured with, numeric first."""
    configured = (record.get("config") or {}).get("features") or {}
    return [*configured.get("numeric", []), *configured.get("categorical", [])]


@dataclass(frozen=True)
class VersionDiff:
    """What changed from one version to the next, as `models diff` and the UI show it."""

    config: list[tuple[str, Any, Any]]  # (key, before, after); "(unset)" where one has none
    days: tuple[list[str], list[str]]
    added_days: list[str]
    dropped_days: list[str]
    hashes: tuple[str, str]
    features: tuple[list[str], list[str]]
    metrics: list[tuple[str, Any, Any, float | None]]  # (name, before, after, change)
    # (feature, before, after) permutation importances, each {mean, low, high} or None;
    # empty when neither evaluation has them.
    importances: list[tuple[str, Any, Any]]

    @property
    def gained(self) -> list[str]:
        """Features the newer version has and the older one had not."""
        return [f for f in self.features[1] if f not in self.features[0]]

    @property
    def lost(self) -> list[str]:
        """Features the older version had and the newer one has not."""
        return [f for f in self.features[0] if f not in self.features[1]]


def diff(left: dict[str, Any], right: dict[str, Any]) -> VersionDiff:
    """The difference of two versions, each given as its stored lineage, metrics and
    evaluation ({"lineage": ..., "metrics": ..., "evaluation": ...})."""
    before, after = (
        flat(left["lineage"].get("config") or {}),
        flat(right["lineage"].get("config") or {}),
    )
    changed = sorted(
        k for k in before.keys() | after.keys() if before.get(k, ...) != after.get(k, ...)
    )
    days = (batch_days(left["lineage"]), batch_days(right["lineage"]))
    data = [side["lineage"].get("data") or {} for side in (left, right)]
    hashes = tuple(str(d.get("content_hash") or "?")[:12] for d in data)
    names = (features(left["lineage"]), features(right["lineage"]))
    metrics = (left["metrics"], right["metrics"])
    rows: list[tuple[str, Any, Any, float | None]] = []
    for name in sorted(metrics[0].keys() | metrics[1].keys()):
        was, now = metrics[0].get(name), metrics[1].get(name)
        numbers = isinstance(was, float | int) and isinstance(now, float | int)
        rows.append((name, was, now, now - was if numbers else None))
    importances = [
        ((side.get("evaluation") or {}).get("candidate") or {}).get("importance") or {}
        for side in (left, right)
    ]
    ranked = [*names[1], *(f for f in names[0] if f not in names[1])]
    return VersionDiff(
        config=[(k, before.get(k, "(unset)"), after.get(k, "(unset)")) for k in changed],
        days=days,
        added_days=sorted(set(days[1]) - set(days[0])),
        dropped_days=sorted(set(days[0]) - set(days[1])),
        hashes=(hashes[0], hashes[1]),
        features=names,
        metrics=rows,
        importances=(
            [(n, importances[0].get(n), importances[1].get(n)) for n in ranked]
            if importances[0] or importances[1]
            else []
        ),
    )
