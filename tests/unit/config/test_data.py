"""The data sections: features and what may be asked of them."""

from __future__ import annotations

import pytest

from flywheel.config import ConfigError, load_settings


def test_a_monotonic_constraint_must_name_a_numeric_feature() -> None:
    with pytest.raises(
        ConfigError,
        match=r"features \(from --set features.monotonic.region\): Value error, monotonic: .region. is not a numeric feature",
    ):
        load_settings(None, env={}, overrides=["features.monotonic.region=increasing"])
