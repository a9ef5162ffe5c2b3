"""A real browser for the UI's tests: Debian's chromium driven by Playwright, a guard that
collects every console and page error of a page, and axe-core's accessibility checks run in
the page."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.build import asset_dir

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright

# Debian's chromium (`make browser` installs it): Playwright's own browser download is not
# used. CHROMIUM names another build.
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# What axe-core reports that fails a page; moderate and minor findings are left to review.
FAILING_IMPACTS = ("serious", "critical")


def chromium_path() -> Path:
    """The chromium the tests launch, or a failure saying how to install it."""
    path = Path(os.environ.get("CHROMIUM") or DEFAULT_CHROMIUM)
    if not path.is_file():
        raise FileNotFoundError(f"no chromium at {path}: run `make browser` (or set CHROMIUM)")
    return path


def launch(playwright: Playwright) -> Browser:
    """Headless chromium; as root it runs without its sandbox, which needs user namespaces
    that a root process in a container is refused."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=chromium_path(), args=args)


@dataclass
class ConsoleGuard:
    """Every error a page logged to its console or threw, as `type: text (where)` lines."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            where = message.location.get("url", "")
            self.errors.append(f"console {message.type}: {message.text} ({where})")

    def _page_error(self, error: Error) -> None:
        self.errors.append(f"page error: {error.name}: {error.message}")


def axe_script() -> Path:
    """axe-core's script, pinned and checksummed in the tools cache (`make tools`)."""
    return asset_dir("axe-core") / "axe.min.js"


def axe_violations(page: Page, impacts: tuple[str, ...] = FAILING_IMPACTS) -> list[dict[str, Any]]:
    """axe-core run on the page as it stands: its violations of these impacts, each with
    the rule, its help and the elements it found."""
    page.add_script_tag(path=axe_script())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document)).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5),
        }))"""
    )
    return [v for v in found if v["impact"] in impacts]
