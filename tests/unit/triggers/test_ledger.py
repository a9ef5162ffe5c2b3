"""The engine's books in a real local store: create-only runs, holds and decisions."""

from __future__ import annotations

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
