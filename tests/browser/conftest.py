"""The UI's browser tests: a store made by `flywheel simulate` once a session, `flywheel ui`
on it, and Debian's chromium driven by Playwright, with pages that fail a test on any console
or page error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from harness.browser import ConsoleGuard, launch
from harness.simulated_store import SimulatedStore, simulate_store
from harness.ui_server import ui_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> SimulatedStore:
    """A store made by a real `flywheel simulate` run: a promotion, a rollback, a trigger's
    firing and monitoring windows (harness.simulated_store). Read-only: copy it to change it."""
    return simulate_store(tmp_path_factory.mktemp("ui-simulation"))


@pytest.fixture(scope="session")
def ui(simulated: SimulatedStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of `flywheel ui` serving the simulated store."""
    with ui_server(simulated.config, tmp_path_factory.mktemp("ui-log") / "ui.log") as url:
        yield url


# Module, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, and any later test of the worker that calls asyncio.run would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium for the module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def console() -> ConsoleGuard:
    """The console and page errors of the test's page; a test expecting one takes it out."""
    return ConsoleGuard()


@pytest.fixture
def page(browser: Browser, console: ConsoleGuard) -> Iterator[Page]:
    """A fresh page (its own context: no cookies or cache shared); the test fails on any
    console error or uncaught page error it left in `console`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = console.watch(context.new_page())
    yield page
    context.close()
    if console.errors:
        pytest.fail("the page logged errors:\n" + "\n".join(console.errors), pytrace=False)
