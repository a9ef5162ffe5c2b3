"""A store with what every page of the UI shows, written through the library as the loop
writes it: two versions, alias moves by a run, a rollout and a person, a rollout's looks, a
trigger decision and the run it started, and window records of served traffic."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flywheel import synthetic
from flywheel.config import Settings
from flywheel.monitoring.records import write_record
from flywheel.monitoring.reference import load_reference
from flywheel.monitoring.window import WindowReport
from flywheel.registry import CANDIDATE, PRODUCTION, Registry
from flywheel.rollout.state import RolloutState
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from flywheel.triggers.ledger import Ledger, RunFinished, RunStarted
from harness.traffic import log_traffic, production_report, read_back

ROLLOUT = "v2-1769472000"
AT = datetime(2026, 1, 20, tzinfo=UTC)


def look(number: int, step: int, status: str) -> dict[str, object]:
    """A look record as the controller writes it (the fields the UI reads)."""
    return {
        "kind": "rollout-look",
        "rollout_id": ROLLOUT,
        "action": "wait",
        "step": step,
        "weight": (10, 50, 100)[step - 1],
        "elapsed_seconds": 5.0 * number,
        "reason": f"look {number}",
        "stable": {"version": "v1", "requests": 100 * number},
        "canary": {"version": "v2", "requests": 10 * number},
        "checks": [
            {
                "name": "error rate",
                "measured": 0.001 * number,
                "threshold": 0.01,
                "status": status,
                "detail": "canary errors",
            }
        ],
    }


def window_report(registered: Settings, store: LocalStore) -> WindowReport:
    """The report of a day of v1's traffic, logged into `store` and read back."""
    day = registered.data.generator.start_date + timedelta(days=6)
    log_traffic(store, "loan-default", "v1", synthetic.generate_day(day, registered.data.generator))
    stores = Stores(registered)
    reference = load_reference(stores.registry, stores.source, "v1")
    return production_report(*read_back(store), reference)


def loop_store(registered: Settings, root: Path) -> LocalStore:
    """`registered`'s store (v1 in production) copied to `root`, with the rest of the loop."""
    shutil.copytree(registered.storage.uri, root)
    for written in ("predictions", "feedback", "monitoring", "summaries"):
        shutil.rmtree(root / written, ignore_errors=True)
    store = LocalStore(root)
    report = window_report(registered, store)
    registry = Registry(store, "loan-default")
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    lineage = json.loads(files["lineage.json"])
    lineage["trigger"] = {"reason": "drift: income drifted", "decision": None}
    lineage["config"]["model"]["test_size"] = 0.3
    files["lineage.json"] = json.dumps(lineage).encode()
    files["contract.json"] = _tag_pii(files["contract.json"], "region")
    registry.register(files, run_id="run-2", fingerprint="second", summary={"metric": "roc_auc"})
    registry.move_alias(
        CANDIDATE, "v2", expected="v1", reason="blessed by the gate", actor="run run-2"
    )
    registry.add_record(
        "v2", "rollout-start", {"rollout_id": ROLLOUT, "stable": "v1", "steps": [10, 50, 100]}
    )
    for number, (step, status) in enumerate([(1, "pending"), (1, "pass"), (2, "pass")], 1):
        registry.add_record("v2", "rollout-look", look(number, step, status))
    registry.add_record(
        "v2", "rollout-promoted", {"rollout_id": ROLLOUT, "reason": "every step passed"}
    )
    registry.move_alias(
        PRODUCTION,
        "v2",
        expected="v1",
        reason="rollout: every step passed",
        actor=f"rollout {ROLLOUT}",
    )
    registry.move_alias(
        PRODUCTION, "v1", expected="v2", reason="incident 7", actor="ada (flywheel rollback)"
    )
    ledger = Ledger(store, "loan-default")
    key = ledger.decision_key(AT)
    location = ledger.write_decision(
        key,
        {
            "at": AT.isoformat(),
            "fired": True,
            "reason": "drift: income drifted",
            "firings": [{"kind": "drift"}],
            "blocked_by": None,
            "checks": [
                {
                    "kind": "drift",
                    "fired": True,
                    "reason": "drift",
                    "inputs": {"psi": {"income": 0.4, "region": {"north": 0.9}}},
                }
            ],
        },
    )
    ledger.start(
        RunStarted(run_id="run-2", started_at=AT, reason="drift: income drifted", decision=location)
    )
    ledger.finish(RunFinished.of("run-2", AT + timedelta(hours=1), succeeded=True, blessed=True))
    ledger.start(
        RunStarted(
            run_id="run-3",
            started_at=AT + timedelta(days=1),
            reason="by hand",
            origin="run",
            actor="ada",
        )
    )
    for day in range(3):
        write_record(
            store,
            report.model_copy(
                update={
                    "start": report.start - timedelta(days=day),
                    "end": report.end - timedelta(days=day),
                }
            ),
        )
    return store


def _tag_pii(contract: bytes, column: str) -> bytes:
    data = json.loads(contract)
    data.setdefault("columns", {})[column] = {"pii": True}
    return json.dumps(data).encode()


def progressing(revision: int, weight: int) -> RolloutState:
    """The controller's state of a rollout at `weight`%, still progressing."""
    return RolloutState(
        rollout_id=ROLLOUT,
        model_name="loan-default",
        stable="v1",
        canary="v2",
        phase="progressing",
        step=0,
        weight=weight,
        step_started=0.0,
        started_at=AT.isoformat(),
        updated_at=AT.isoformat(),
        reason="waiting for traffic",
        revision=revision,
    )
