"""The base of every settings model: assigning to a field is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flywheel.config import Settings


def test_settings_are_frozen() -> None:
    # given the settings, when a field is assigned, then pydantic refuses it
    settings = Settings()
    with pytest.raises(ValidationError, match="Instance is frozen"):
        settings.model_name = "other"  # type: ignore[misc]
