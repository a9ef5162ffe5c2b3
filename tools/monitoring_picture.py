"""Draw docs/monitoring-report.png: the monitoring report's plots on a simulated covariate drift.

python -m tools.monitoring_picture [--out docs/monitoring-report.png]

In a scratch directory: 7 days of batches, the pipeline run in-process (v1 goes to
production), then 14 days served through the real serving class with labels two
days late (flywheel.simulation), incomes falling and loans growing from day 12;
then `flywheel monitor`'s analysis and the same plotting code as its HTML report
(flywheel.monitoring.page), four plots tiled into one small PNG; and the trigger
engine's decision at the end, printed for the caption in docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINING_DAYS = 7
SERVED_DAYS = 14
CHANGE_DAY = 12
ROWS = 1000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "monitoring-report.png")
    args = parser.parse_args(argv)

    from flywheel import runs, synthetic
    from flywheel.config import load_settings
    from flywheel.monitoring import page
    from flywheel.monitoring.monitor import monitor
    from flywheel.simulation.traffic import serve_day
    from flywheel.stores import Stores
    from flywheel.triggers import engine

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flywheel-picture-") as scratch:
        root = Path(scratch)
        settings = load_settings(
            None,
            env={},
            overrides=[
                f"data.source={root / 'batches'}",
                f"storage.uri={root / 'store'}",
                f"pipeline.root={root / 'pipeline-root'}",
                f"data.window_days={TRAINING_DAYS}",
                f"data.generator.rows_per_day={ROWS}",
                "data.generator.scenario=covariate_drift",
                f"data.generator.change_day={CHANGE_DAY}",
                "model.search.enabled=false",
                "monitoring.window=day",
                f"monitoring.windows={SERVED_DAYS}",
                "monitoring.label_delay_days=2",
            ],
        )
        generator = settings.data.generator
        stores = Stores(settings)
        registry, source = stores.registry, stores.source
        for day in synthetic.days(generator.start_date, TRAINING_DAYS):
            source.write(day, synthetic.generate_day(day, generator))
        version = runs.run_in_process(
            settings, root / "work", stores=stores, run_id="picture"
        ).version
        if not version:
            print("error: the first model was not blessed", file=sys.stderr)
            return 1
        served = [
            serve_day(
                settings, registry, source, day, version="production", rows=ROWS, label_delay_days=2
            )
            for day in synthetic.days(
                generator.start_date + timedelta(days=TRAINING_DAYS), SERVED_DAYS
            )
        ]
        until = datetime.combine(
            served[-1].day + timedelta(days=1), datetime.min.time(), tzinfo=UTC
        )
        reports = monitor(settings, registry, source, until=until, now=until, record=False).reports
        decision = engine.check(settings, registry, source, now=until)
        figures = [
            page.metric_figure(reports, "accuracy"),
            page.drift_figure(reports),
            page.share_figure(reports),
            page.traffic_figure(reports),
        ]
    serving = sum(s.seconds for s in served)
    tile(figures, args.out)
    print(
        f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out} "
        f"({args.out.stat().st_size // 1024} KB): {SERVED_DAYS} days of {ROWS} rows served in "
        f"{serving:.1f} s ({serving / SERVED_DAYS:.2f} s a day), "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print(f"flywheel triggers check at {until:%Y-%m-%d %H:%M}: {decision.reason}")
    return 0


def tile(figures: list[str], out: Path, columns: int = 2) -> None:
    """The plots (base64 SVGs, drawn as the report draws them) side by side, `columns` to a
    row, taken by chromium, in a 64-colour palette: plots need no more, and the PNG stays
    small."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from harness.browser import launch

    shots = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        for figure in figures:
            page.set_content(
                f"<body style='margin:0'>{base64.b64decode(figure).decode().split('?>', 1)[-1]}"
            )
            shots.append(page.locator("svg").first.screenshot())
        browser.close()
    images = [Image.open(io.BytesIO(shot)).convert("RGB") for shot in shots]
    width, height = max(i.width for i in images), max(i.height for i in images)
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * width, rows * height), "white")
    for n, image in enumerate(images):
        sheet.paste(image, ((n % columns) * width, (n // columns) * height))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=64).save(out, optimize=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
