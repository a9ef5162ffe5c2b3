"""The store every UI test reads: the session's registry with the rest of the loop in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.config import Settings
from flywheel.storage import LocalStore
from harness.loopstore import loop_store as written


@pytest.fixture
def loop_store(registered: Settings, tmp_path: Path) -> LocalStore:
    return written(registered, tmp_path / "loop")
