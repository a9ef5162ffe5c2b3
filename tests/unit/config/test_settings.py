"""The root of the configuration and its serialised form."""

from __future__ import annotations

from flywheel.config import Settings


def test_defaults_round_trip_through_json() -> None:
    settings = Settings()
    assert Settings.from_json(settings.to_json()) == settings
