"""`flywheel demo bad-candidate`: a faulty version for a rollback drill."""

from __future__ import annotations

import json
from pathlib import Path

from flywheel.config import load_settings
from flywheel.registry import PRODUCTION, Registry
from harness.cli import Flywheel


def test_it_registers_a_faulty_version_and_leaves_production_alone(
    flywheel: Flywheel, registered_config: Path
) -> None:
    result = flywheel("-c", str(registered_config), "demo", "bad-candidate", "--kind", "shuffled")
    assert result.code == 0, result.text
    assert "registered v2, a deliberately faulty (shuffled) model" in result.out
    settings = load_settings(registered_config, env={})
    registry = Registry.from_settings(settings)
    assert registry.resolve(PRODUCTION) == "v1"
    lineage = json.loads(registry.read("v2", "lineage.json"))
    assert "never passed the gate" in lineage["note"]
