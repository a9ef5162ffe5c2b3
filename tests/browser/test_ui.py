"""The UI in a real browser (issue 23): `flywheel ui` on a store made by `flywheel simulate`,
each page read by Debian's chromium through Playwright and checked against what the library
reads from the same store, with axe-core's accessibility checks run in every page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flywheel.monitoring.records import latest_records
from flywheel.registry import CANDIDATE, PRODUCTION, Registry
from flywheel.stores import Stores
from harness.browser import ConsoleGuard, axe_violations
from harness.rollouts import QUIET
from harness.servers import free_ports
from harness.simulated_store import SimulatedStore, canary_in_progress, pages
from harness.ui_server import ui_server

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def _cells(page: Page, rows: str) -> list[list[str]]:
    """The text of each cell of the rows `rows` selects."""
    found: list[list[str]] = page.locator(rows).evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    return found


def _at(stamp: str) -> str:
    """An ISO time as the pages show it: 2026-01-07 00:00:00."""
    return stamp[:19].replace("T", " ")


def test_the_simulated_store_holds_a_promotion_a_rollback_a_firing_and_windows(
    simulated: SimulatedStore,
) -> None:
    # given the store one `flywheel simulate` run made
    settings = simulated.settings
    stores = Stores(settings)
    registry = stores.registry
    # then v2 (faulty) was rolled back and v3 promoted, production moving v1 -> v3
    assert [m.version for m in registry.versions()] == ["v1", "v2", "v3"]
    assert [r["kind"] for r in registry.records("v2")][-1] == "rollout-rolled-back"
    assert [r["kind"] for r in registry.records("v3")][-1] == "rollout-promoted"
    assert [s.version for s in registry.history(PRODUCTION)] == ["v1", "v3"]
    assert registry.records("v3", "rollout-look")
    # and a trigger fired beside the warm-up's forced check, and started the run of v3
    fired = [d for d in stores.ledger.decisions() if d["fired"]]
    assert len(fired) >= 2, fired
    assert any(r.started.run_id == registry.manifest("v3").run_id for r in stores.ledger.runs())
    # and monitoring kept a window record of each simulated day
    windows = latest_records(registry.store, settings.model_name, "v1", "day")
    assert len(windows) >= 2, windows


def test_every_page_loads_with_no_console_error_and_no_serious_accessibility_violation(
    ui: str, simulated: SimulatedStore, page: Page, console: ConsoleGuard
) -> None:
    # given every page of the UI on the simulated store
    found: dict[str, Any] = {}
    for name, path in pages(simulated.settings).items():
        # when chromium loads it and axe-core checks it
        response = page.goto(ui + path)
        assert response is not None
        problems = [f"HTTP {response.status}"] if response.status != 200 else []
        if not page.locator("main h1").is_visible():
            problems.append("no heading")
        problems += console.errors
        console.errors.clear()
        problems += [
            f"{v['impact']} {v['id']}: {v['help']} {v['nodes']}" for v in axe_violations(page)
        ]
        found[name] = problems
    # then each loaded with no error in its console and no serious or critical violation
    assert {name: p for name, p in found.items() if p} == {}
    assert len(found) >= 12, list(found)
    # and / is the versions page
    page.goto(ui + "/")
    assert page.url == ui + "/versions"


def test_the_versions_table_shows_what_the_registry_holds(
    ui: str, simulated: SimulatedStore, page: Page
) -> None:
    registry = Registry.from_settings(simulated.settings)
    manifests = registry.versions()[::-1]  # newest first, as the page lists them
    holders = {alias: registry.resolve(alias) for alias in (PRODUCTION, CANDIDATE)}
    # when the versions page is read
    page.goto(ui + "/versions")
    rows = _cells(page, "#versions tbody tr")
    # then it lists every version, newest first: its aliases, creation, gate and run
    assert [r[0] for r in rows] == [m.version for m in manifests]
    for row, manifest in zip(rows, manifests, strict=True):
        aliases = {a for a, held in holders.items() if held == manifest.version}
        assert set(row[1].split()) == aliases, row
        assert row[2] == _at(manifest.created_at)
        decision = registry.read_optional(manifest.version, "decision.json")
        blessed = None if decision is None else '"blessed": true' in decision.decode()
        assert row[6] == {None: "–", True: "blessed", False: "refused"}[blessed], row
        assert row[8] == manifest.run_id


def test_a_version_page_shows_its_lineage_gate_records_and_evaluation(
    ui: str, simulated: SimulatedStore, page: Page
) -> None:
    import json

    registry = Registry.from_settings(simulated.settings)
    manifest = registry.manifest("v3")
    decision = json.loads(registry.read("v3", "decision.json"))
    # when v3's page is read
    page.goto(ui + "/versions/v3")
    # then its lineage names the run that trained it, the gate its decision and every check
    lineage = dict(_cells(page, "#lineage tr"))
    assert lineage["run"] == manifest.run_id
    assert (
        page.locator("#gate")
        .inner_text()
        .startswith("Blessed" if decision["blessed"] else "Refused")
    )
    assert [r[0] for r in _cells(page, "#checks tbody tr")] == [
        c["name"] for c in decision["checks"]
    ]
    # and every record about it, oldest first
    assert [r[1] for r in _cells(page, "#records tbody tr")] == [
        r["kind"] for r in registry.records("v3")
    ]
    # and its evaluation report, framed
    frame = page.frame_locator("iframe.report")
    assert frame.locator("body").inner_text(timeout=10_000).strip()


def test_the_alias_tables_and_timeline_match_the_alias_revisions(
    ui: str, simulated: SimulatedStore, page: Page
) -> None:
    registry = Registry.from_settings(simulated.settings)
    # when the aliases page is read
    page.goto(ui + "/aliases")
    for alias in (PRODUCTION, CANDIDATE):
        history = registry.history(alias)
        assert history, alias
        # then each alias's table holds every revision, newest first, as the registry has it
        expected = [
            [str(s.revision), s.version, s.previous or "–", _at(s.at), s.actor, s.reason]
            for s in history[::-1]
        ]
        assert _cells(page, f"#alias-{alias} tbody tr") == expected
        # and the timeline draws one span a revision, in order, from its time to the next's
        spans = page.locator(f'figure.timeline g.span[data-alias="{alias}"]')
        titles = spans.locator("title").all_text_contents()
        assert [t.split(": ")[1].split(" from ")[0] for t in titles] == [s.version for s in history]
        starts = [re.search(r"from (\S+ \S+)", t).group(1) for t in titles]  # type: ignore[union-attr]
        assert starts == [_at(s.at)[:16] for s in history]
        ends = [re.search(r"to (\S+ \S+)", t).group(1) for t in titles[:-1]]  # type: ignore[union-attr]
        assert ends == [_at(s.at)[:16] for s in history[1:]]


def test_rollouts_triggers_runs_and_windows_show_what_the_store_holds(
    ui: str, simulated: SimulatedStore, page: Page
) -> None:
    settings = simulated.settings
    stores = Stores(settings)
    registry = stores.registry
    # given each rollout's start and ending, as the controller recorded them
    endings = {"rollout-promoted": "promoted", "rollout-rolled-back": "rolled back"}
    rollouts = {}
    for manifest in registry.versions():
        records = registry.records(manifest.version)
        for start in (r for r in records if r["kind"] == "rollout-start"):
            ended = [r for r in records if r["rollout_id"] == start["rollout_id"]]
            rollouts[start["rollout_id"]] = (
                manifest.version,
                start["stable"],
                next(endings[r["kind"]] for r in ended if r["kind"] in endings),
                sum(r["kind"] == "rollout-look" for r in ended),
            )
    # then the rollouts page lists each with how it ended, newest first
    page.goto(ui + "/rollouts")
    rows = _cells(page, "#rollouts tbody tr")
    assert {r[0]: (r[1], r[2], r[5]) for r in rows} == {k: v[:3] for k, v in rollouts.items()}
    assert [r[0] for r in rows] == sorted(rollouts, key=lambda k: rollouts[k][0], reverse=True)
    # and each rollout's page its decision and every look
    for rollout_id, (_, _, outcome, looks) in rollouts.items():
        page.goto(f"{ui}/rollouts/{rollout_id}")
        assert page.locator("#outcome").get_attribute("data-outcome") == outcome
        assert page.locator("#look-count").inner_text() == str(looks)
        assert page.locator("#looks tbody tr").count() == looks

    # given the trigger engine's decisions and the runs it started
    keys = stores.ledger.decision_keys()
    started = {
        r.started.decision.rsplit("/", 1)[-1]: r.started.run_id for r in stores.ledger.runs()
    }
    # then the triggers page shows each, newest first, the fired ones with their run
    page.goto(ui + "/triggers")
    rows = _cells(page, "#triggers tbody tr")
    assert len(rows) == len(keys)
    for row, key in zip(rows, keys[::-1], strict=True):
        decision = stores.ledger.decision(key)
        assert row[1].startswith("fired") == decision["fired"], row
        assert row[2].startswith(decision["reason"]), row
        assert row[3] == started.get(key.rsplit("/", 1)[-1], "–"), row

    # and the runs page every run, newest first, with how it ended
    runs = stores.ledger.runs()[::-1]
    page.goto(ui + "/runs")
    rows = _cells(page, "#runs tbody tr")
    assert [r[0] for r in rows] == [run.started.run_id for run in runs]
    assert [r[6] for r in rows] == [
        run.finished.outcome if run.finished else "in flight" for run in runs
    ]

    # and the monitoring page each day window of the version it names, newest first
    for version in ("v1",):
        windows = latest_records(registry.store, settings.model_name, version, "day")
        page.goto(f"{ui}/monitoring?version={version}&window=day")
        rows = _cells(page, "#windows tbody tr")
        assert [(r[0], r[2], r[8]) for r in rows] == [
            (f"{w.start:%Y-%m-%d %H:%M}", str(w.health.requests), str(w.performance.labelled))
            for w in windows[::-1]
        ]
        assert page.locator(".plots figure img").count() > 0


def test_a_rollout_in_progress_updates_without_a_reload(
    simulated: SimulatedStore, page: Page, tmp_path: Path
) -> None:
    # given a copy of the store in which the real controller starts a canary of v2 against
    # production, and the UI on it
    copy = simulated.copy(tmp_path / "simulation")
    controller = canary_in_progress(copy.settings, "v2", [QUIET, QUIET])
    state = controller.state()
    assert state is not None and state.phase == "progressing"
    with ui_server(copy.config, tmp_path / "ui.log") as url:
        page.goto(f"{url}/rollouts/{state.rollout_id}")
        outcome = page.locator("#outcome")
        assert outcome.get_attribute("data-outcome") == "progressing"
        assert page.locator("#look-count").inner_text() == "0"
        # a mark that a reload would wipe out
        page.evaluate("window.notReloaded = true")
        # when the controller records a look, then another
        for looks in (1, 2):
            controller.tick()
            # then the page shows it, polling on its own
            page.locator("#look-count").filter(has_text=re.compile(f"^{looks}$")).wait_for(
                timeout=15_000
            )
            assert page.locator("#looks tbody tr").count() == looks
        # and the canary rolled back by hand ends it on the page too
        controller.rollback("rolled back by the browser test", actor="ada")
        page.locator('#outcome[data-outcome="rolled back"]').wait_for(timeout=15_000)
        assert outcome.inner_text() == "rolled back by ada: rolled back by the browser test"
        assert page.evaluate("window.notReloaded") is True


def test_a_store_that_is_down_gives_a_503_page_naming_the_problem(
    simulated: SimulatedStore, page: Page, console: ConsoleGuard, tmp_path: Path
) -> None:
    # given the UI pointed at an S3 store on a port nothing listens on
    (closed,) = free_ports(1)
    down = (
        "storage.uri=s3://flywheel/store",
        f"storage.endpoint=127.0.0.1:{closed}",
        "storage.secure=false",
    )
    keys = {"AWS_ACCESS_KEY_ID": "reader", "AWS_SECRET_ACCESS_KEY": "secret"}
    with ui_server(simulated.config, tmp_path / "ui.log", down, keys) as url:
        for path in ("/versions", "/monitoring"):
            # when a page is asked for
            response = page.goto(url + path)
            # then it is a 503 page saying the store cannot be reached, and where, with no trace
            assert response is not None and response.status == 503, path
            assert page.locator("main h1").inner_text() == "The store cannot be read"
            message = page.locator("main [role=alert]").inner_text()
            assert f"cannot reach the S3 endpoint 127.0.0.1:{closed}" in message, message
            assert "Traceback" not in page.content()
            # and the browser logged that status, and nothing else
            assert [e for e in console.errors if "status of 503" not in e] == []
            console.errors.clear()


def test_axe_reports_a_serious_violation_and_the_guard_a_page_error(
    page: Page, console: ConsoleGuard
) -> None:
    # given a page with an image without alternative text, which throws once loaded
    page.set_content(
        '<!doctype html><html lang="en"><head><title>t</title></head><body><main>'
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        "<script>throw new Error('broken')</script></main></body></html>"
    )
    # then axe-core, run in the page, reports the missing text as critical
    assert [v["id"] for v in axe_violations(page)] == ["image-alt"]
    # and the guard saw the error (taken out here, or the fixture fails the test)
    assert console.errors == ["page error: Error: broken"]
    console.errors.clear()
