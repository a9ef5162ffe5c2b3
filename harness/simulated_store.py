"""A store made by a real `flywheel simulate` run, holding every kind of record the UI shows:
v1 from the warm-up, v2 a faulty candidate rolled back by its canary, v3 trained on a trigger's
firing and promoted by its canary; the alias revisions, rollout states and looks of both
canaries, the engine's decisions, the runs' records and each day's monitoring windows."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flywheel.config import Settings
from flywheel.registry import Registry
from flywheel.rollout.analysis import Window
from flywheel.rollout.controller import RolloutController
from flywheel.stores import Stores
from harness.projects import SMALL
from harness.rollouts import ReplayDriver

# bad_candidate registers its faulty version on the change day (day 0 here), which the canary
# rolls back. The generator is otherwise stable, so the firing is the schedule's: its cron
# moved from Monday to Wednesday, whose tick falls on day 1 (2026-01-07, the warm-up being the
# 5 days before), so two days hold both rollouts. 400 rows a day: a canary needs a few hundred.
SCENARIO, DAYS, ROWS, CHANGE_DAY, LABEL_DELAY = "bad_candidate", 2, 400, 0, 1
OVERRIDES = (
    *SMALL,
    f"data.generator.rows_per_day={ROWS}",
    "model.params.max_iter=40",
    "triggers.schedule.cron=0 3 * * 3",
)


@dataclass(frozen=True)
class SimulatedStore:
    """The simulation's folder and what it took to make."""

    root: Path
    seconds: float

    @property
    def config(self) -> Path:
        """The world's settings, as `flywheel --config` reads them: its store, its model."""
        return self.root / "settings.json"

    @property
    def settings(self) -> Settings:
        return Settings.from_json(self.config.read_text())

    def copy(self, root: Path) -> SimulatedStore:
        """The simulation copied to `root`, its settings pointing at the copy's store."""
        shutil.copytree(self.root, root)
        settings = self.settings
        moved = settings.model_copy(
            update={"storage": settings.storage.model_copy(update={"uri": str(root / "store")})}
        )
        (root / "settings.json").write_text(moved.to_json())
        return SimulatedStore(root, 0.0)


def simulate_store(root: Path) -> SimulatedStore:
    """Run `flywheel simulate` as a person types it into `root` (which must not exist or be
    empty); fail with its output if it fails."""
    args = [f"--set={override}" for override in OVERRIDES]
    command = [
        *(sys.executable, "-m", "flywheel.cli", *args, "simulate"),
        *("--scenario", SCENARIO, "--days", str(DAYS), "--change-day", str(CHANGE_DAY)),
        *("--traffic", str(ROWS), "--label-delay", str(LABEL_DELAY), "--out", str(root)),
    ]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=root.parent, capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"flywheel simulate exited with {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    return SimulatedStore(root, round(time.monotonic() - started, 1))


def canary_in_progress(settings: Settings, version: str, looks: list[Window]) -> RolloutController:
    """A canary of `version` against production, started by the real controller on a driver
    that moves no traffic and measures `looks` in turn: its start record and its first
    'progressing' state are in the store, and each `tick()` records the next look."""
    controller = RolloutController(
        Registry.from_settings(settings),
        ReplayDriver(looks),
        settings.rollout,
        sleep=lambda seconds: None,
    )
    controller.start(version)
    return controller


def pages(settings: Settings) -> dict[str, str]:
    """Every page of the UI on this store, by a name: each list, each version and its diff,
    each rollout, two runs compared, each version's monitoring."""
    registry = Registry.from_settings(settings)
    versions = [m.version for m in registry.versions()]
    rollouts = [r["rollout_id"] for v in versions for r in registry.records(v, "rollout-start")]
    runs = [run.started.run_id for run in Stores(settings).ledger.runs()]
    found = {
        "versions": "/versions",
        **{f"version {v}": f"/versions/{v}" for v in versions},
        "diff": f"/diff?a={versions[0]}&b={versions[-1]}",
        "aliases": "/aliases",
        "rollouts": "/rollouts",
        **{f"rollout {r}": f"/rollouts/{r}" for r in rollouts},
        "triggers": "/triggers",
        "monitoring": "/monitoring",
        "runs": "/runs",
        "runs compared": f"/runs/compare?a={runs[0]}&b={runs[-1]}",
    }
    return found
