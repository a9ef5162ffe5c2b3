"""The oracle a simulated policy is measured against: the generator's own probabilities.

Each day, on the rows production was judged on (its answered rows with a usable label), the
oracle's figure is what the best possible prediction from the rows' features is expected to
score, knowing how the generator drew their labels (`synthetic.best_scores`): for a
classifier, the mean over the rows of the chance that the most probable label is right; for
a regression, the mean expected absolute error of the conditional median. No model trained
on the features can expect more, whatever its data, so the oracle is an upper bound on
accuracy (a lower bound on an error) by construction, and the gap between it and production
is what staleness and learning cost together. It is an expectation, not a draw: on one day
production's realised accuracy can be above it by chance (about 0.01 at 2,000 rows), never
on average.

The figure is computed while the day is played (`simulation.loop`) and kept in the day's
record (`Timeline.oracle`), so a stored timeline carries its oracle with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from flywheel import synthetic
from flywheel.config import GeneratorSettings

DEFINITION = (
    "the generator's own probabilities: on the rows production was judged on, the chance "
    "that the most probable label given the features is right (a regression: the expected "
    "absolute error of the conditional median); an upper bound on any model's expected "
    "accuracy (a lower bound on its error)"
)


def on_rows(generator: GeneratorSettings, day: date, rows: Sequence[int]) -> float | None:
    """The oracle's figure on `rows` (positions in `generate_day(day, generator)`'s batch);
    None without rows."""
    if not rows:
        return None
    best = synthetic.best_scores(day, generator)
    if max(rows) >= len(best) or min(rows) < 0:
        return None  # not the generator's batch of that day
    return round(float(best[list(rows)].mean()), 5)
