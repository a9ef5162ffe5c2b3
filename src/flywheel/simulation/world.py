"""The simulated world: the scenarios and policies a simulation plays, the settings of its own
store and generator under its root, and its clock (day 0 follows the warm-up window).

The policies: `triggers` is the trigger engine on the configured policy; `signals` the same
engine with its schedule off (it retrains on evidence only); `schedule` a retrain every 7
days, on the days the trigger policy's own schedule fires (the shipped cron's Mondays), so
that the two are compared on the same days; `never` keeps the first model; `daily` retrains
every day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal, get_args

from flywheel import cron
from flywheel.config import Scenario as GeneratorScenario
from flywheel.config import Settings
from flywheel.monitoring.cache import WindowCache
from flywheel.stores import Stores

Policy = Literal["triggers", "signals", "schedule", "never", "daily"]
POLICIES: tuple[str, ...] = get_args(Policy)
SimScenario = Literal[
    "stable",
    "covariate_drift",
    "concept_drift",
    "label_shift",
    "new_category",
    "broken_upstream",
    "bad_candidate",
]
SCENARIOS: tuple[str, ...] = get_args(SimScenario)


@dataclass(frozen=True)
class _World:
    """One simulation's fixed facts, its stores, opened once for all its days, and the
    reports its looks keep."""

    settings: Settings
    stores: Stores
    root: Path
    scenario: str
    seed: int
    policy: Policy
    change_day: int  # simulated day index
    label_delay: int
    traffic: int
    first_day: date  # the day of index 0
    # Each day's look takes the reports of the windows unchanged since an earlier day's.
    windows: WindowCache = field(default_factory=WindowCache)

    def day(self, index: int) -> date:
        return self.first_day + timedelta(days=index)

    def scheduled(self, index: int) -> bool:
        """Whether the `schedule` policy retrains at the end of day `index`."""
        return index % SCHEDULE_DAYS == schedule_offset(self.settings, self.first_day)


SCHEDULE_DAYS = 7


def schedule_offset(settings: Settings, first_day: date) -> int:
    """The first day (0 to 6) on which a tick of the trigger policy's schedule falls: the
    `schedule` policy retrains on it and every 7 days after, as a weekly cron fires. Without a
    schedule, or with one that has no tick in the first week, the seventh day."""
    schedule = settings.triggers.schedule
    if schedule is not None:
        parsed = cron.parse(schedule.cron)
        for index in range(SCHEDULE_DAYS):
            if parsed.matches_day(datetime.combine(first_day + timedelta(days=index), time())):
                return index
    return SCHEDULE_DAYS - 1


def policy_settings(settings: Settings, policy: str) -> Settings:
    """The settings a policy plays: `signals` has the trigger policy without its schedule."""
    if policy != "signals":
        return settings
    return settings.model_copy(
        update={"triggers": settings.triggers.model_copy(update={"schedule": None})}
    )


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def world_settings(
    settings: Settings, root: Path, scenario: str, seed: int, label_delay: int = 2
) -> Settings:
    """The settings of a simulation under `root`: its own store, batches and pipeline root,
    the generator playing `scenario` from the change day (counted after the warm-up window),
    and monitoring looking back only as many windows as the triggers and the delayed labels
    need (each day's look analyses again those whose inputs changed, the newest and those
    whose labels came back; the others come from the world's cache)."""
    generator = settings.data.generator
    triggers = settings.triggers
    needed = max(
        label_delay + 1,
        triggers.drift.windows if triggers.drift else 1,
        triggers.estimated_performance.windows if triggers.estimated_performance else 1,
    )
    warmup = settings.data.window_days
    underlying = scenario if scenario in get_args(GeneratorScenario) else "stable"
    return settings.model_copy(
        update={
            "storage": settings.storage.model_copy(
                update={"uri": str(root / "store"), "endpoint": None}
            ),
            "data": settings.data.model_copy(
                update={
                    "source": str(root / "batches"),
                    "generator": generator.model_copy(
                        update={
                            "scenario": underlying,
                            "seed": seed,
                            "change_day": warmup + generator.change_day,
                        }
                    ),
                }
            ),
            "pipeline": settings.pipeline.model_copy(update={"root": str(root / "pipeline-root")}),
            "monitoring": settings.monitoring.model_copy(
                update={
                    "windows": min(settings.monitoring.windows, needed),
                    "label_delay_days": label_delay,  # the world's: within the windows
                }
            ),
        }
    )
