"""The trigger engine on the generator's scenarios: days of served traffic with labels two days
late, played through the real serving class into a local store, one check at the end of each
day with the default policy (new_data is off by default; the schedule is on).

The change day is 12. The covariate drift is gradual and zero on the change day itself
(incomes fall 1.5% a day from day 13), the concept drift is sudden from day 12; "within two
days" counts from the first day whose data differ. A check at the end of day d sees the
windows up to day d and the labels of day d - 2.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import Settings, load_settings
from flywheel.registry import Registry
from flywheel.simulation.traffic import serve_day
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from flywheel.triggers import engine
from flywheel.triggers.engine import Decision
from harness.projects import SMALL

pytestmark = pytest.mark.integration

CHANGE_DAY = 12
LABEL_DELAY = 2


def project(registered: Settings, root: Path, scenario: str) -> Settings:
    """A copy of the session's project (v1 trained on days 0-4) playing `scenario`."""
    shutil.copytree(registered.storage.uri, root / "store")
    for written in ("predictions", "feedback", "monitoring", "summaries", "triggers"):
        shutil.rmtree(root / "store" / written, ignore_errors=True)
    shutil.copytree(registered.data.source, root / "batches")
    return load_settings(
        None,
        env={},
        overrides=[
            *SMALL,
            f"storage.uri={root / 'store'}",
            f"data.source={root / 'batches'}",
            f"pipeline.root={root / 'pipeline-root'}",
            f"data.generator.scenario={scenario}",
            f"data.generator.change_day={CHANGE_DAY}",
            # three windows: the two newest for drift, and the one whose labels came back today
            "monitoring.windows=3",
            f"monitoring.label_delay_days={LABEL_DELAY}",
            "monitoring.skew_sample=50",
        ],
    )


def end_of(settings: Settings, day_index: int) -> datetime:
    day = settings.data.generator.start_date + timedelta(days=day_index)
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def play(settings: Settings, days: range, stop_on: set[str] | None = None) -> dict[int, Decision]:
    """Serve each day (all its rows) and check at its end; a fired decision's run is marked
    started and finished at once (no training: v1 stays in production)."""
    decisions: dict[int, Decision] = {}
    stores = Stores(settings)
    registry, source = stores.registry, stores.source
    for index in days:
        day = settings.data.generator.start_date + timedelta(days=index)
        serve_day(
            settings, registry, source, day, version="production", label_delay_days=LABEL_DELAY
        )
        decision = engine.check(settings, registry, source, now=end_of(settings, index))
        decisions[index] = decision
        if decision.fired:
            engine.run_started(stores.ledger, decision, f"run-{index}")
            engine.run_finished(stores.ledger, f"run-{index}", succeeded=True, now=decision.at)
        if stop_on and {f.kind for f in decision.firings} & stop_on:
            break
    return decisions


def stored(settings: Settings, decision: Decision) -> dict[str, Any]:
    store = LocalStore(settings.storage.uri)
    key = decision.record.removeprefix(store.location(""))
    return dict(json.loads(store.read(key)))


def first_firing(decisions: dict[int, Decision], kinds: set[str]) -> tuple[int, Decision]:
    for index, decision in decisions.items():
        if {f.kind for f in decision.firings} & kinds:
            return index, decision
    raise AssertionError(
        "never fired: " + "; ".join(f"day {i}: {d.reason}" for i, d in decisions.items())
    )


def test_stable_traffic_fires_nothing_but_the_schedule_over_28_days(
    registered: Settings, tmp_path: Path
) -> None:
    # given a stable world, and a first run marked at the start of day 5
    settings = project(registered, tmp_path, "stable")
    stores = Stores(settings)
    first = engine.check(
        settings,
        stores.registry,
        stores.source,
        now=end_of(settings, 4),
        force="initial training",
    )
    engine.run_started(stores.ledger, first, "initial")
    engine.run_finished(stores.ledger, "initial", succeeded=True, now=first.at)
    # when 28 days are served and checked
    decisions = play(settings, range(5, 33))
    # then only the weekly schedule (Mondays 03:00: days 11, 18, 25, 32) fired
    fired = {i: [f.kind for f in d.firings] for i, d in decisions.items() if d.firings}
    assert fired == {11: ["schedule"], 18: ["schedule"], 25: ["schedule"], 32: ["schedule"]}, [
        (i, d.reason) for i, d in decisions.items() if d.firings
    ]
    # and every record shows the numbers each trigger looked at, fired or not
    last = stored(settings, decisions[32])
    drift = next(c for c in last["checks"] if c["kind"] == "drift")
    assert [w["rows"] for w in drift["inputs"]["windows"]] == [600, 600]
    performance = next(c for c in last["checks"] if c["kind"] == "performance")
    assert (
        performance["inputs"]["labelled"] == 600 and performance["inputs"]["window"] == "2026-01-31"
    )


def test_covariate_drift_fires_on_drift_within_two_days_and_the_lineage_says_why(
    registered: Settings, tmp_path: Path
) -> None:
    # given a world whose inputs start drifting on day 13
    settings = project(registered, tmp_path, "covariate_drift")
    # when days 9 to 17 are served and checked
    decisions = play(settings, range(9, 18), stop_on={"drift"})
    # then nothing fired before the change, and drift fired within two days of it
    index, decision = first_firing(decisions, {"drift", "performance", "estimated_performance"})
    first_changed = CHANGE_DAY + 1
    assert first_changed <= index <= first_changed + 2, decision.reason
    assert [f.kind for f in decision.firings] == ["drift"] and decision.fired
    assert decision.reason.startswith("drift: ") and "features drifted (" in decision.reason
    # and its record shows why: the drifted share of each window it needed
    record = stored(settings, decision)
    windows = next(c for c in record["checks"] if c["kind"] == "drift")["inputs"]["windows"]
    assert all(w["drifted"] and w["drifted_share"] > 0.3 for w in windows)
    # when a run starts on it, then the version it registers carries the reason in its lineage
    from flywheel import runs

    run = runs.run_in_process(
        settings, tmp_path / "work", reason=decision.reason, decision=decision.record
    )
    if run.version:
        lineage = json.loads(Registry.from_settings(settings).read(run.version, "lineage.json"))
        assert lineage["trigger"] == {"reason": decision.reason, "decision": decision.record}


def test_concept_drift_fires_on_delayed_labels_within_two_days(
    registered: Settings, tmp_path: Path
) -> None:
    # given a world whose labels change on day 12, and whose inputs do not
    settings = project(registered, tmp_path, "concept_drift")
    # when days 9 to 16 are served and checked
    decisions = play(settings, range(9, 17), stop_on={"performance"})
    # then the performance trigger fired once the changed day's labels came back
    index, decision = first_firing(decisions, {"drift", "performance", "estimated_performance"})
    assert CHANGE_DAY <= index <= CHANGE_DAY + 2, decision.reason
    assert [f.kind for f in decision.firings] == ["performance"] and decision.fired
    firing = decision.firings[0]
    assert firing.severity == "high"
    assert firing.inputs["window"] == f"{date(2026, 1, 1) + timedelta(days=CHANGE_DAY)}"
    assert firing.inputs["interval"]["high"] < firing.inputs["threshold"]
    assert decision.reason.startswith("performance drop: accuracy ")
    assert stored(settings, decision)["reason"] == decision.reason
