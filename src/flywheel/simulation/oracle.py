"""The oracle a simulated policy is measured against: a model retrained every day.

For each day d, the oracle is trained on the window that ends with d's own labels (the
`window_days - 1` days before d (7 days in all by default: as accurate as 14 here, and
ten times cheaper), plus a seeded half of d's rows) and scored, at the 0.5
threshold, on the other half of d's rows. No real policy can do as well: it would need
the day's labels before serving the day. The gap between it and production is what
staleness costs. The training is the pipeline's (`training.build_pipeline`, the
configured estimator and parameters, no search), in-process, on the generator's batches.

Figures are cached in a JSON file, per generator (scenario, seed, change day, rows),
model settings, window and day: the four policies of one scenario share them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from flywheel import synthetic
from flywheel.config import GeneratorSettings, Settings
from flywheel.errors import FlywheelError
from flywheel.predictor import feature_frame
from flywheel.problem import resolve
from flywheel.training import build_pipeline, labels

if TYPE_CHECKING:
    import pandas as pd

    from flywheel.simulation.loop import Timeline

WINDOW_DAYS = 7


def oracle_accuracy(
    settings: Settings,
    days: Sequence[date],
    *,
    scenario: str | None = None,
    change_day: int | None = None,
    window_days: int | None = None,
    cache: Path | None = None,
) -> list[float | None]:
    """The daily-retrained oracle's performance on each of `days`, as the simulation measures
    production's: accuracy, or a regression's mean absolute error (None when a day's data
    cannot be trained on or scored, as on a broken batch)."""
    generator = settings.data.generator.model_copy(
        update={
            k: v for k, v in (("scenario", scenario), ("change_day", change_day)) if v is not None
        }
    )
    window = window_days or WINDOW_DAYS
    known = _read(cache)
    prefix = _prefix(settings, generator, window)
    frames: dict[date, pd.DataFrame] = {}
    # One OpenMP thread: on windows this small, thread pools cost more than they give.
    with threadpool_limits(limits=1, user_api="openmp"):
        out = [_cached(known, prefix, settings, generator, window, day, frames) for day in days]
    if cache is not None:
        _write(cache, known)
    return out


def for_timeline(
    settings: Settings,
    timeline: Timeline,
    *,
    window_days: int | None = None,
    cache: Path | None = None,
) -> list[float | None]:
    """The oracle on each day of a simulation of `settings`: the same world (scenario, seed,
    change day after the warm-up) as `simulate` played."""
    from flywheel.simulation.world import world_settings

    world = world_settings(settings, Path("."), timeline.scenario, timeline.seed)
    days = [r.day for r in timeline.records]
    return oracle_accuracy(world, days, window_days=window_days, cache=cache)


def _cached(
    known: dict[str, Any],
    prefix: str,
    settings: Settings,
    generator: GeneratorSettings,
    window: int,
    day: date,
    frames: dict[date, pd.DataFrame],
) -> float | None:
    key = f"{prefix}/{day.isoformat()}"
    if key not in known:
        known[key] = _score(settings, generator, window, day, frames)
        for old in [d for d in frames if d <= day - timedelta(days=window)]:
            del frames[old]  # only the window is kept in memory
    value = known[key]
    return None if value is None else float(value)


def _score(
    settings: Settings,
    generator: GeneratorSettings,
    window: int,
    day: date,
    frames: dict[date, pd.DataFrame],
) -> float | None:
    import numpy as np
    import pandas as pd

    features = settings.features

    def batch(d: date) -> pd.DataFrame:
        if d not in frames:
            frames[d] = synthetic.generate_day(d, generator)
        return frames[d]

    today = batch(day)
    rng = np.random.default_rng([settings.model.seed, day.toordinal()])
    half = rng.permutation(len(today)) < len(today) // 2
    history = [batch(day - timedelta(days=n)) for n in range(window - 1, 0, -1)]
    train = pd.concat([*history, today[half]], ignore_index=True)
    test = today[~half]
    try:
        problem = resolve(settings.model.task, train[features.label], features.label)
        model = build_pipeline(features, settings.model, problem.task)
        x = feature_frame(train, features.numeric, features.categorical)
        model.fit(x, labels(train, problem))
        predicted = model.predict(feature_frame(test, features.numeric, features.categorical))
        truth = labels(test, problem).to_numpy()
    except (KeyError, ValueError, TypeError, FlywheelError):
        return None  # a broken batch: the oracle has nothing to say about that day
    if not problem.is_classifier:  # a regression's mean absolute error, as production's
        return round(float(np.mean(np.abs(predicted - truth))), 5)
    return round(float((predicted == truth).mean()), 5)


def _prefix(settings: Settings, generator: GeneratorSettings, window: int) -> str:
    model = hashlib.sha256(
        json.dumps(
            [settings.model.model_dump(mode="json"), settings.features.model_dump(mode="json")],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    return (
        f"{generator.scenario}/seed{generator.seed}/change{generator.change_day}/"
        f"rows{generator.rows_per_day}/from{generator.start_date}/window{window}/model{model}"
    )


def _read(cache: Path | None) -> dict[str, Any]:
    if cache is None or not cache.exists():
        return {}
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache is recomputed, not trusted
    return known if isinstance(known, dict) else {}


def _write(cache: Path, known: dict[str, Any]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
    partial.write_text(json.dumps(known, sort_keys=True, indent=0))
    partial.replace(cache)
