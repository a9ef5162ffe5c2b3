"""A store made by a real `flywheel simulate` run, holding every kind of record the UI shows:
v1 from the warm-up, v2 a faulty candidate rolled back by its canary, v3 trained on a trigger's
firing and promoted by its canary; the alias revisions, rollout states and looks of both
canaries, the engine's decisions, the runs' records and each day's monitoring windows."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flywheel.config import Settings
from harness.projects import SMALL

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
