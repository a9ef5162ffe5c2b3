"""Small real projects: a fast configuration, its daily batches, and the whole pipeline run in
this process."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from flywheel import batches, synthetic
from flywheel.config import FeatureSettings, Settings
from flywheel.storage import open_store

# The features of the default configuration, in order: numeric, then categorical.
FEATURE_NAMES = FeatureSettings().columns
# A small, fast configuration: 5 days of 600 rows, no hyper-parameter search.
SMALL = [
    "data.window_days=5",
    "data.generator.rows_per_day=600",
    "data.generator.change_day=3",
    "model.search.enabled=false",
    "model.params.max_iter=60",
    "promotion.min_metric=0.7",
    "contract.min_rows=50",
]


def write_batches(
    settings: Settings,
    days: int,
    start: date | None = None,
    fmt: str = "parquet",
    **generator: object,
) -> list[str]:
    """Generate `days` daily batches into the settings' data source."""
    gen = settings.data.generator.model_copy(update=generator)
    source = batches.BatchSource(open_store(settings.data.source, settings.storage))
    first = start or gen.start_date
    return [
        source.write(day, synthetic.generate_day(day, gen), fmt)
        for day in synthetic.days(first, days)
    ]


def train_and_register(settings: Settings, work: Path, run_id: str = "r1") -> str:
    """Run every pipeline step in this process; return the registered version ('' if not blessed)."""
    from flywheel import runs

    return runs.run_in_process(settings, work, run_id=run_id, git_commit="abc123").version
