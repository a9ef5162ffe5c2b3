"""One evaluation over a real local store holding the session's registered v1: the records it
reads, the monitoring it runs when they are missing, the safeguards and the decision record."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel import synthetic
from flywheel.config import Settings, load_settings
from flywheel.evaluation import Evaluation
from flywheel.monitoring.records import PREFIX as MONITORING
from flywheel.monitoring.records import write_record
from flywheel.monitoring.window import WindowReport
from flywheel.registry import PRODUCTION
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from flywheel.triggers import engine
from flywheel.triggers.engine import Decision, TriggerError
from flywheel.triggers.ledger import Ledger, LedgerError, RunStarted
from harness.projects import SMALL
from harness.reports import DAY0, interval, window_report
from harness.servers import free_ports
from harness.traffic import log_traffic

THREE = ("income", "loan_amount", "credit_score")
# The end of day 2 after DAY0, a few minutes after monitoring recorded it.
NOW = DAY0 + timedelta(days=3, minutes=10)


@pytest.fixture
def project(registered: Settings, tmp_path: Path) -> Settings:
    """A copy of the session's project (v1 in production, five batches), without other tests'
    logs and records; schedule and code change off unless a test turns them on."""
    shutil.copytree(registered.storage.uri, tmp_path / "store")
    for written in ("predictions", "feedback", "monitoring", "summaries", "triggers"):
        shutil.rmtree(tmp_path / "store" / written, ignore_errors=True)
    shutil.copytree(registered.data.source, tmp_path / "batches")
    return settings_for(tmp_path)


def settings_for(root: Path, *extra: str) -> Settings:
    return load_settings(
        None,
        env={},
        overrides=[
            *SMALL,
            f"storage.uri={root / 'store'}",
            f"data.source={root / 'batches'}",
            "triggers.schedule=null",
            # the hand-built records stay fresh all day: monitoring need not run again
            "triggers.records_max_age_hours=24",
            *extra,
        ],
    )


def check(settings: Settings, **options: Any) -> Decision:
    """One evaluation on the stores of `settings`."""
    stores = Stores(settings)
    return engine.check(settings, stores.registry, stores.source, **options)


def ledger(settings: Settings) -> Ledger:
    return Stores(settings).ledger


def store_of(settings: Settings) -> LocalStore:
    return LocalStore(settings.storage.uri)


def record(settings: Settings, *reports: WindowReport) -> None:
    for report in reports:
        write_record(store_of(settings), report)


def decisions(settings: Settings) -> list[dict[str, Any]]:
    store = store_of(settings)
    return [json.loads(store.read(k)) for k in store.list("triggers/loan-default/decisions")]


def test_fresh_records_are_judged_and_the_decision_is_recorded_with_its_numbers(
    project: Settings,
) -> None:
    # given monitoring records of two drifted days, computed after each day closed
    record(project, window_report(1, drifted=THREE), window_report(2, drifted=THREE))
    # when the engine looks, ten minutes after the second day
    decision = check(project, now=NOW)
    # then drift fired, the decision says why, and its record holds every trigger's numbers
    assert decision.fired and [f.kind for f in decision.firings] == ["drift"]
    assert decision.reason.startswith("drift: 3/9 features drifted (")
    assert decision.version == "v1" and decision.newest_batch == "2026-01-05"
    (stored,) = decisions(project)
    assert stored["reason"] == decision.reason and stored["record"] == decision.record
    assert (
        decision.record.endswith(".json")
        and "/triggers/loan-default/decisions/2026" in decision.record
    )
    kinds = {c["kind"]: c for c in stored["checks"]}
    assert set(kinds) == {"drift", "performance", "estimated_performance", "code_change"}
    assert kinds["drift"]["inputs"]["windows"][1]["drifted_share"] == pytest.approx(1 / 3)
    # and monitoring did not run again: only the two records are there
    assert len(store_of(project).list(MONITORING)) == 2


def test_stale_or_missing_records_make_monitoring_run_first(project: Settings) -> None:
    # given an hour of served traffic, and no monitoring record of it
    settings = settings_for(
        Path(project.storage.uri).parent,
        "monitoring.window=hour",
        "monitoring.windows=2",
        "monitoring.label_delay_days=1",
        "triggers.records_max_age_hours=1",
    )
    frame = synthetic.generate_day(DAY0.date(), settings.data.generator)
    log_traffic(store_of(settings), "loan-default", "v1", frame.head(300))
    now = datetime.fromtimestamp(time.time(), UTC) + timedelta(hours=1)
    # when the engine looks an hour later
    decision = check(settings, now=now)
    # then monitoring ran, recorded the window, and the drift check looked at its 300 rows
    assert store_of(settings).list(MONITORING)
    drift = next(c for c in decision.checks if c.kind == "drift")
    assert drift.inputs["windows"][-1]["rows"] == 300
    assert not decision.fired and decision.reason == "nothing fired"


def test_a_record_computed_after_now_is_not_used(project: Settings) -> None:
    # given drifted records computed a day after the time the check is replayed at
    later = NOW + timedelta(days=1)
    record(
        project,
        window_report(1, drifted=THREE, computed_at=later),
        window_report(2, drifted=THREE, computed_at=later),
    )
    # when checked at NOW, then they are not judged (monitoring ran, and found no traffic)
    decision = check(project, now=NOW)
    assert not decision.fired
    drift = next(c for c in decision.checks if c.kind == "drift")
    assert [w["rows"] for w in drift.inputs["windows"]] == [0, 0]
    assert drift.reason == "drift: 0 of the newest 2 window(s) drifted (shares –, – vs 0.1)"


def run(settings: Settings, decision: Decision, run_id: str, outcome: str) -> None:
    """Mark a run started on `decision` and finished at once with `outcome`: succeeded (its
    model registered), refused by the gate, or failed."""
    engine.run_started(ledger(settings), decision, run_id)
    engine.run_finished(
        ledger(settings),
        run_id,
        succeeded=outcome != "failed",
        blessed=outcome == "succeeded",
        now=decision.at,
    )


def test_cooldown_holds_back_the_kind_a_run_started_on_but_no_other_and_not_high(
    project: Settings,
) -> None:
    settings = settings_for(Path(project.storage.uri).parent, "triggers.cooldown_hours=72")
    # given a run started on drift in the windows of days 1 and 2
    record(settings, window_report(1, drifted=THREE), window_report(2, drifted=THREE))
    first = check(settings, now=NOW)
    assert first.fired and [f.kind for f in first.firings] == ["drift"]
    run(settings, first, "d1", "succeeded")
    # when the drift goes on in the next two windows, within the 72-hour cooldown
    later = NOW + timedelta(days=2)
    record(settings, window_report(3, drifted=THREE), window_report(4, drifted=THREE))
    again = check(settings, now=later)
    # then drift fires on them, held back by the cooldown of the run it started
    assert not again.fired and [f.kind for f in again.firings] == ["drift"]
    assert again.blocked_by == "cooldown until 2026-01-16 00:10 UTC (after run d1 on drift)"
    assert [w["window"] for w in again.firings[0].inputs["windows"]] == [
        "2026-01-13",
        "2026-01-14",
    ]
    # when CI reports a new commit then, then its run is not held: d1 never saw that code
    commit = check(settings, now=later, commit="f00dfeed")
    assert commit.fired and [f.kind for f in commit.firings] == ["drift", "code_change"]
    # when a significant performance drop (high severity) shows in a window after the runs
    urgent_at = later + timedelta(hours=23, minutes=55)
    run(settings, commit, "c1", "succeeded")
    record(
        settings,
        window_report(5, drifted=THREE, accuracy=interval(0.6), labelled=400),
    )
    urgent = check(settings, now=urgent_at)
    # then it passes the cooldown
    assert urgent.fired and [f.kind for f in urgent.firings] == ["performance"]


def test_a_schedule_run_does_not_hold_back_drift_that_appeared_after_it(
    project: Settings,
) -> None:
    settings = settings_for(
        Path(project.storage.uri).parent,
        "triggers.cooldown_hours=72",
        "triggers.schedule.cron=0 0 * * *",
    )
    # given a first run four days before, and a schedule run at the end of day 2, when nothing
    # had drifted
    first = check(settings, now=NOW - timedelta(days=4), force="first")
    run(settings, first, "f1", "succeeded")
    record(settings, window_report(1), window_report(2))
    scheduled = check(settings, now=NOW)
    assert scheduled.fired and [f.kind for f in scheduled.firings] == ["schedule"]
    run(settings, scheduled, "s1", "succeeded")
    # when days 3 and 4 drift, 48 hours later
    record(settings, window_report(3, drifted=THREE), window_report(4, drifted=THREE))
    drifted = check(settings, now=NOW + timedelta(days=2))
    # then drift starts a run: the schedule's cooldown holds back only the schedule
    assert drifted.fired and "drift" in [f.kind for f in drifted.firings], drifted.reason


def test_a_run_started_by_hand_holds_back_every_kind(project: Settings) -> None:
    settings = settings_for(Path(project.storage.uri).parent, "triggers.cooldown_hours=72")
    # given a `flywheel run` by hand at the end of day 2, which failed
    entry = RunStarted(
        run_id="by-hand", started_at=NOW, reason="by hand", origin="run", actor="ada"
    )
    ledger(settings).start(entry)
    engine.run_finished(ledger(settings), "by-hand", succeeded=False, now=NOW)
    # when drift fires two days later, then the cooldown holds it back: its kind is not known
    record(settings, window_report(3, drifted=THREE), window_report(4, drifted=THREE))
    held = check(settings, now=NOW + timedelta(days=2))
    assert held.blocked_by == (
        "cooldown until 2026-01-16 00:10 UTC (after run by-hand) (started by flywheel run by ada)"
    )


def test_labels_that_come_back_after_a_run_count_though_their_window_closed_before_it(
    project: Settings,
) -> None:
    settings = settings_for(Path(project.storage.uri).parent, "triggers.daily_budget=5")
    # given a run started at the end of day 2, when no labels had come back
    record(settings, window_report(1), window_report(2))
    forced = check(settings, now=NOW, force="by hand")
    run(settings, forced, "m1", "succeeded")
    # when day 1's labels come back after it, showing a significant drop
    later = NOW + timedelta(hours=2)
    record(
        settings,
        window_report(1, accuracy=interval(0.6), labelled=400, computed_at=later),
    )
    dropped = check(settings, now=later)
    # then the performance trigger fires on day 1, which closed before the run started
    assert dropped.fired and [f.kind for f in dropped.firings] == ["performance"]
    assert dropped.firings[0].inputs["window"] == "2026-01-11"
    # when a run starts on it, then those labels count once: the next look finds nothing new
    run(settings, dropped, "p1", "succeeded")
    quiet = check(settings, now=later + timedelta(hours=1))
    performance = next(c for c in quiet.checks if c.kind == "performance")
    assert not performance.fired
    assert performance.reason == (
        "performance: no labels came back since the last run started (it saw those of 2026-01-11)"
    )
    # when day 2's labels come back, then they count
    newest = later + timedelta(hours=2)
    record(
        settings,
        window_report(2, accuracy=interval(0.6), labelled=400, computed_at=newest),
    )
    again = check(settings, now=newest)
    assert again.fired and again.firings[0].inputs["window"] == "2026-01-12"


def test_a_refused_run_leaves_the_evidence_and_a_retry_waits_for_a_newer_batch(
    project: Settings,
) -> None:
    settings = settings_for(Path(project.storage.uri).parent, "triggers.daily_budget=5")
    # given a significant drop on day 2, and a run on it that the gate refused
    record(settings, window_report(1), window_report(2, accuracy=interval(0.6), labelled=400))
    dropped = check(settings, now=NOW)
    assert dropped.fired and [f.kind for f in dropped.firings] == ["performance"]
    run(settings, dropped, "p1", "refused")
    # when the engine looks again before a newer batch arrived
    same = check(settings, now=NOW + timedelta(hours=1))
    # then the drop still fires, and waits: the same batches would teach the same model
    assert [f.kind for f in same.firings] == ["performance"] and not same.fired
    assert same.blocked_by == (
        "the gate refused run p1 on the batches to 2026-01-05: waiting for a newer one"
    )
    # when a newer batch arrives, then it fires again on the same window
    day = date(2026, 1, 6)
    synthetic.generate_day(day, settings.data.generator).to_parquet(
        Path(settings.data.source) / f"{day}.parquet"
    )
    retry = check(settings, now=NOW + timedelta(hours=2))
    assert retry.fired and retry.firings[0].inputs["window"] == "2026-01-12"
    # and after a run that failed, at once
    run(settings, retry, "p2", "failed")
    assert check(settings, now=NOW + timedelta(hours=3)).fired


def test_a_run_in_flight_blocks_even_force_until_it_finishes_or_times_out(
    project: Settings,
) -> None:
    # given a forced decision whose run started and has not finished
    forced = check(project, now=NOW, force="new features landed")
    assert (
        forced.fired and forced.firings[0].kind == "manual" and forced.firings[0].severity == "high"
    )
    engine.run_started(ledger(project), forced, "r1")
    # when forced again an hour later, then the run in flight blocks it
    blocked = check(project, now=NOW + timedelta(hours=1), force="again")
    assert blocked.blocked_by is not None and blocked.blocked_by.startswith(
        "run r1 in flight since"
    )
    # when the run is older than run_timeout_hours (6), then it no longer counts
    late = check(project, now=NOW + timedelta(hours=7), force="again")
    assert late.fired


def test_a_submitted_run_stops_blocking_once_the_cluster_says_it_ended(
    project: Settings,
) -> None:
    # given two runs submitted to KFP, neither marked finished
    first = check(project, now=NOW, force="new features landed")
    engine.run_started(ledger(project), first, "r1", kfp_run_id="kfp-1")
    engine.run_started(
        ledger(project), first, "r2", kfp_run_id="kfp-2", now=NOW + timedelta(minutes=1)
    )
    asked: list[list[str]] = []

    def ended(ids: list[str]) -> dict[str, bool]:
        asked.append(ids)
        return {"kfp-1": False}  # kfp-1 failed; kfp-2 still runs

    # when the engine reconciles with what the cluster reports
    marked = engine.reconcile(ledger(project), ended)
    # then only the ended run is marked, with its outcome, and r2 still blocks
    assert asked == [["kfp-1", "kfp-2"]] and marked == ["r1"]
    finished = json.loads(store_of(project).read("triggers/loan-default/runs/r1/finished.json"))
    assert finished["succeeded"] is False
    assert not store_of(project).exists("triggers/loan-default/runs/r2/finished.json")
    blocked = check(project, now=NOW + timedelta(hours=1), force="again")
    assert blocked.blocked_by is not None and blocked.blocked_by.startswith("run r2 in flight")
    # and a second look asks only about the run still going
    assert engine.reconcile(ledger(project), lambda ids: asked.append(ids) or {}) == []
    assert asked[-1] == ["kfp-2"]
    # and once r2 is past run_timeout_hours the cluster is not asked at all (another KFP
    # that never knew it must not fail every check)
    past = NOW + timedelta(hours=7)
    timeout = timedelta(hours=project.triggers.run_timeout_hours)

    def unasked(ids: list[str]) -> dict[str, bool]:
        raise AssertionError(f"asked about {ids}")

    assert engine.reconcile(ledger(project), unasked, now=past, timeout=timeout) == []


def test_the_daily_budget_stops_runs_but_force_bypasses_it(project: Settings) -> None:
    settings = settings_for(
        Path(project.storage.uri).parent, "triggers.daily_budget=1", "triggers.cooldown_hours=0"
    )
    # given one run started today, on drift
    record(settings, window_report(1, drifted=THREE), window_report(2, drifted=THREE))
    first = check(settings, now=NOW)
    engine.run_started(ledger(settings), first, "r1")
    engine.run_finished(ledger(settings), "r1", succeeded=True, now=NOW)
    # when CI reports a new commit the same day, then the budget of one run blocks it
    later = NOW + timedelta(hours=1)
    second = check(settings, now=later, commit="f00dfeed")
    assert second.blocked_by == "daily budget of 1 run(s) spent on 2026-01-13"
    # but a forced check passes, and the next UTC day has a new budget
    assert check(settings, now=later, force="hotfix").fired
    assert check(settings, now=NOW + timedelta(days=1), commit="f00dfeed").fired


def test_a_hold_blocks_everything_until_released(project: Settings) -> None:
    record(project, window_report(1, drifted=THREE), window_report(2, drifted=THREE))
    engine.hold(ledger(project), "investigating a bad upstream feed")
    held = check(project, now=NOW, force="please")
    assert not held.fired
    assert held.blocked_by is not None and held.blocked_by.endswith(
        "investigating a bad upstream feed"
    )
    engine.release(ledger(project))
    assert check(project, now=NOW).fired
    with pytest.raises(LedgerError, match="not held"):
        engine.release(ledger(project))


def test_new_data_counts_from_the_newest_batch_the_last_run_read(project: Settings) -> None:
    settings = settings_for(
        Path(project.storage.uri).parent,
        "triggers.new_data.batches=2",
        "triggers.cooldown_hours=0",
        "triggers.drift=null",
    )
    # given production trained up to the newest of five batches: nothing new
    assert not check(settings, now=NOW).fired
    # given two more batches, then it fires
    synthetic_days = [DAY0.date() - timedelta(days=4), DAY0.date() - timedelta(days=3)]
    for day in synthetic_days:
        frame = synthetic.generate_day(day, settings.data.generator)
        frame.to_parquet(Path(settings.data.source) / f"{day}.parquet")
    fired = check(settings, now=NOW)
    assert fired.fired and fired.firings[0].inputs["new_batches"] == 2
    # and once a run started on them, it counts from there
    engine.run_started(ledger(settings), fired, "r1")
    engine.run_finished(ledger(settings), "r1", succeeded=True, now=NOW)
    assert not check(settings, now=NOW + timedelta(minutes=1)).fired


def test_a_store_that_is_down_is_one_error_and_no_decision_record(project: Settings) -> None:
    # given batches on an S3 endpoint that does not answer (the registry is up, so a record
    # that was written would be seen)
    (port,) = free_ports(1)
    settings = settings_for(
        Path(project.storage.uri).parent,
        "data.source=s3://flywheel/batches",
        f"storage.endpoint=127.0.0.1:{port}",
        "storage.secure=false",
    )
    local = project  # same store directory, read back without the endpoint
    # when the engine looks
    with pytest.raises(TriggerError) as raised:
        check(settings, now=NOW)
    # then one line names the store and says nothing was recorded
    message = str(raised.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message
    assert message.endswith("no decision was recorded")
    assert decisions(local) == []


def replace_production(settings: Settings, reason: str, accuracy: float) -> float:
    """Register v2 in production, trained on `reason`, replacing v1, with its own offline
    accuracy `accuracy` on its newest batch; v1's offline accuracy."""
    registry = Stores(settings).registry
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    own = Evaluation.model_validate_json(files["evaluation.json"])
    lowered = own.candidate.newest.model_copy(update={"accuracy": accuracy})
    replaced = own.candidate.model_copy(update={"role": "production", "version": "v1"})
    evaluation = own.model_copy(
        update={
            "candidate": own.candidate.model_copy(update={"newest": lowered}),
            "production": replaced,
        }
    )
    lineage = json.loads(files["lineage.json"])
    lineage["trigger"] = {"reason": reason, "decision": None}
    files["evaluation.json"] = evaluation.model_dump_json().encode()
    files["lineage.json"] = json.dumps(lineage).encode()
    registry.register(files, run_id="p1", fingerprint=f"v2 {reason}")
    registry.set_alias(PRODUCTION, "v2", reason="test", actor="test")
    assert own.candidate.newest.accuracy is not None
    return own.candidate.newest.accuracy


def test_a_version_trained_on_a_performance_drop_is_held_to_the_figure_of_the_one_it_replaced(
    project: Settings,
) -> None:
    # given v2 in production, retrained on a performance drop just after a concept drift: its
    # own offline accuracy, 0.62, was measured on the changed newest batch, while v1 had 0.8
    drop = "performance drop: accuracy 0.640 [0.62, 0.66] on 2000 labels, surely below 0.77"
    before = replace_production(project, drop, 0.62)
    policy = project.triggers.performance
    assert policy is not None and policy.max_drop is not None
    assert before - policy.max_drop > 0.7
    # and v2 serving at 0.66 give or take 0.02: its own figure, not v1's
    record(
        project,
        window_report(2, accuracy=interval(0.66, 0.02), labelled=400, offline=0.62, version="v2"),
    )
    # when the engine looks
    decision = check(project, now=NOW)
    # then it fires, holding v2 to v1's offline figure, and the record says so
    assert decision.fired, [c for c in decision.checks if c.kind == "performance"]
    assert [f.kind for f in decision.firings] == ["performance"]
    (firing,) = decision.firings
    assert firing.inputs["offline"] == pytest.approx(before)
    assert (
        firing.inputs["held_to"] == "v1" and "trained on a performance drop" in firing.inputs["why"]
    )
    assert f"(v1's offline {before:.3f})" in firing.reason


def test_a_version_trained_on_anything_else_is_held_to_its_own_figure(project: Settings) -> None:
    # given the same v2, trained on the schedule
    replace_production(project, "schedule '0 3 * * 1': tick at 2026-01-12 03:00 UTC", 0.62)
    record(
        project,
        window_report(2, accuracy=interval(0.66, 0.02), labelled=400, offline=0.62, version="v2"),
    )
    # when / then nothing fires: 0.66 is not surely below its own 0.62 less max_drop
    decision = check(project, now=NOW)
    performance = next(c for c in decision.checks if c.kind == "performance")
    assert not performance.fired and "held_to" not in performance.inputs
    assert performance.inputs["offline"] == pytest.approx(0.62)
