"""What each page of the UI shows, read through a Catalog: plain data for the templates.

A page reads only what it shows: a list page, its page of items, found from listings (a
version's files, a record's kind and stamp are in its key), never every object in the store.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel import lineage
from flywheel.monitoring import page as monitoring_page
from flywheel.monitoring.analysis import WindowReport
from flywheel.monitoring.records import PREFIX as MONITORING
from flywheel.registry import CANDIDATE, PRODUCTION, version_number
from flywheel.report import figures_as
from flywheel.ui import svg
from flywheel.ui.catalog import Catalog

PAGE_SIZE = 50
ALIASES = (PRODUCTION, CANDIDATE)
ENDINGS = {"rollout-promoted": "promoted", "rollout-rolled-back": "rolled back"}
# Windows the monitoring page shows at once (newest first, older ones on later pages).
WINDOWS_SHOWN = 60
# Sets of monitoring plots kept drawn (a set is about 300 KB of SVG).
FIGURES_KEPT = 64
PII = "(pii: not shown)"


class NotFound(LookupError):
    """What the page names is not in the store."""


@dataclass(frozen=True)
class Page:
    """One page of a list: its items and where it stands."""

    items: list[Any]
    number: int
    pages: int
    total: int


def paginate(items: Sequence[Any], number: int, size: int = PAGE_SIZE) -> tuple[Sequence[Any], int]:
    """The items of page `number` (1-based, clamped) and how many pages there are."""
    pages = max(1, math.ceil(len(items) / size))
    number = min(max(1, number), pages)
    return items[(number - 1) * size : number * size], pages


def redact(value: Any, pii: set[str]) -> Any:
    """`value` with whatever sits under a pii column's name replaced, numbers (a statistic
    of the column, never one of its values) kept."""
    if isinstance(value, dict):
        return {
            k: (
                v
                if k not in pii or isinstance(v, int | float)
                else PII
                if not isinstance(v, dict | list)
                else redact_all(v)
            )
            if k in pii
            else redact(v, pii)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, pii) for v in value]
    return value


def redact_all(value: Any) -> Any:
    """A pii column's entry: its numbers (statistics) kept, every string replaced."""
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_all(v) for v in value]
    return value if isinstance(value, int | float) or value is None else PII


@dataclass
class _Index:
    """The versions listing, parsed once per listing."""

    complete: list[str] = field(default_factory=list)  # newest first
    files: dict[str, set[str]] = field(default_factory=dict)
    records: dict[str, list[str]] = field(default_factory=dict)  # keys, oldest first
    starts: list[tuple[str, str, str]] = field(default_factory=list)  # (stamp, version, key)


class Views:
    """The pages of one model's store."""

    def __init__(self, catalog: Catalog, model: str) -> None:
        self.catalog = catalog
        self.model = model
        self.versions_prefix = f"models/{model}/versions/"
        self._index: tuple[int, _Index] | None = None
        self._figures: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        self._window_index: dict[str, tuple[int, dict[str, dict[str, str]]]] = {}
        self._drawing = threading.Lock()

    # --- shared ------------------------------------------------------------------

    def index(self) -> _Index:
        """The versions listing, parsed (again only when the listing changed)."""
        listing = self.catalog.keys(self.versions_prefix)
        if self._index is not None and self._index[0] == id(listing):
            return self._index[1]
        index = _Index()
        for key in listing:
            version, _, rest = key[len(self.versions_prefix) :].partition("/")
            if rest.startswith("records/"):
                index.records.setdefault(version, []).append(key)
                stamp, _, kind = rest[len("records/") :].partition("-")
                if kind == "rollout-start.json":
                    index.starts.append((stamp, version, key))
            else:
                index.files.setdefault(version, set()).add(rest)
        index.complete = sorted(
            (v for v, names in index.files.items() if "manifest.json" in names),
            key=version_number,
            reverse=True,
        )
        index.starts.sort(reverse=True)
        self._index = (id(listing), index)
        return index

    def _file(self, version: str, name: str) -> str:
        return f"{self.versions_prefix}{version}/{name}"

    def aliases_now(self) -> dict[str, list[str]]:
        """The aliases on each version now: {"v4": ["production", "candidate"]}."""
        on: dict[str, list[str]] = {}
        for alias in ALIASES:
            keys = self.catalog.keys(f"models/{self.model}/aliases/{alias}/")
            if keys:
                on.setdefault(self.catalog.json(keys[-1])["version"], []).append(alias)
        return on

    def pii(self) -> set[str]:
        """The columns the newest version's contract tags pii."""
        index = self.index()
        for version in index.complete:
            if "contract.json" in index.files[version]:
                contract = self.catalog.json(self._file(version, "contract.json"))
                columns = contract.get("columns") or {}
                return {name for name, tags in columns.items() if (tags or {}).get("pii")}
        return set()

    # --- versions ----------------------------------------------------------------

    def versions(self, number: int) -> Page:
        """A page of versions, newest first, with their headline figures and gate decision."""
        index = self.index()
        shown, pages = paginate(index.complete, number)
        manifests = self.catalog.many(self._file(v, "manifest.json") for v in shown)
        decisions = self._optional(shown, "decision.json")
        lineages = self._optional(shown, "lineage.json")
        aliases = self.aliases_now()
        rows = []
        for version, manifest, decision, record in zip(
            shown, manifests, decisions, lineages, strict=True
        ):
            summary = manifest.get("summary") or {}
            rows.append(
                {
                    "version": version,
                    "aliases": aliases.get(version, []),
                    "created_at": manifest["created_at"][:19].replace("T", " "),
                    "metric": summary.get("metric", ""),
                    "newest": summary.get("newest"),
                    "holdout": summary.get("holdout"),
                    "blessed": None if decision is None else decision.get("blessed"),
                    "because": lineage.trained_because(record or {}),
                    "run_id": manifest.get("run_id", ""),
                }
            )
        return Page(rows, min(max(1, number), pages), pages, len(index.complete))

    def _optional(self, versions: Sequence[str], name: str) -> list[Any]:
        index = self.index()
        present = [v for v in versions if name in index.files.get(v, set())]
        found = dict(
            zip(present, self.catalog.many(self._file(v, name) for v in present), strict=True)
        )
        return [found.get(v) for v in versions]

    def version(self, version: str) -> dict[str, Any]:
        """One version: metrics, gate decision and checks, lineage, records, aliases."""
        index = self.index()
        if version not in index.complete:
            raise NotFound(f"{self.model} has no version {version}")
        files = index.files[version]
        manifest = self.catalog.json(self._file(version, "manifest.json"))
        metrics, decision, record = (
            self._optional([version], name)[0]
            for name in ("metrics.json", "decision.json", "lineage.json")
        )
        record = record or {}
        pii = self.pii()
        records = []
        for key in index.records.get(version, []):
            stamp, _, kind = key.rsplit("/", 1)[-1].partition("-")
            records.append({"stamp": _stamp(stamp), "kind": kind.removesuffix(".json")})
        data = record.get("data") or {}
        return {
            "version": version,
            "manifest": manifest,
            "aliases": self.aliases_now().get(version, []),
            "metrics": metrics or {},
            "decision": decision,
            "because": lineage.trained_because(record),
            "trigger_decision": (record.get("trigger") or {}).get("decision"),
            "lineage": {
                "run": manifest.get("run_id") or record.get("pipeline_run_id"),
                "git commit": record.get("git_commit"),
                "image": record.get("image"),
                "image digest": record.get("image_digest"),
                "data hash": data.get("content_hash"),
                "data source": data.get("source"),
                "data window": _window(lineage.batch_days(record)),
                "scorer": (record.get("scorer") or {}).get("kind")
                if isinstance(record.get("scorer"), dict)
                else record.get("scorer"),
                "created": manifest.get("created_at"),
            },
            "packages": record.get("packages") or {},
            "config": redact(lineage.flat(record.get("config") or {}), pii),
            "records": records,
            "rollouts": [s[2].rsplit("/", 1)[-1] for s in index.starts if s[1] == version],
            "evaluation": "evaluation.html" in files,
            "files": sorted(manifest.get("files", {})),
        }

    def evaluation(self, version: str) -> bytes:
        """A version's evaluation report, as the pipeline wrote it."""
        if "evaluation.html" not in self.index().files.get(version, set()):
            raise NotFound(f"{self.model} {version} has no evaluation report")
        return self.catalog.raw(self._file(version, "evaluation.html"))

    def diff(self, first: str, second: str) -> dict[str, Any]:
        """What changed from one version to the other."""
        index = self.index()
        for version in (first, second):
            if version not in index.complete:
                raise NotFound(f"{self.model} has no version {version}")
        sides = []
        for version in (first, second):
            record, metrics, evaluation = (
                self._optional([version], name)[0]
                for name in ("lineage.json", "metrics.json", "evaluation.json")
            )
            sides.append(
                {"lineage": record or {}, "metrics": metrics or {}, "evaluation": evaluation}
            )
        change = lineage.diff(sides[0], sides[1])
        pii = self.pii()
        return {
            "first": first,
            "second": second,
            "change": change,
            "config": [
                (k, PII if k in pii else a, PII if k in pii else b) for k, a, b in change.config
            ],
            "versions": index.complete,
        }

    # --- aliases -----------------------------------------------------------------

    def aliases(self, number: int) -> dict[str, Any]:
        """Each alias's revisions, newest first, a page at a time, and their timeline."""
        history: dict[str, list[dict[str, Any]]] = {}
        pages = 1
        for alias in ALIASES:
            keys = self.catalog.keys(f"models/{self.model}/aliases/{alias}/")[::-1]
            shown, count = paginate(keys, number)
            pages = max(pages, count)
            history[alias] = list(self.catalog.many(shown))
        spans = []
        moments = [_time(s["at"]) for revisions in history.values() for s in revisions]
        # The current holders run to the right edge: now, or a little past the newest move
        # when that was long ago (a simulated history), so the history is not squashed.
        if moments:
            first, last = min(moments), max(moments)
            edge = min(datetime.now(UTC), last + max((last - first) / 10, timedelta(days=1)))
        for alias, revisions in history.items():
            ordered = sorted(revisions, key=lambda r: r["revision"])
            for state, after in zip(ordered, [*ordered[1:], None], strict=True):
                end = _time(after["at"]) if after else edge
                spans.append((alias, state["version"], _time(state["at"]), end))
        return {
            "history": history,
            "timeline": svg.timeline(spans, list(ALIASES)) if spans else "",
            "page": min(max(1, number), pages),
            "pages": pages,
        }

    # --- rollouts ----------------------------------------------------------------

    def rollouts(self, number: int) -> Page:
        """A page of canary rollouts, newest first, with how each ended (or where it is)."""
        index = self.index()
        shown, pages = paginate(index.starts, number, 25)
        starts = self.catalog.many(key for _, _, key in shown)
        live = self.current_state()
        rows = []
        for (stamp, version, _), start in zip(shown, starts, strict=True):
            ending = self._ending(version, start["rollout_id"])
            state = live if live and live["rollout_id"] == start["rollout_id"] else None
            rows.append(
                {
                    "rollout_id": start["rollout_id"],
                    "canary": version,
                    "stable": start.get("stable"),
                    "started": _stamp(stamp),
                    "steps": start.get("steps", []),
                    "outcome": ending["outcome"] if ending else _progress(state),
                    "reason": ending["reason"] if ending else (state or {}).get("reason", ""),
                }
            )
        return Page(rows, min(max(1, number), pages), pages, len(index.starts))

    def _ending(self, version: str, rollout_id: str) -> dict[str, Any] | None:
        keys = [
            k
            for k in self.index().records.get(version, [])
            if k.endswith(("-rollout-promoted.json", "-rollout-rolled-back.json"))
        ]
        for key, record in zip(keys, self.catalog.many(keys), strict=True):
            if record.get("rollout_id") == rollout_id:
                kind = key.rsplit("/", 1)[-1].partition("-")[2].removesuffix(".json")
                return {
                    "outcome": ENDINGS[kind],
                    "reason": record.get("reason", ""),
                    "actor": record.get("actor"),
                }
        return None

    def current_state(self) -> dict[str, Any] | None:
        """The newest revision of the model's rollout state (as of the kept listing)."""
        keys = self.catalog.keys(f"rollouts/{self.model}/")
        return dict(self.catalog.json(keys[-1])) if keys else None

    def rollout(self, rollout_id: str) -> dict[str, Any]:
        """One rollout: its start, every look's measurements against the thresholds, each
        step's decision, and how it ended; listed afresh, as it may be in progress."""
        version = rollout_id.rsplit("-", 1)[0]
        prefix = f"{self.versions_prefix}{version}/records/"
        keys = self.catalog.fresh_keys(prefix) if version.startswith("v") else []
        mine = [
            (key.rsplit("/", 1)[-1].partition("-"), record)
            for key, record in zip(keys, self.catalog.many(keys), strict=True)
            if record.get("rollout_id") == rollout_id
        ]
        if not mine:
            raise NotFound(f"{self.model} has no rollout {rollout_id}")
        start: dict[str, Any] = next((r for (_, _, k), r in mine if k == "rollout-start.json"), {})
        looks = [{**r, "stamp": _stamp(s)} for (s, _, k), r in mine if k == "rollout-look.json"]
        steps = [{**r, "stamp": _stamp(s)} for (s, _, k), r in mine if k == "rollout-step.json"]
        ending = next(
            (
                {
                    "outcome": ENDINGS[k.removesuffix(".json")],
                    "reason": r.get("reason", ""),
                    "actor": r.get("actor"),
                }
                for (_, _, k), r in mine
                if k.removesuffix(".json") in ENDINGS
            ),
            None,
        )
        state = self.current_state()
        state = state if state and state.get("rollout_id") == rollout_id else None
        # With no ending recorded, the newest rollout is in progress even before the kept
        # listing of the state shows it (it lags by at most one refresh).
        started = next((s for (s, _, k), _ in mine if k == "rollout-start.json"), "")
        starts = self.index().starts
        newest = bool(started) and (not starts or started >= starts[0][0])
        progressing = ending is None and (
            state.get("phase") == "progressing" if state is not None else newest
        )
        checks: dict[str, list[tuple[int, float | None, float | None, str]]] = {}
        for number, look in enumerate(looks, 1):
            for check in look.get("checks", []):
                checks.setdefault(check["name"], []).append(
                    (number, check.get("measured"), check.get("threshold"), check.get("status", ""))
                )
        boundaries = [
            n for n, (a, b) in enumerate(itertools.pairwise(looks), 2) if a["step"] != b["step"]
        ]
        return {
            "rollout_id": rollout_id,
            "canary": version,
            "stable": start.get("stable"),
            "steps": start.get("steps", []),
            "looks": looks,
            "decisions": steps,
            "ending": ending,
            "state": state,
            "progressing": progressing,
            "plots": [
                (name, svg.look_plot(name, points, boundaries)) for name, points in checks.items()
            ],
        }

    # --- triggers and runs -------------------------------------------------------

    def runs_by_decision(self) -> dict[str, str]:
        """The run each trigger decision started: {decision record's name: run id}."""
        started = self._started()
        return {
            run["decision"].rsplit("/", 1)[-1]: run["run_id"]
            for run in started
            if run.get("decision")
        }

    def _started(self) -> list[dict[str, Any]]:
        keys = [
            k
            for k in self.catalog.keys(f"triggers/{self.model}/runs/")
            if k.endswith("/started.json")
        ]
        return list(self.catalog.many(keys))

    def triggers(self, number: int) -> Page:
        """A page of trigger decisions, newest first: inputs, reason and the run started."""
        keys = self.catalog.keys(f"triggers/{self.model}/decisions/")[::-1]
        shown, pages = paginate(keys, number)
        pii = self.pii()
        started = self.runs_by_decision()
        rows = []
        for key, decision in zip(shown, self.catalog.many(shown), strict=True):
            name = key.rsplit("/", 1)[-1]
            rows.append(
                {
                    "name": name,
                    "at": str(decision.get("at", ""))[:19].replace("T", " "),
                    "fired": decision.get("fired"),
                    "reason": decision.get("reason", ""),
                    "blocked_by": decision.get("blocked_by"),
                    "kinds": [f.get("kind") for f in decision.get("firings") or []],
                    "checks": redact(decision.get("checks") or [], pii),
                    "run": started.get(name),
                }
            )
        return Page(rows, min(max(1, number), pages), pages, len(keys))

    def runs(self, number: int) -> Page:
        """A page of pipeline runs, newest first, from the run records."""
        started = sorted(self._started(), key=lambda r: r.get("started_at", ""), reverse=True)
        shown, pages = paginate(started, number)
        rows = [{**run, **self._finished(run["run_id"])} for run in shown]
        return Page(rows, min(max(1, number), pages), pages, len(started))

    def _finished(self, run_id: str) -> dict[str, Any]:
        key = f"triggers/{self.model}/runs/{run_id}/finished.json"
        if key not in self.catalog.keys(f"triggers/{self.model}/runs/"):
            return {"outcome": None, "finished_at": None}
        finished = self.catalog.json(key)
        outcome = finished.get("outcome") or (
            "succeeded" if finished.get("succeeded") else "failed"
        )
        return {"outcome": outcome, "finished_at": finished.get("finished_at")}

    def registered_by(self, run_ids: Iterable[str]) -> dict[str, str]:
        """The version each run registered, looking from the newest version back."""
        wanted, found = set(run_ids), dict[str, str]()
        complete = self.index().complete
        for start in range(0, len(complete), PAGE_SIZE):
            batch = complete[start : start + PAGE_SIZE]
            manifests = self.catalog.many(self._file(v, "manifest.json") for v in batch)
            for version, manifest in zip(batch, manifests, strict=True):
                if manifest.get("run_id") in wanted:
                    found.setdefault(manifest["run_id"], version)
            if wanted <= found.keys():
                break
        return found

    def compare_runs(self, first: str, second: str) -> dict[str, Any]:
        """Two runs side by side: what started them, and the parameters and metrics of the
        versions they registered."""
        runs = {r["run_id"]: r for r in self._started()}
        for run_id in (first, second):
            if run_id not in runs:
                raise NotFound(f"{self.model} has no run {run_id}")
        sides = [{**runs[r], **self._finished(r)} for r in (first, second)]
        versions = self.registered_by([first, second])
        fields = ("started_at", "origin", "actor", "reason", "newest_batch", "commit", "image")
        rows = [(f, sides[0].get(f), sides[1].get(f)) for f in (*fields, "outcome")]
        both = [versions.get(first), versions.get(second)]
        change = self.diff(both[0], both[1]) if both[0] and both[1] else None
        return {
            "first": first,
            "second": second,
            "rows": rows,
            "versions": both,
            "diff": change,
            "runs": sorted(runs, reverse=True),
        }

    # --- monitoring --------------------------------------------------------------

    def _windows(self, window: str) -> dict[str, dict[str, str]]:
        """The newest record of each window of each version: {version: {start: key}}, parsed
        again only when the listing changed."""
        listing = self.catalog.keys(f"{MONITORING}/{self.model}/")
        kept = self._window_index.get(window)
        if kept is not None and kept[0] == id(listing):
            return kept[1]
        by_version: dict[str, dict[str, str]] = {}
        for key in listing:
            parts = key.split("/")
            if len(parts) != 6 or parts[3] != window:
                continue
            newest = by_version.setdefault(parts[2], {})
            newest[parts[4]] = max(newest.get(parts[4], key), key)
        self._window_index[window] = (id(listing), by_version)
        return by_version

    def monitoring(self, version: str | None, window: str, number: int) -> dict[str, Any]:
        """A version's window records over time (the newest of each window), with the
        monitoring report's table and plots; production's when no version is named."""
        by_version = self._windows(window)
        monitored = sorted(by_version, key=version_number, reverse=True)
        if version is None:
            production = [v for v, on in self.aliases_now().items() if PRODUCTION in on]
            version = production[0] if production and production[0] in by_version else None
            version = version or (monitored[0] if monitored else None)
        if version is None:
            return {"version": None, "versions": [], "window": window, "page": 1, "pages": 1}
        if version not in by_version:
            raise NotFound(f"{self.model} {version} has no {window} window records")
        starts = sorted(by_version[version], reverse=True)
        shown, pages = paginate(starts, number, WINDOWS_SHOWN)
        chosen = tuple(by_version[version][s] for s in shown)
        reports = [WindowReport.model_validate(r) for r in self.catalog.many(chosen)]
        with self._drawing:  # pyplot is not thread-safe, and a figure is drawn once
            if chosen not in self._figures:
                with figures_as("svg"):
                    self._figures[chosen] = monitoring_page.figures(reports)
                while len(self._figures) > FIGURES_KEPT:
                    self._figures.pop(next(iter(self._figures)))
            figures = self._figures[chosen]
        header, rows = monitoring_page.table(reports)
        pii = self.pii()
        return {
            "version": version,
            "versions": monitored,
            "window": window,
            "header": header,
            "rows": rows[::-1],
            "figures": figures,
            "notes": monitoring_page.notes(reports),
            "drifted": [
                (
                    r.start,
                    [f.feature for f in r.features if f.result.drifted and f.feature not in pii],
                )
                for r in reports
            ],
            "page": min(max(1, number), pages),
            "pages": pages,
            "records": len(chosen),
        }


def _stamp(stamp: str) -> str:
    """20261206T210717657514Z as 2026-12-06 21:07:17."""
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


def _time(at: str) -> datetime:
    moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _window(days: list[str]) -> str:
    return f"{days[0]} .. {days[-1]} ({len(days)} batches)" if days else "not recorded"


def _progress(state: dict[str, Any] | None) -> str:
    if state is None:
        return "unfinished"
    return f"in progress: step {state['step'] + 1} at {state['weight']}%"
