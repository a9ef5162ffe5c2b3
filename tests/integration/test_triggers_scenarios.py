"""The trigger engine on the generator's scenarios under the shipped settings: the repository's
flywheel.yaml (2,000 rows a day, the weekly schedule, the 72-hour cooldown, seven daily windows)
with only the paths and the world changed. Days of traffic are served through the real serving
class into a local store, labels come back two days late (`flywheel simulate`'s default), and
the engine checks once at the end of each day.

The production model is the session's v1 (trained on days 0-4); a first run is marked at the
end of day 4, so the Monday schedule fires at the end of days 11, 18, 25... The change day is
11, a Monday: the schedule's run starts at its end, before any changed input or label has come
back, and is marked succeeded (its model awaits its rollout: v1 stays in production). The concept
drift is sudden from day 11, whose labels come back at the end of day 13; the covariate drift
is zero on day 11 and grows from day 12, so its second drifted window closes at the end of
day 13. A check at the end of day d sees the windows up to day d and the labels of day d - 2.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import Settings, load_settings
from flywheel.monitoring.cache import WindowCache
from flywheel.monitoring.monitor import monitor
from flywheel.monitoring.records import latest_records
from flywheel.registry import Registry
from flywheel.simulation.traffic import serve_day
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from flywheel.triggers import engine
from flywheel.triggers.engine import Decision

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).parents[2] / "flywheel.yaml"
CHANGE_DAY = 11
LABEL_DELAY = 2
MONITORED = {"drift", "performance", "estimated_performance"}


def project(registered: Settings, root: Path, scenario: str) -> Settings:
    """A copy of the session's project (v1 trained on days 0-4) playing `scenario` under the
    shipped flywheel.yaml, with a first run marked at the end of day 4."""
    shutil.copytree(registered.storage.uri, root / "store")
    for written in ("predictions", "feedback", "monitoring", "summaries", "triggers"):
        shutil.rmtree(root / "store" / written, ignore_errors=True)
    shutil.copytree(registered.data.source, root / "batches")
    settings = load_settings(
        SHIPPED,
        env={},
        overrides=[
            f"storage.uri={root / 'store'}",
            f"data.source={root / 'batches'}",
            f"pipeline.root={root / 'pipeline-root'}",
            f"data.generator.scenario={scenario}",
            f"data.generator.change_day={CHANGE_DAY}",
        ],
    )
    assert settings.data.generator.rows_per_day == 2000
    assert settings.triggers.cooldown_hours == 72
    stores = Stores(settings)
    first = engine.check(
        settings, stores.registry, stores.source, now=end_of(settings, 4), force="first run"
    )
    engine.run_started(stores.ledger, first, "initial")
    engine.run_finished(stores.ledger, "initial", succeeded=True, now=first.at)
    return settings


def end_of(settings: Settings, day_index: int) -> datetime:
    day = settings.data.generator.start_date + timedelta(days=day_index)
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def play(
    settings: Settings,
    days: range,
    stop_on: set[str] | None = None,
    cache: WindowCache | None = None,
) -> dict[int, Decision]:
    """Serve each day (all its rows) and check at its end, the checks keeping the reports of
    the windows that did not change in `cache` (a new one if None), as `flywheel simulate`
    does. A fired decision's run is marked started and finished at once, with no training: a
    run the schedule started as succeeded (its model awaiting its rollout), any other as
    refused by the gate. v1 stays in production throughout."""
    decisions: dict[int, Decision] = {}
    cache = WindowCache() if cache is None else cache
    stores = Stores(settings)
    registry, source = stores.registry, stores.source
    for index in days:
        day = settings.data.generator.start_date + timedelta(days=index)
        serve_day(
            settings, registry, source, day, version="production", label_delay_days=LABEL_DELAY
        )
        decision = engine.check(
            settings, registry, source, now=end_of(settings, index), cache=cache
        )
        decisions[index] = decision
        if decision.fired:
            run_id = f"run-{index}"
            scheduled = "schedule" in {f.kind for f in decision.firings}
            engine.run_started(stores.ledger, decision, run_id)
            engine.run_finished(
                stores.ledger, run_id, succeeded=True, blessed=scheduled, now=decision.at
            )
        if stop_on and {f.kind for f in decision.firings} & stop_on:
            break
    return decisions


def stored(settings: Settings, decision: Decision) -> dict[str, Any]:
    store = LocalStore(settings.storage.uri)
    key = decision.record.removeprefix(store.location(""))
    return dict(json.loads(store.read(key)))


def first_firing(
    decisions: dict[int, Decision], kinds: set[str], figures: str = ""
) -> tuple[int, Decision]:
    for index, decision in decisions.items():
        if {f.kind for f in decision.firings} & kinds:
            return index, decision
    raise AssertionError(
        "never fired: "
        + "; ".join(f"day {i}: {d.reason}" for i, d in decisions.items())
        + (f"\n{figures}" if figures else "")
    )


def drift_figures(settings: Settings) -> str:
    """Each window's drift tests as monitoring recorded them last: the test's p-value against
    its threshold, the effect against its distance, and * where the feature drifted (for a
    failure message)."""
    store = LocalStore(settings.storage.uri)
    lines = []
    for report in latest_records(store, settings.model_name, "v1", "day"):
        tests = ", ".join(
            f"{f.feature} {f.result.test} p={f.result.p_value or 0:.2g}/{f.result.threshold:g} "
            f"{f.result.effect} {f.result.effect_size or 0:.3f}/{f.result.distance or 0:g}"
            + ("*" if f.result.drifted else "")
            for f in report.features
        )
        lines.append(f"{report.start:%Y-%m-%d} share {report.drifted_share:.2f}: {tests}")
    return "\n".join(lines)


def test_stable_traffic_fires_nothing_but_the_schedule_over_30_days(
    registered: Settings, tmp_path: Path
) -> None:
    # given a stable world
    settings = project(registered, tmp_path, "stable")
    # when 30 days are served and checked, each check analysing only the windows that changed
    # (how rarely a trigger fires falsely over longer runs is `make bench-loop`'s to measure)
    cache = WindowCache()
    decisions = play(settings, range(5, 35), cache=cache)
    # then only the weekly schedule (Mondays 03:00: days 11, 18, 25 and 32) fired
    fired = {i: [f.kind for f in d.firings] for i, d in decisions.items() if d.firings}
    assert fired == {day: ["schedule"] for day in range(11, 35, 7)}, [
        (i, d.reason) for i, d in decisions.items() if d.firings
    ]
    # and every record shows the numbers each trigger looked at, fired or not
    last = stored(settings, decisions[34])
    drift = next(c for c in last["checks"] if c["kind"] == "drift")
    assert [w["rows"] for w in drift["inputs"]["windows"]] == [2000, 2000]
    performance = next(c for c in last["checks"] if c["kind"] == "performance")
    assert performance["inputs"]["labelled"] == 2000
    assert performance["inputs"]["window"] == "2026-02-02"  # day 32: its labels came back today
    # and the last check's windows, most of them from the cache, are what a look without it
    # makes of the same store
    assert cache.hits > cache.misses
    end = end_of(settings, 34)
    looked = [
        r
        for r in latest_records(LocalStore(settings.storage.uri), settings.model_name, "v1", "day")
        if r.computed_at == end
    ]
    stores = Stores(settings)
    again = monitor(
        settings, stores.registry, stores.source, until=end, versions=["v1"], record=False, now=end
    )
    assert len(looked) == settings.monitoring.windows
    assert [r.model_dump() for r in looked] == [r.model_dump() for r in again.reports]


def test_covariate_drift_fires_within_three_days_past_a_schedule_run_and_the_lineage_says_why(
    registered: Settings, tmp_path: Path
) -> None:
    # given a world whose inputs drift from day 12, more every day
    settings = project(registered, tmp_path, "covariate_drift")
    # when days 8 to 16 are served and checked
    decisions = play(settings, range(8, 17), stop_on={"drift"})
    # then the schedule's run started at the end of the change day
    assert [f.kind for f in decisions[CHANGE_DAY].firings] == ["schedule"]
    assert decisions[CHANGE_DAY].fired
    # and drift fired within three days of the change, its run not held by that run's cooldown
    index, decision = first_firing(decisions, MONITORED, drift_figures(settings))
    assert CHANGE_DAY + 2 <= index <= CHANGE_DAY + 3, (
        f"{decision.reason}\n{drift_figures(settings)}"
    )
    assert [f.kind for f in decision.firings] == ["drift"]
    assert decision.fired, decision.reason
    assert decision.reason.startswith("drift: ") and "features drifted (" in decision.reason
    # and its record shows why: the drifted share of each window it needed
    record = stored(settings, decision)
    windows = next(c for c in record["checks"] if c["kind"] == "drift")["inputs"]["windows"]
    share = settings.triggers.drift.share
    assert share is not None
    assert len(windows) == 2 and all(w["drifted"] and w["drifted_share"] > share for w in windows)
    # when a run starts on it, then it registers a version whose lineage carries the reason
    from flywheel import runs

    run = runs.run_in_process(
        settings, tmp_path / "work", reason=decision.reason, decision=decision.record
    )
    gate = json.loads((tmp_path / "work" / "decision.json").read_text())
    refused = [c["detail"] for c in gate["checks"] if not c["passed"]]
    assert run.version, f"the gate refused the run on drift: {refused}"
    lineage = json.loads(Registry.from_settings(settings).read(run.version, "lineage.json"))
    assert lineage["trigger"] == {"reason": decision.reason, "decision": decision.record}


def test_concept_drift_fires_on_delayed_labels_within_two_days_past_a_schedule_run(
    registered: Settings, tmp_path: Path
) -> None:
    # given a world whose labels change on day 11, and whose inputs do not
    settings = project(registered, tmp_path, "concept_drift")
    # when days 8 to 15 are served and checked
    decisions = play(settings, range(8, 16), stop_on={"performance"})
    # then the schedule's run started at the end of the change day
    assert [f.kind for f in decisions[CHANGE_DAY].firings] == ["schedule"]
    # and the performance trigger fired once the change day's labels came back, although that
    # window had closed before the schedule's run started
    index, decision = first_firing(decisions, MONITORED)
    assert CHANGE_DAY <= index <= CHANGE_DAY + LABEL_DELAY, decision.reason
    assert [f.kind for f in decision.firings] == ["performance"] and decision.fired
    firing = decision.firings[0]
    assert firing.severity == "high"
    change = settings.data.generator.start_date + timedelta(days=CHANGE_DAY)
    assert firing.inputs["window"] == f"{change}"
    assert firing.inputs["interval"]["high"] < firing.inputs["threshold"]
    assert decision.reason.startswith("performance drop: accuracy ")
    assert stored(settings, decision)["reason"] == decision.reason
