"""The trigger engine's books in the store, every entry create-only:

    triggers/<model>/decisions/<UTC stamp>-<id>.json   one per evaluation
    triggers/<model>/runs/<run id>/started.json        a run it started
    triggers/<model>/runs/<run id>/finished.json       and how that run ended
    triggers/<model>/holds/<UTC stamp>-<id>.json       hold and release, newest wins

Nothing is ever rewritten, so two engines that look at once cannot lose each
other's entries, and the history of every decision stays readable.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from flywheel.errors import FlywheelError
from flywheel.records import Record
from flywheel.storage import ObjectExists, ObjectNotFound, ObjectStore

PREFIX = "triggers"
STAMP = "%Y%m%dT%H%M%S%fZ"


class LedgerError(FlywheelError, RuntimeError):
    """A bookkeeping entry was refused (a run marked twice, a release without a hold)."""


class RunStarted(Record):
    """A run the engine started, and what it started on."""

    run_id: str
    started_at: datetime
    decision: str
    reason: str
    severity: Literal["low", "high"]
    commit: str | None = None
    image: str | None = None
    newest_batch: str | None = None  # the newest batch when it started: new data counts from here
    kfp_run_id: str | None = None  # a run submitted to Kubeflow Pipelines: its state is asked there


class RunFinished(Record):
    """How a started run ended."""

    run_id: str
    finished_at: datetime
    succeeded: bool


class Hold(Record):
    """A manual hold or its release."""

    action: Literal["hold", "release"]
    reason: str
    at: datetime


class Run(Record):
    """A started run and, once it ended, how."""

    started: RunStarted
    finished: RunFinished | None


def short_id() -> str:
    """A random id that keeps two entries of the same microsecond apart."""
    return uuid.uuid4().hex[:8]


class Ledger:
    """The books of one model's trigger engine in one store."""

    def __init__(self, store: ObjectStore, model: str) -> None:
        self.store = store
        self.prefix = f"{PREFIX}/{model}"

    # --- decisions --------------------------------------------------------------

    def decision_key(self, at: datetime) -> str:
        """A fresh key for the decision taken at `at`."""
        return f"{self.prefix}/decisions/{at.astimezone(UTC).strftime(STAMP)}-{short_id()}.json"

    def write_decision(self, key: str, record: dict[str, Any]) -> str:
        """Store a decision record create-only; returns its location."""
        self.store.write(key, json.dumps(record, indent=2, default=str).encode(), create_only=True)
        return self.store.location(key)

    def decisions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest `limit` decision records (all without a limit), oldest first."""
        keys = self.decision_keys()
        chosen = keys[-limit:] if limit else keys
        return [self.decision(key) for key in chosen]

    def decision_keys(self) -> list[str]:
        """Where every decision record is, oldest first (a key starts with its time)."""
        return self.store.list(f"{self.prefix}/decisions")

    def decision(self, key: str) -> dict[str, Any]:
        """One decision record."""
        record: dict[str, Any] = json.loads(self.store.read(key))
        return record

    # --- runs -------------------------------------------------------------------

    def _run_key(self, run_id: str, name: str) -> str:
        if not run_id or "/" in run_id:
            raise LedgerError(f"{run_id!r} is not a run id")
        return f"{self.prefix}/runs/{run_id}/{name}"

    def start(self, entry: RunStarted) -> str:
        """Mark a run started; a run is started once."""
        key = self._run_key(entry.run_id, "started.json")
        try:
            self.store.write(key, entry.model_dump_json(indent=2).encode(), create_only=True)
        except ObjectExists:
            raise LedgerError(f"run {entry.run_id} was already marked started") from None
        return self.store.location(key)

    def finish(self, entry: RunFinished) -> str:
        """Mark a started run finished; a run finishes once."""
        key = self._run_key(entry.run_id, "finished.json")
        if not self.store.exists(self._run_key(entry.run_id, "started.json")):
            raise LedgerError(f"run {entry.run_id} was never marked started")
        try:
            self.store.write(key, entry.model_dump_json(indent=2).encode(), create_only=True)
        except ObjectExists:
            raise LedgerError(f"run {entry.run_id} was already marked finished") from None
        return self.store.location(key)

    def runs(self) -> list[Run]:
        """Every started run, oldest start first; unreadable entries are skipped."""
        found: dict[str, dict[str, str]] = {}
        for key in self.store.list(f"{self.prefix}/runs"):
            run_id, _, name = key[len(self.prefix) + len("/runs/") :].partition("/")
            found.setdefault(run_id, {})[name] = key
        runs: list[Run] = []
        for keys in found.values():
            if "started.json" not in keys:
                continue
            try:
                started = RunStarted.model_validate_json(self.store.read(keys["started.json"]))
                finished = (
                    RunFinished.model_validate_json(self.store.read(keys["finished.json"]))
                    if "finished.json" in keys
                    else None
                )
            except (ValidationError, ObjectNotFound):
                continue
            runs.append(Run(started=started, finished=finished))
        return sorted(runs, key=lambda r: r.started.started_at)

    # --- holds ------------------------------------------------------------------

    def hold(self, entry: Hold) -> str:
        """Record a hold or a release; releasing what is not held is refused."""
        current = self.held()
        if entry.action == "release" and current is None:
            raise LedgerError("the trigger engine is not held; nothing to release")
        key = f"{self.prefix}/holds/{entry.at.astimezone(UTC).strftime(STAMP)}-{short_id()}.json"
        self.store.write(key, entry.model_dump_json(indent=2).encode(), create_only=True)
        return self.store.location(key)

    def held(self) -> Hold | None:
        """The hold in force, or None when the newest entry is a release (or there is none)."""
        keys = self.store.list(f"{self.prefix}/holds")
        if not keys:
            return None
        newest = Hold.model_validate_json(self.store.read(keys[-1]))
        return newest if newest.action == "hold" else None
