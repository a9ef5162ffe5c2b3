"""The UI in a real browser (issue 23): `flywheel ui` on a store made by `flywheel simulate`,
each page read by Debian's chromium through Playwright, checked against what the library reads
from the same store, with axe-core's accessibility checks run in every page."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from flywheel.monitoring.records import latest_records
from flywheel.registry import PRODUCTION
from flywheel.stores import Stores
from harness.browser import ConsoleGuard, axe_violations
from harness.simulated_store import SimulatedStore

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.integration, pytest.mark.browser]


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
