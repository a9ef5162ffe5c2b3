"""Production served over HTTP for a simulation: how its servers are set up, and who owns
their folder. Serving days through them is in tests/integration/test_simulation.py."""

from __future__ import annotations

import pytest

from flywheel.rollout.processes import DirectoryBusy
from flywheel.simulation.production import SERVE_DIR, _Production
from flywheel.simulation.world import _World


def test_production_is_one_worker_stamping_simulated_time_in_the_worlds_folder(
    world: _World,
) -> None:
    # when the world's production servers are set up (nothing starts before a gateway is asked)
    with _Production(world) as production:
        driver = production.driver
        # then one worker serves, each request stamped with its simulated time
        assert driver.settings.serving.workers == 1
        assert driver.parameters == {"stamp_from_request": "true"}
        # and their logs and process book live under the simulation's root
        assert driver.workdir == world.root / SERVE_DIR
        assert driver.gateway is None and not driver.backends
        # and a second owner of the same folder is refused while this one holds it
        with pytest.raises(DirectoryBusy, match="is in use by"):
            _Production(world)
    # then, once closed, the folder is free again (a resumed simulation takes it)
    with _Production(world) as resumed:
        assert resumed.driver.workdir == world.root / SERVE_DIR
