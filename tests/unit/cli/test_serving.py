"""`flywheel serve` and `deploy` before any server starts (the servers themselves are
exercised against real seldon-core microservices in tests/integration/test_rollout_local.py)."""

from __future__ import annotations

from pathlib import Path

from harness.cli import Flywheel


def test_serve_of_an_unset_alias_starts_nothing(
    flywheel: Flywheel, config_file: Path, tmp_path: Path
) -> None:
    result = flywheel("-c", str(config_file), "serve", "candidate")
    assert (result.code, result.err.strip()) == (
        1,
        "error: alias 'candidate' of loan-default is not set",
    )
    assert not (tmp_path / "serve").exists()


def test_deploy_of_a_missing_version(flywheel: Flywheel, registered_config: Path) -> None:
    result = flywheel("-c", str(registered_config), "deploy", "v9")
    assert (result.code, result.err.strip()) == (1, "error: loan-default has no version v9")
