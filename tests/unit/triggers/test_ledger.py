"""The engine's books in a real local store: create-only runs, holds and decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flywheel.storage import LocalStore
from flywheel.triggers.ledger import Hold, Ledger, LedgerError, RunFinished, RunStarted

AT = datetime(2026, 1, 14, 12, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(LocalStore(tmp_path), "loan-default")


def started(run_id: str, at: datetime = AT) -> RunStarted:
    return RunStarted(run_id=run_id, started_at=at, decision="d", reason="r", severity="low")


def test_a_run_is_started_and_finished_once_each(ledger: Ledger) -> None:
    # given a started run
    ledger.start(started("r1"))
    assert [(r.started.run_id, r.finished) for r in ledger.runs()] == [("r1", None)]
    # when it is marked started again, then that is refused
    with pytest.raises(LedgerError, match="run r1 was already marked started"):
        ledger.start(started("r1"))
    # when it finishes, then the run shows how, and finishing twice is refused
    ledger.finish(RunFinished(run_id="r1", finished_at=AT, succeeded=True))
    assert ledger.runs()[0].finished is not None and ledger.runs()[0].finished.succeeded
    with pytest.raises(LedgerError, match="already marked finished"):
        ledger.finish(RunFinished(run_id="r1", finished_at=AT, succeeded=False))
    with pytest.raises(LedgerError, match="run r9 was never marked started"):
        ledger.finish(RunFinished(run_id="r9", finished_at=AT, succeeded=True))
    with pytest.raises(LedgerError, match="is not a run id"):
        ledger.start(started("a/b"))


def test_runs_come_oldest_start_first(ledger: Ledger) -> None:
    ledger.start(started("late", AT))
    ledger.start(started("early", AT - timedelta(hours=3)))
    assert [r.started.run_id for r in ledger.runs()] == ["early", "late"]


def test_the_newest_hold_entry_wins_and_nothing_is_rewritten(ledger: Ledger) -> None:
    assert ledger.held() is None
    with pytest.raises(LedgerError, match="not held; nothing to release"):
        ledger.hold(Hold(action="release", reason="", at=AT))
    ledger.hold(Hold(action="hold", reason="migrating the store", at=AT))
    held = ledger.held()
    assert held is not None and held.reason == "migrating the store"
    ledger.hold(Hold(action="release", reason="done", at=AT + timedelta(hours=1)))
    assert ledger.held() is None
    assert len(ledger.store.list("triggers/loan-default/holds")) == 2


def test_decisions_are_create_only_and_listed_newest_last(ledger: Ledger) -> None:
    keys = [ledger.decision_key(AT + timedelta(minutes=i)) for i in range(3)]
    for i, key in enumerate(keys):
        ledger.write_decision(key, {"n": i})
    assert keys[0].startswith("triggers/loan-default/decisions/20260114T120000")
    assert [d["n"] for d in ledger.decisions(2)] == [1, 2]
    from flywheel.storage import ObjectExists

    with pytest.raises(ObjectExists):
        ledger.write_decision(keys[0], {"n": 9})


def test_a_run_record_says_what_started_it_and_who(ledger: Ledger) -> None:
    # given a run a person started with `flywheel run`, and one the engine decided alone
    ledger.start(
        RunStarted(run_id="r1", started_at=AT, reason="manual run", origin="run", actor="ada")
    )
    ledger.start(started("r2", AT + timedelta(hours=1)))
    # then each reads back with what started it
    by_hand, decided = ledger.runs()
    assert (by_hand.started.origin, by_hand.started.started_by) == ("run", "flywheel run by ada")
    assert (decided.started.origin, decided.started.started_by) == ("trigger", "a trigger decision")


@pytest.mark.parametrize(
    ("succeeded", "blessed", "outcome"),
    [
        (False, None, "failed"),
        (False, True, "failed"),
        (True, True, "succeeded"),
        (True, False, "refused"),
        (True, None, "succeeded"),  # a run that ended well, whose gate nobody asked
    ],
)
def test_a_finished_run_has_one_outcome(
    succeeded: bool, blessed: bool | None, outcome: str
) -> None:
    finished = RunFinished.of("r1", AT, succeeded=succeeded, blessed=blessed)
    assert (finished.succeeded, finished.outcome) == (succeeded, outcome)


def test_a_run_is_in_flight_until_it_finishes_or_times_out(ledger: Ledger) -> None:
    # given a submitted run nothing has marked finished, and the engine's timeout of 6 hours
    ledger.start(started("r1"))
    (run,) = ledger.runs()
    timeout = timedelta(hours=6)
    # then it is in flight, with no outcome, for 6 hours: it blocks new runs meanwhile
    assert run.in_flight(AT + timedelta(hours=5), timeout)
    assert run.outcome(AT + timedelta(hours=5), timeout) is None
    # and after that, it blocks nothing, and how it ended is unknown
    assert not run.in_flight(AT + timedelta(hours=6), timeout)
    assert run.outcome(AT + timedelta(hours=6), timeout) == "unknown"
    # when it is marked finished (the gate refused it), then that is its outcome
    ledger.finish(RunFinished.of("r1", AT + timedelta(hours=8), succeeded=True, blessed=False))
    (run,) = ledger.runs()
    assert not run.in_flight(AT, timeout) and run.outcome(AT, timeout) == "refused"


def test_entries_from_before_the_shared_run_record_still_read(ledger: Ledger) -> None:
    # given entries as the engine wrote them before: no origin, no actor, no outcome
    base = "triggers/loan-default/runs/r1"
    old_start = {"run_id": "r1", "started_at": AT.isoformat(), "decision": "d", "reason": "drift",
                 "severity": "low", "commit": None, "image": None, "newest_batch": None,
                 "kfp_run_id": None}  # fmt: skip
    old_end = {"run_id": "r1", "finished_at": AT.isoformat(), "succeeded": False}
    ledger.store.write(f"{base}/started.json", json.dumps(old_start).encode())
    ledger.store.write(f"{base}/finished.json", json.dumps(old_end).encode())
    # then they read as a trigger's run that failed
    (run,) = ledger.runs()
    assert (run.started.origin, run.started.actor) == ("trigger", None)
    assert run.finished is not None and run.finished.outcome == "failed"


def test_a_used_run_id_is_refused_before_a_run_starts(ledger: Ledger) -> None:
    ledger.check_unused("r1")
    ledger.start(started("r1"))
    with pytest.raises(LedgerError, match="run r1 was already marked started"):
        ledger.check_unused("r1")
