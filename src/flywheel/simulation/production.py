"""Production served over HTTP for a simulation (`servers=True`): the gateway and one
seldon-core microservice on loopback, replaced by the next day after a promotion."""

from __future__ import annotations

from flywheel.simulation.world import _World

SERVE_DIR = "serve"  # under the simulation's root: the servers' logs and process book


class _Production:
    """The gateway and one seldon-core microservice serving production, on loopback.

    Started with `stamp_from_request` (a replay: each request carries its simulated time) and
    one worker (the simulation sends one request at a time). The LocalDriver's process book
    stops them all on close, Ctrl-C or SIGTERM included, and what a killed simulation left
    running is stopped by the next one in the same folder (`resume`).
    """

    def __init__(self, world: _World) -> None:
        from flywheel.rollout.local import LocalDriver

        settings = world.settings
        one_worker = settings.serving.model_copy(update={"workers": 1})
        self.driver = LocalDriver(
            settings.model_copy(update={"serving": one_worker}),
            workdir=world.root / SERVE_DIR,
            parameters={"stamp_from_request": "true"},
        )

    def __enter__(self) -> _Production:
        return self

    def __exit__(self, *exc: object) -> None:
        self.driver.close()

    def gateway(self, version: str) -> str:
        """The gateway's URL, routing to `version` alone: its microservice is started (and
        waited for) first, then the routes move, then the one it replaces is stopped."""
        if self.driver.applied != (version, version, 0):
            self.driver.serve(version)
        return self.driver.gateway_url
