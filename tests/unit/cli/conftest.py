"""The `flywheel` fixture (harness.cli) for every CLI test, and projects' configuration files."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.config import Settings, load_settings
from harness.cli import (
    flywheel,  # noqa: F401  (the fixture, for every CLI test)
    write_config,
)
from harness.projects import SMALL


@pytest.fixture
def config_file(small_settings: Callable[..., Settings], tmp_path: Path) -> Path:
    """flywheel.yaml of an empty project under tmp_path (no batches, nothing registered)."""
    return write_config(small_settings(), tmp_path / "flywheel.yaml")


@pytest.fixture
def registered_config(registered: Settings, tmp_path: Path) -> Path:
    """flywheel.yaml of a copy of the session's project, with v1 in production."""
    shutil.copytree(registered.storage.uri, tmp_path / "store")
    shutil.copytree(registered.data.source, tmp_path / "batches")
    copy = load_settings(
        None,
        env={},
        overrides=[
            *SMALL,
            f"storage.uri={tmp_path / 'store'}",
            f"data.source={tmp_path / 'batches'}",
            f"pipeline.root={tmp_path / 'pipeline-root'}",
        ],
    )
    return write_config(copy, tmp_path / "flywheel.yaml")
