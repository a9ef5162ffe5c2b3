"""The trigger engine's books in the store, every entry create-only:

    triggers/<model>/decisions/<UTC stamp>-<id>.json   one per evaluation
    triggers/<model>/runs/<run id>/started.json        a run started, whatever started it
    triggers/<model>/runs/<run id>/finished.json       and how that run ended
    triggers/<model>/holds/<UTC stamp>-<id>.json       hold and release, newest wins

Nothing is ever rewritten, so two engines that look at once cannot lose each
other's entries, and the history of every decision stays readable. The run
record is every run's, not only the engine's: `flywheel run` and `flywheel
submit` keep theirs here too, so the in-flight check, the daily budget and the
cooldown see every run.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError, model_validator

from flywheel.errors import FlywheelError
from flywheel.records import Record
from flywheel.storage import ObjectExists, ObjectNotFound, ObjectStore

PREFIX = "triggers"
STAMP = "%Y%m%dT%H%M%S%fZ"


class LedgerError(FlywheelError, RuntimeError):
    """A bookkeeping entry was refused (a run marked twice, a release without a hold)."""


# What started a run: a trigger decision (`triggers check --run/--submit`, `watch`), or a
# person's `flywheel run` or `flywheel submit`.
Origin = Literal["trigger", "run", "submit"]
ORIGINS: dict[Origin, str] = {
    "trigger": "a trigger decision",
    "run": "flywheel run",
    "submit": "flywheel submit",
}
# How a run ended: its model registered, the gate refused it, the run failed; or, for a run
# nothing marked finished within triggers.run_timeout_hours (a submitted run KFP lost, a
# killed process), unknown.
Outcome = Literal["succeeded", "refused", "failed", "unknown"]


class RunStarted(Record):
    """A run that started, whatever started it: what, who and why, and what it started on."""

    run_id: str
    started_at: datetime
    reason: str
    origin: Origin = "trigger"  # entries from before other runs were recorded are the engine's
    actor: str | None = None  # the person (--actor or $USER); None: the engine decided alone
    decision: str = ""  # the trigger decision record it started on, if one did
    severity: Literal["low", "high"] | None = None  # the decision's; None without one
    # The kinds of trigger its decision fired, for the cooldown; None (by hand, or an entry from
    # before kinds were kept): every kind.
    kinds: list[str] | None = None
    commit: str | None = None
    image: str | None = None
    newest_batch: str | None = None  # the newest batch when it started: new data counts from here
    kfp_run_id: str | None = None  # a run submitted to Kubeflow Pipelines: its state is asked there

    @property
    def started_by(self) -> str:
        """'flywheel run by ada', 'a trigger decision': what started the run, for a message."""
        return ORIGINS[self.origin] + (f" by {self.actor}" if self.actor else "")


class RunFinished(Record):
    """How a started run ended."""

    run_id: str
    finished_at: datetime
    succeeded: bool  # the pipeline ran to its end, a gate that refused the model included
    outcome: Outcome

    @model_validator(mode="before")
    @classmethod
    def _outcome_of_a_bare_success(cls, data: Any) -> Any:
        # Entries from before outcomes were kept say only whether the run succeeded.
        if isinstance(data, dict) and "outcome" not in data and "succeeded" in data:
            return {**data, "outcome": "succeeded" if data["succeeded"] else "failed"}
        return data

    @classmethod
    def of(
        cls, run_id: str, finished_at: datetime, *, succeeded: bool, blessed: bool | None = None
    ) -> RunFinished:
        """The end of a run that `succeeded` or failed, and whose gate `blessed` the model or
        refused it (None: not known, as for a cluster run KFP says succeeded)."""
        outcome: Outcome = (
            "failed" if not succeeded else "refused" if blessed is False else "succeeded"
        )
        return cls(run_id=run_id, finished_at=finished_at, succeeded=succeeded, outcome=outcome)


class Hold(Record):
    """A manual hold or its release."""

    action: Literal["hold", "release"]
    reason: str
    at: datetime


class Run(Record):
    """A started run and, once it ended, how."""

    started: RunStarted
    finished: RunFinished | None

    def in_flight(self, now: datetime, timeout: timedelta) -> bool:
        """Not marked finished, and started less than `timeout` before `now`: past it, a run
        nothing marked finished blocks no longer (fail closed, but not forever)."""
        return self.finished is None and now - self.started.started_at < timeout

    def outcome(self, now: datetime, timeout: timedelta) -> Outcome | None:
        """How it ended; None while in flight, unknown once in flight longer than `timeout`."""
        if self.finished is not None:
            return self.finished.outcome
        return None if self.in_flight(now, timeout) else "unknown"


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

    def check_unused(self, run_id: str) -> None:
        """Refuse a run id some run started with (before a run starts that can only be
        recorded once it started, as a submitted one)."""
        if self.store.exists(self._run_key(run_id, "started.json")):
            raise LedgerError(f"run {run_id} was already marked started: choose another run id")

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
