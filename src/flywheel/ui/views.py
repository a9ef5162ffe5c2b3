"""What each page of the UI shows, read through a Catalog: plain data for the templates.

A page reads only what it shows: a list page, its page of items, found from listings (a
version's files, a record's kind and stamp are in its key), never every object in the store.
"""

from __future__ import annotations

import base64
import itertools
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel import lineage
from flywheel.errors import FlywheelError
from flywheel.monitoring import page as monitoring_page
from flywheel.monitoring.records import PREFIX as MONITORING
from flywheel.monitoring.window import WindowReport
from flywheel.registry import CANDIDATE, PRODUCTION, version_number
from flywheel.report import figures_as
from flywheel.triggers.ledger import RunFinished
from flywheel.ui import svg
from flywheel.ui.catalog import Catalog

PAGE_SIZE = 50
# Versions whose rollouts one page of rollouts shows.
ROLLOUT_PAGE = 25
_VERSION = re.compile(r"^v\d+$")
ALIASES = (PRODUCTION, CANDIDATE)
ENDINGS = {"rollout-promoted": "promoted", "rollout-rolled-back": "rolled back"}
# Windows the monitoring page shows at once (newest first, older ones on later pages).
WINDOWS_SHOWN = 60
# Monitoring plots kept drawn (one is about 60 KB of SVG).
FIGURES_KEPT = 320
PII = "(pii: not shown)"


class NotFound(FlywheelError, LookupError):
    """What the page names is not in the store."""


@dataclass(frozen=True)
class Page:
    """One page of a list: its items and where it stands."""

    items: list[Any]
    number: int
    pages: int
    total: int
    span: str = ""  # what the page covers, where it is not its items (rollouts: versions)


def paginate(items: Sequence[Any], number: int, size: int = PAGE_SIZE) -> tuple[Sequence[Any], int]:
    """The items of page `number` (1-based, clamped) and how many pages there are."""
    pages = max(1, math.ceil(len(items) / size))
    number = min(max(1, number), pages)
    return items[(number - 1) * size : number * size], pages


def redact(value: Any, pii: set[str]) -> Any:
    """`value` with whatever sits under a pii column's name replaced, numbers (a statistic
    of the column, never one of its values) kept."""
    if isinstance(value, dict):
        return {k: redact_all(v) if k in pii else redact(v, pii) for k, v in value.items()}
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


class Views:
    """The pages of one model's store."""

    def __init__(self, catalog: Catalog, model: str) -> None:
        self.catalog = catalog
        self.model = model
        self.versions_prefix = f"models/{model}/versions/"
        self._figures: dict[tuple[str, ...], bytes] = {}
        self._drawing = threading.Lock()

    # --- shared ------------------------------------------------------------------

    def all_versions(self) -> list[str]:
        """Every version's folder, newest first: complete or not (a run that died half way
        leaves a claim and no manifest). One listing of the folders, not of their files."""
        names = [v for v in self.catalog.children(self.versions_prefix) if _VERSION.match(v)]
        return sorted(names, key=version_number, reverse=True)

    def _file(self, version: str, name: str) -> str:
        return f"{self.versions_prefix}{version}/{name}"

    def manifests(self, versions: Sequence[str]) -> list[dict[str, Any] | None]:
        """Each version's manifest, None for one not complete (yet)."""
        return self.catalog.many(
            (self._file(v, "manifest.json") for v in versions), missing_ok=True
        )

    def _manifest(self, version: str) -> dict[str, Any]:
        (manifest,) = self.manifests([version]) if _VERSION.match(version) else [None]
        if manifest is None and version in self.all_versions():
            raise NotFound(
                f"{self.model} {version} is incomplete: its run stopped before registering it"
            )
        if manifest is None:
            raise NotFound(f"{self.model} has no version {version}")
        return dict(manifest)

    def _files(
        self, versions: Sequence[str], manifests: Sequence[dict[str, Any] | None], name: str
    ) -> list[Any]:
        """One file of each version, parsed, None where its manifest does not list it."""
        present = [v for v, m in zip(versions, manifests, strict=True) if m and name in m["files"]]
        read = self.catalog.many(self._file(v, name) for v in present)
        found = dict(zip(present, read, strict=True))
        return [found.get(v) for v in versions]

    def _records(self, versions: Sequence[str]) -> list[list[str]]:
        """The keys of each version's records, oldest first."""
        return self.catalog.keys_of(f"{self.versions_prefix}{v}/records/" for v in versions)

    def aliases_now(self) -> dict[str, list[str]]:
        """The aliases on each version now: {"v4": ["production", "candidate"]}."""
        on: dict[str, list[str]] = {}
        for alias in ALIASES:
            keys = self.catalog.keys(f"models/{self.model}/aliases/{alias}/")
            if keys:
                on.setdefault(self.catalog.json(keys[-1])["version"], []).append(alias)
        return on

    def pii(self) -> set[str]:
        """The columns the newest complete version's contract tags pii."""
        versions = self.all_versions()
        for start in range(0, len(versions), 8):
            batch = versions[start : start + 8]
            for version, manifest in zip(batch, self.manifests(batch), strict=True):
                if manifest and "contract.json" in manifest["files"]:
                    contract = self.catalog.json(self._file(version, "contract.json"))
                    columns = contract.get("columns") or {}
                    return {n for n, tags in columns.items() if (tags or {}).get("pii")}
        return set()

    # --- versions ----------------------------------------------------------------

    def versions(self, number: int) -> Page:
        """A page of versions, newest first, with their headline figures and gate decision;
        a version whose run stopped before it was complete is listed as incomplete."""
        everything = self.all_versions()
        shown, pages = paginate(everything, number)
        manifests = self.manifests(shown)
        decisions = self._files(shown, manifests, "decision.json")
        lineages = self._files(shown, manifests, "lineage.json")
        aliases = self.aliases_now()
        rows = []
        for version, manifest, decision, record in zip(
            shown, manifests, decisions, lineages, strict=True
        ):
            if manifest is None:
                rows.append({"version": version, "incomplete": True})
                continue
            summary = manifest.get("summary") or {}
            rows.append(
                {
                    "version": version,
                    "incomplete": False,
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
        return Page(rows, min(max(1, number), pages), pages, len(everything))

    def version(self, version: str) -> dict[str, Any]:
        """One version: metrics, gate decision and checks, lineage, records, aliases."""
        manifest = self._manifest(version)
        metrics, decision, record = (
            self._files([version], [manifest], name)[0]
            for name in ("metrics.json", "decision.json", "lineage.json")
        )
        record = record or {}
        pii = self.pii()
        (keys,) = self._records([version])
        records = []
        for key in keys:
            stamp, _, kind = key.rsplit("/", 1)[-1].partition("-")
            records.append({"stamp": _stamp(stamp), "kind": kind.removesuffix(".json")})
        starts = [k for k in keys if k.endswith("-rollout-start.json")]
        rollouts = [start["rollout_id"] for start in self.catalog.many(starts)]
        data = record.get("data") or {}
        return {
            "version": version,
            "manifest": manifest,
            "aliases": self.aliases_now().get(version, []),
            "metrics": metric_table(metrics or {}),
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
                "scorer": _scorer(record.get("scorer")),
                "created": manifest.get("created_at"),
            },
            "packages": record.get("packages") or {},
            "config": redact(lineage.flat(record.get("config") or {}), pii),
            "records": records,
            "rollouts": rollouts,
            "evaluation": "evaluation.html" in manifest["files"],
            "files": sorted(manifest["files"]),
        }

    def evaluation(self, version: str) -> bytes:
        """A version's evaluation report, as the pipeline wrote it."""
        if "evaluation.html" not in self._manifest(version)["files"]:
            raise NotFound(f"{self.model} {version} has no evaluation report")
        return self.catalog.raw(self._file(version, "evaluation.html"))

    def diff(self, first: str, second: str) -> dict[str, Any]:
        """What changed from one version to the other."""
        sides = []
        for version in (first, second):
            manifest = self._manifest(version)
            record, metrics, evaluation = (
                self._files([version], [manifest], name)[0]
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
            "versions": self.all_versions(),
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
        """The canary rollouts of a page of versions (25, newest first), each with how it
        ended or where it is: found from the versions' records, not from every rollout."""
        everything = self.all_versions()
        versions, pages = paginate(everything, number, ROLLOUT_PAGE)
        found = [
            (key.rsplit("/", 1)[-1].partition("-")[0], version, key)
            for version, keys in zip(versions, self._records(versions), strict=True)
            for key in keys
            if key.endswith("-rollout-start.json")
        ]
        found.sort(reverse=True)
        starts = self.catalog.many(key for _, _, key in found)
        live = self.current_state()
        rows = []
        for (stamp, version, _), start in zip(found, starts, strict=True):
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
        span = f"{versions[-1]}..{versions[0]}" if versions else ""
        return Page(rows, min(max(1, number), pages), pages, len(everything), span)

    def _ending(self, version: str, rollout_id: str) -> dict[str, Any] | None:
        (keys,) = self._records([version])
        keys = [
            k for k in keys if k.endswith(("-rollout-promoted.json", "-rollout-rolled-back.json"))
        ]
        for key, record in zip(keys, self.catalog.many(keys), strict=True):
            if record.get("rollout_id") == rollout_id:
                return _ending(key.rsplit("/", 1)[-1].partition("-")[2], record)
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
        keys = self.catalog.fresh_keys(prefix) if _VERSION.match(version) else []
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
            (_ending(k, r) for (_, _, k), r in mine if k.removesuffix(".json") in ENDINGS), None
        )
        latest = self.current_state()
        state = latest if latest and latest.get("rollout_id") == rollout_id else None
        # With no ending recorded, a rollout that started after the newest state the kept
        # listing shows is in progress: that listing lags by at most one refresh.
        started = next((s for (s, _, k), _ in mine if k == "rollout-start.json"), "")
        newer = latest is None or _stamp_time(started) > _time(latest["started_at"])
        progressing = ending is None and (
            state.get("phase") == "progressing" if state is not None else bool(started) and newer
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
        ends = self._finished([run["run_id"] for run in shown])
        rows = [{**run, **ends[run["run_id"]]} for run in shown]
        return Page(rows, min(max(1, number), pages), pages, len(started))

    def _finished(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """How each run ended ({run id: outcome, finished_at}; None for one still in
        flight), the records read in parallel and by the ledger's own record."""
        listed = set(self.catalog.keys(f"triggers/{self.model}/runs/"))
        keys = {r: f"triggers/{self.model}/runs/{r}/finished.json" for r in run_ids}
        ended = [r for r in run_ids if keys[r] in listed]
        ends: dict[str, dict[str, Any]] = {
            r: {"outcome": None, "finished_at": None} for r in run_ids
        }
        for run_id, data in zip(ended, self.catalog.many(keys[r] for r in ended), strict=True):
            finished = RunFinished.model_validate(data)
            ends[run_id] = {
                "outcome": finished.outcome,
                "finished_at": finished.finished_at.isoformat(),
            }
        return ends

    def registered_by(self, run_ids: Iterable[str]) -> dict[str, str]:
        """The version each run registered, looking from the newest version back."""
        wanted, found = set(run_ids), dict[str, str]()
        everything = self.all_versions()
        for start in range(0, len(everything), PAGE_SIZE):
            batch = everything[start : start + PAGE_SIZE]
            for version, manifest in zip(batch, self.manifests(batch), strict=True):
                if manifest and manifest.get("run_id") in wanted:
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
        ends = self._finished([first, second])
        sides = [{**runs[r], **ends[r]} for r in (first, second)]
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

    def _windows(self, version: str, window: str) -> dict[str, str]:
        """The newest record of each of a version's windows: {start: key}."""
        newest: dict[str, str] = {}
        for key in self.catalog.keys(f"{MONITORING}/{self.model}/{version}/{window}/"):
            start = key.rsplit("/", 2)[-2]
            newest[start] = max(newest.get(start, key), key)
        return newest

    def _monitored(self) -> list[str]:
        """The versions with window records, newest first."""
        found = self.catalog.children(f"{MONITORING}/{self.model}/")
        return sorted((v for v in found if _VERSION.match(v)), key=version_number, reverse=True)

    def _shown_windows(self, version: str, window: str, number: int) -> tuple[tuple[str, ...], int]:
        """The newest record of each window on page `number` (newest first), and the pages."""
        newest = self._windows(version, window) if version in self._monitored() else {}
        if not newest:
            raise NotFound(f"{self.model} {version} has no {window} window records")
        shown, pages = paginate(sorted(newest, reverse=True), number, WINDOWS_SHOWN)
        return tuple(newest[s] for s in shown), pages

    def monitoring_figure(self, version: str, window: str, number: int, index: int) -> bytes:
        """One of the monitoring page's plots, as SVG: drawn once, then kept."""
        chosen = self._shown_windows(version, window, number)[0]
        key = (*chosen, str(index))
        with self._drawing:  # a plot is drawn once
            if key not in self._figures:
                reports = [WindowReport.model_validate(r) for r in self.catalog.many(chosen)]
                listed = monitoring_page.plots(reports)
                if not 0 <= index < len(listed):
                    raise NotFound(f"the monitoring page has no plot {index}")
                with figures_as("svg"):
                    self._figures[key] = base64.b64decode(listed[index][1]())
                while len(self._figures) > FIGURES_KEPT:
                    self._figures.pop(next(iter(self._figures)))
            return self._figures[key]

    def monitoring(self, version: str | None, window: str, number: int) -> dict[str, Any]:
        """A version's window records over time (the newest of each window), with the
        monitoring report's table and plots; production's when no version is named."""
        monitored = self._monitored()
        if version is None:
            production = [v for v, on in self.aliases_now().items() if PRODUCTION in on]
            version = production[0] if production and production[0] in monitored else None
            version = version or (monitored[0] if monitored else None)
        if version is None:
            return {"version": None, "versions": [], "window": window, "page": 1, "pages": 1}
        chosen, pages = self._shown_windows(version, window, number)
        reports = [WindowReport.model_validate(r) for r in self.catalog.many(chosen)]
        header, rows = monitoring_page.table(reports)
        return {
            "version": version,
            "versions": monitored,
            "window": window,
            "header": header,
            "rows": rows[::-1],
            "captions": [caption for caption, _ in monitoring_page.plots(reports)],
            "notes": monitoring_page.notes(reports),
            "page": min(max(1, number), pages),
            "pages": pages,
            "records": len(chosen),
        }


# The columns of a version's metrics table: metrics.json names each figure
# <model>_<data>_<metric>, as the evaluate step writes it.
SIDES = ("candidate_newest", "candidate_holdout", "production_newest")


def metric_table(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json as a table: a row per metric with a column per model and data, then
    the permutation importances; a figure named otherwise is listed on its own."""
    rows: dict[str, dict[str, Any]] = {}
    importance: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for name, value in metrics.items():
        side = next((s for s in SIDES if name.startswith(f"{s}_")), None)
        if side is not None:
            rows.setdefault(name[len(side) + 1 :], {})[side] = value
        elif name.startswith("candidate_importance_"):
            importance[name.removeprefix("candidate_importance_")] = value
        else:
            other[name] = value
    return {"columns": SIDES, "rows": rows, "importance": importance, "other": other}


def _scorer(entry: Any) -> str | None:
    """Which scorer serves the version: 'compiled treelite (from HistGradient...)'."""
    if not isinstance(entry, dict):
        return None if entry is None else str(entry)
    source = f" (from {entry['source']})" if entry.get("source") else ""
    return f"{entry.get('scorer', '?')}{source}"


def _ending(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """How a rollout ended, from its ending record named `name` (rollout-promoted.json)."""
    return {
        "outcome": ENDINGS[name.removesuffix(".json")],
        "reason": record.get("reason", ""),
        "actor": record.get("actor"),
    }


def _stamp(stamp: str) -> str:
    """20261206T210717657514Z as 2026-12-06 21:07:17."""
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


def _stamp_time(stamp: str) -> datetime:
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _time(at: str) -> datetime:
    moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _window(days: list[str]) -> str:
    return f"{days[0]} .. {days[-1]} ({len(days)} batches)" if days else "not recorded"


def _progress(state: dict[str, Any] | None) -> str:
    if state is None:
        return "unfinished"
    return f"in progress: step {state['step'] + 1} at {state['weight']}%"
