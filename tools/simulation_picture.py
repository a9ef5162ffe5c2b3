"""Draw docs/simulation-report.png: `flywheel simulate`'s plots on a concept drift.

python -m tools.simulation_picture [--days 40] [--out docs/simulation-report.png]

In a scratch directory: `flywheel simulate`'s loop (flywheel.simulation.loop.simulate) on
`concept_drift` under the trigger policy, with flywheel.yaml as it ships but without the
hyper-parameter search (as the command plays it), the oracle (the generator's own
probabilities) beside it,
and the same plotting code as its HTML report (flywheel.simulation.report), six plots
tiled three to a row into one small PNG; the terminal summary is printed for docs/simulation.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tools.monitoring_picture import tile

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "simulation-report.png")
    args = parser.parse_args(argv)

    from rich.console import Console

    from flywheel.config import load_settings
    from flywheel.simulation import report, scores
    from flywheel.simulation.loop import simulate

    started = time.perf_counter()
    settings = load_settings(
        REPO / "flywheel.yaml", env={}, overrides=["model.search.enabled=false"]
    )
    with tempfile.TemporaryDirectory(prefix="flywheel-picture-") as scratch:
        root = Path(scratch)
        timeline = simulate(
            settings, root=root / "simulation", days=args.days, scenario="concept_drift"
        )
    best = timeline.oracle
    floor = scores.floor(settings)
    summary = scores.summary(timeline, best, floor)
    tile([png for _, png in report.figures(timeline, summary, best)], args.out, columns=3)
    Console(width=100).print(report.terminal_summary(summary))
    shown = args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out
    print(
        f"wrote {shown} ({args.out.stat().st_size // 1024} KB): {args.days} days simulated "
        f"in {timeline.wall_seconds:.0f} s, {time.perf_counter() - started:.0f} s in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
