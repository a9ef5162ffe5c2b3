"""Take docs/ui/*.png: the UI's main pages in chromium, on the browser tests' store.

python -m tools.ui_screenshots [--out docs/ui]

In a scratch directory: the store the browser tests read (harness.simulated_store: one
`flywheel simulate` run with a rollback, a trigger's firing and a promotion), `flywheel ui`
on it, and each main page taken by Debian's chromium through Playwright (`make browser`),
1280 pixels wide and at most 1,400 high.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIDTH, MOST_HEIGHT = 1280, 1400
# The file each main page is saved as, and how pages() names it; the rollout is v3's
# promotion, step by step.
SHOTS = {
    "versions": "versions",
    "version": "version v3",
    "aliases": "aliases",
    "rollouts": "rollouts",
    "rollout": "rollout v3",
    "triggers": "triggers",
    "monitoring": "monitoring",
    "runs": "runs",
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "ui")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from harness.browser import ConsoleGuard, launch
    from harness.simulated_store import pages, simulate_store
    from harness.ui_server import ui_server

    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flywheel-ui-shots-") as scratch:
        store = simulate_store(Path(scratch) / "simulation")
        found = pages(store.settings)
        paths = {
            file: next(path for name, path in found.items() if name.startswith(prefix))
            for file, prefix in SHOTS.items()
        }
        log = Path(scratch) / "ui.log"
        with ui_server(store.config, log) as url, sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            guard = ConsoleGuard()
            guard.watch(page)
            for file, path in paths.items():
                page.goto(url + path, wait_until="networkidle")
                height = min(page.evaluate("document.body.scrollHeight"), MOST_HEIGHT)
                page.screenshot(
                    path=args.out / f"{file}.png",
                    clip={"x": 0, "y": 0, "width": WIDTH, "height": height},
                    full_page=True,
                )
            browser.close()
        if guard.errors:
            print("\n".join(guard.errors), file=sys.stderr)
            return 1
    shown = args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out
    size = sum((args.out / f"{file}.png").stat().st_size for file in SHOTS) // 1024
    print(
        f"wrote {len(SHOTS)} pages into {shown} ({size} KB) in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
