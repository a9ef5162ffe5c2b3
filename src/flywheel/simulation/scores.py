"""The figures of a simulated timeline: how well and how cheaply a retraining policy did.

Every function reads a `Timeline` (flywheel.simulation.loop) and nothing else, so the
report and `make bench-loop` compute the same numbers the same way:

- detection delay: for the policies that decide from signals (`triggers`, `signals`), days
  from the scenario's change day to the first blessed run on or after it that a signal
  started (not the schedule, not a force); None on `stable`, for the other policies, or
  when no such run came;
- first blessed run: days from the change day to the first blessed run on or after it,
  whatever started it (the calendar policies' answer to a change);
- days below the floor: days whose production accuracy was under `floor`;
- mean production metric: production's accuracy over every row it was judged on, each day
  weighted by its judged rows (`DayRecord.judged`), so a day that answered 25 rows counts
  for 25 rows, not as much as a day of 2,000;
- retrains: days on which a pipeline run started;
- model age while serving: the production model's age when the day began (the age recorded
  at the end of the day before), since a model deployed at a day's end served none of it;
- false triggers: for the policies that decide from signals, firings other than the schedule
  (and a forced run) on days the world had not changed (every day of `stable`, the days
  before the change otherwise); None for the other policies;
- the cost of staleness: accuracy lost per day of model age (see `staleness_cost`).

The oracle's mean and the gap to it are weighted alike, on the same days, so production is
compared with the oracle row for row. The oracle is an expectation and production a draw:
an unweighted mean of days lets a few small days' luck decide. On `new_category` almost
every request is refused after the change, so 23 of 30 days were judged on 25 to 125 rows.
Their mean of days put production 0.016 above the oracle. Over the rows, it was 0.003 below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flywheel.config import Settings

if TYPE_CHECKING:
    from flywheel.simulation.loop import DayRecord, Timeline

# The days' accuracy floor when the configuration names none in accuracy.
DEFAULT_FLOOR = 0.7


def floor(settings: Settings) -> float | None:
    """The bound the days' performance is held to. A classifier's accuracy: the performance
    trigger's floor, when it defends accuracy; else the promotion minimum when the gate judges
    accuracy; else DEFAULT_FLOOR (a roc_auc minimum is no bar for accuracy). A regression's
    mean absolute error: the trigger's ceiling, or the gate's maximum, on mae; else none."""
    performance = settings.triggers.performance
    task = settings.data.generator.task
    metric = "mae" if task == "regression" else "accuracy"
    if performance is not None and performance.metric_for(task) == metric:
        bound = performance.ceiling if metric == "mae" else performance.floor
        if bound:
            return bound
    if settings.promotion.metric == metric:
        return settings.promotion.threshold(task)
    return None if metric == "mae" else DEFAULT_FLOOR


# Reasons of firings that are not evidence of a change: the calendar, and a person.
NOT_SIGNALS = ("schedule", "forced:")
# The policies that decide from signals: the others retrain by the calendar, or never.
SIGNAL_POLICIES = ("triggers", "signals")


def detection_delay(timeline: Timeline) -> int | None:
    """Days from the change day to the first blessed run on or after it that a signal started
    (a policy that decides from signals only)."""
    if timeline.policy not in SIGNAL_POLICIES:
        return None
    return _first_blessed(timeline, signal=True)


def first_blessed(timeline: Timeline) -> int | None:
    """Days from the change day to the first blessed run on or after it, whatever started it."""
    return _first_blessed(timeline, signal=False)


def _first_blessed(timeline: Timeline, *, signal: bool) -> int | None:
    if timeline.scenario == "stable":
        return None
    for record in timeline.records:
        run = record.run or {}
        if record.index < timeline.change_day or not is_retrain(record.run):
            continue
        if not run.get("blessed"):
            continue
        if signal and not is_signal(str((record.decision or {}).get("reason", ""))):
            continue
        return record.index - timeline.change_day
    return None


def _sign(timeline: Timeline) -> float:
    """+1 where a higher performance is better (accuracy), -1 for an error."""
    return -1.0 if timeline.lower_is_better else 1.0


def days_below(timeline: Timeline, floor: float | None = DEFAULT_FLOOR) -> int | None:
    """Days whose production performance was on the wrong side of `floor`: under it for
    accuracy, over it for an error (days without a figure do not count; no bound, None)."""
    if floor is None:
        return None
    sign = _sign(timeline)
    return sum(
        1
        for r in timeline.records
        if r.performance is not None and sign * r.performance < sign * floor
    )


def judged_rows(record: DayRecord) -> int:
    """The rows a day's performance was judged on (its answered rows in older timelines)."""
    return record.rows if record.judged is None else record.judged


def mean_metric(timeline: Timeline) -> float | None:
    """Production's performance over the rows it was judged on: the days' figures weighted by
    their judged rows (days without a figure do not count)."""
    return _weighted([(r.performance, judged_rows(r)) for r in timeline.records])


def is_retrain(run: dict[str, Any] | None) -> bool:
    """Whether a day's run is a pipeline run (not the faulty version `bad_candidate` plants)."""
    return run is not None and not str(run.get("run_id", "")).startswith("faulty-")


def retrains(timeline: Timeline) -> int:
    """Days on which a pipeline run started: the policy's cost."""
    return sum(1 for r in timeline.records if is_retrain(r.run))


def is_signal(reason: str) -> bool:
    """Whether a fired decision's reason holds a firing other than the schedule or a force."""
    return any(not part.strip().startswith(NOT_SIGNALS) for part in reason.split("; "))


def false_triggers(timeline: Timeline) -> int | None:
    """Fired decisions of a signal policy, other than the schedule, while nothing changed."""
    if timeline.policy not in SIGNAL_POLICIES:
        return None
    count = 0
    for record in timeline.records:
        unchanged = timeline.scenario == "stable" or record.index < timeline.change_day
        decision = record.decision or {}
        if unchanged and decision.get("fired") and is_signal(str(decision.get("reason", ""))):
            count += 1
    return count


def oracle_gap(timeline: Timeline, oracle: Sequence[float | None]) -> float | None:
    """How much worse production was than the oracle over the rows both judged, on the days
    with both: oracle minus production accuracy, or production minus oracle error."""
    sign = _sign(timeline)
    return _weighted(
        [
            (sign * (o - r.performance), judged_rows(r))
            for r, o in _paired(timeline, oracle)
            if r.performance is not None
        ]
    )


def oracle_mean(timeline: Timeline, oracle: Sequence[float | None]) -> float | None:
    """The oracle's figure over the rows production was judged on, weighted as `mean_metric`."""
    return _weighted([(o, judged_rows(r)) for r, o in _paired(timeline, oracle)])


def staleness_cost(
    timeline: Timeline, oracle: Sequence[float | None] | None = None
) -> dict[str, Any]:
    """Performance lost per day of model age: the least-squares slope of the gap to the oracle
    (how much worse production was, each day: `oracle_gap`'s terms) against the production
    model's age in days; without an oracle, the slope of production's worsening (minus its
    accuracy, or its error) against age. Each day weighs as many rows as it was judged on, and
    the age is the one while serving (`serving_ages`). Positive means an older model is worse;
    `points` is how many days entered the fit."""
    ages = serving_ages(timeline)
    sign = _sign(timeline)
    if oracle is not None:
        points = [
            (age, sign * (o - r.performance), judged_rows(r))
            for (r, o), age in zip(_paired(timeline, oracle, keep=True), ages, strict=True)
            if o is not None and r.performance is not None and age is not None
        ]
        against = "gap to the oracle"
    else:
        points = [
            (age, -sign * r.performance, judged_rows(r))
            for r, age in zip(timeline.records, ages, strict=True)
            if r.performance is not None and age is not None
        ]
        against = f"production {timeline.metric}"
    points = [(x, y, n) for x, y, n in points if n > 0]
    slope = _slope([(float(x), y, float(n)) for x, y, n in points])
    return {"per_day": slope, "points": len(points), "from": against, "metric": timeline.metric}


def serving_ages(timeline: Timeline) -> list[float | None]:
    """Each day's production model age when the day began: the age at the end of the day
    before (the first day: its own age less the day, not under 0)."""
    out: list[float | None] = []
    previous: float | None = None
    for n, record in enumerate(timeline.records):
        if n == 0:
            age = record.model_age_days
            out.append(None if age is None else max(0.0, age - 1))
        else:
            out.append(previous)
        previous = record.model_age_days
    return out


def summary(
    timeline: Timeline,
    oracle: Sequence[float | None] | None = None,
    floor: float | None = DEFAULT_FLOOR,
) -> dict[str, Any]:
    """Every figure of one timeline, as summary.json and the benchmark hold them."""
    ages = [r.model_age_days for r in timeline.records if r.model_age_days is not None]
    return {
        "task": timeline.task,
        "metric": timeline.metric,
        "scenario": timeline.scenario,
        "policy": timeline.policy,
        "seed": timeline.seed,
        "days": timeline.days,
        "change_day": timeline.change_day,
        "label_delay": timeline.label_delay,
        "traffic": timeline.traffic,
        "floor": floor,
        "detection_delay_days": detection_delay(timeline),
        "first_blessed_days": first_blessed(timeline),
        "days_below_floor": days_below(timeline, floor),
        "mean_metric": _round(mean_metric(timeline)),
        "retrains": retrains(timeline),
        "false_triggers": false_triggers(timeline),
        "promotions": _phases(timeline, ("promoted", "direct")),
        "rollbacks": _phases(timeline, ("rolled_back",)),
        "blocked_batches": sum(1 for r in timeline.records if r.batch_blocked),
        **refused(timeline),
        "mean_model_age_days": _round(sum(ages) / len(ages) if ages else None),
        "oracle_mean_metric": _round(oracle_mean(timeline, oracle)) if oracle is not None else None,
        "oracle_gap": _round(oracle_gap(timeline, oracle)) if oracle is not None else None,
        "staleness_cost": {
            **(cost := staleness_cost(timeline, oracle)),
            "per_day": _round(cost["per_day"], 5),
        },
        "wall_seconds": round(timeline.wall_seconds, 1),
    }


def refused(timeline: Timeline) -> dict[str, Any]:
    """The rows production refused (a 400: a category or a value its contract does not know),
    and their share of the rows sent. Accuracy counts answered rows only, so a day that refused
    most of its traffic can look accurate: this is the figure that shows it."""
    rows = sum(r.refused for r in timeline.records)
    sent = rows + sum(r.rows for r in timeline.records)
    return {"refused_rows": rows, "refused_share": _round(rows / sent if sent else None)}


def _paired(
    timeline: Timeline, oracle: Sequence[float | None], keep: bool = False
) -> list[tuple[Any, Any]]:
    """(record, oracle) of each day; only the days with an oracle figure unless `keep`."""
    pairs = [(r, o) for r, o in zip(timeline.records, oracle, strict=False)]
    pairs += [(r, None) for r in timeline.records[len(pairs) :]]
    return pairs if keep else [(r, o) for r, o in pairs if o is not None]


def _phases(timeline: Timeline, phases: tuple[str, ...]) -> int:
    return sum(1 for r in timeline.records if r.rollout and r.rollout.get("phase") in phases)


def _weighted(pairs: Sequence[tuple[float | None, int]]) -> float | None:
    """The mean of the values weighted by their counts; None without a value and a count."""
    present = [(v, n) for v, n in pairs if v is not None and n > 0]
    total = sum(n for _, n in present)
    return sum(v * n for v, n in present) / total if total else None


def _slope(points: list[tuple[float, float, float]]) -> float | None:
    """The weighted least-squares slope of y on x over (x, y, weight); None with fewer than 3
    points or a single x."""
    if len(points) < 3:
        return None
    total = sum(w for _, _, w in points)
    mx = sum(x * w for x, _, w in points) / total
    my = sum(y * w for _, y, w in points) / total
    sxx = sum(w * (x - mx) ** 2 for x, _, w in points)
    if sxx == 0:
        return None
    return sum(w * (x - mx) * (y - my) for x, y, w in points) / sxx


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
