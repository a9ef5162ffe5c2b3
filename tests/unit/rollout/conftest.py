"""The registry that the controller's tests and its metrics' tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.registry import Registry
from flywheel.storage import LocalStore


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """Model m with v1 in production and v2 registered."""
    reg = Registry(LocalStore(tmp_path), "m")
    for tag in "ab":
        reg.register({"model.joblib": tag.encode()}, run_id=tag)
    reg.move_alias("production", "v1", expected=None, reason="first", actor="test")
    return reg
