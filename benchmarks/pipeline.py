"""`make bench-pipeline`: the cost of running as a KFP pipeline, caching, and scaling.

1. The local pipeline (kfp.local, one process per step, as on a cluster) against
   the same library functions called in one process, on the same data.
2. A second identical run with KFP local caching on, against the first.
3. validate plus train at 10k, 100k and 1M rows: wall time and peak memory.

Each measurement runs in a fresh Python process so that import costs count the
same way on both sides. Results print as tables and go to .flywheel/bench/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

IN_PROCESS = r"""
import json, resource, sys, time
from pathlib import Path
started = time.monotonic()
from flywheel import runs
from flywheel.config import load_settings
settings = load_settings(sys.argv[1], env={}, overrides=sys.argv[3:])
steps = json.loads(Path(sys.argv[1]).with_suffix(".steps").read_text())
run = runs.run_in_process(settings, Path(sys.argv[2]), run_id="bench",
                          last_step="register" if steps == "all" else "train")
print(json.dumps({"seconds": time.monotonic() - started, "steps": run.seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _project(root: Path, rows_per_day: int, days: int = 14) -> Path:
    """A project folder with its own config and `days` batches of stable data."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "flywheel.yaml"
    text = (REPO / "flywheel.yaml").read_text()
    text = text.replace("rows_per_day: 2000", f"rows_per_day: {rows_per_day}")
    text = text.replace("source: data/batches", f"source: {root / 'batches'}")
    text = text.replace("uri: .flywheel/store", f"uri: {root / 'store'}")
    text = text.replace("root: .flywheel/pipeline-root", f"root: {root / 'pipeline-root'}")
    config.write_text(text)
    _cli(root, "data", "generate", "--days", str(days))
    return root


def _cli(project: Path, *args: str) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [PYTHON, "-m", "flywheel.cli", "-c", str(project / "flywheel.yaml"), *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"flywheel {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return time.monotonic() - started


def _in_process(project: Path, steps: str) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=project))
    (project / "flywheel.steps").write_text(json.dumps(steps))
    result = subprocess.run(
        [PYTHON, "-c", IN_PROCESS, str(project / "flywheel.yaml"), str(work)],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _reset(project: Path) -> None:
    for name in ("store", "pipeline-root"):
        shutil.rmtree(project / name, ignore_errors=True)


def overhead(base: Path, rows_per_day: int) -> dict[str, float]:
    """Pipeline against one process, both from an empty registry, same data."""
    project = _project(base / f"overhead-{rows_per_day}", rows_per_day)
    in_process = float(_in_process(project, "all")["seconds"])  # type: ignore[arg-type]
    _reset(project)
    pipeline = _cli(project, "run", "--no-cache")
    return {
        "rows": rows_per_day * 14,
        "in_process_s": in_process,
        "pipeline_s": pipeline,
        "ratio": pipeline / in_process,
    }


def caching(base: Path) -> dict[str, float]:
    """A cold-cache run and an identical second run, with production already set."""
    project = _project(base / "caching", 2000)
    _cli(project, "run", "--no-cache")  # production v1; the runs below re-derive the same model
    first = _cli(project, "run")
    second = _cli(project, "run")
    return {"first_s": first, "second_s": second, "ratio": second / first}


def scaling(base: Path, sizes: list[int]) -> list[dict[str, float]]:
    """validate + train at each size, in a fresh process each."""
    rows = []
    for total in sizes:
        project = _project(base / f"scale-{total}", total // 14)
        measured = _in_process(project, "validate+train")
        steps = measured["steps"]
        rows.append(
            {
                "rows": total,
                "validate_s": steps["validate"],  # type: ignore[index]
                "train_s": steps["train"],  # type: ignore[index]
                "peak_rss_mb": measured["peak_rss_mb"],  # type: ignore[dict-item]
            }
        )
        shutil.rmtree(project, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="row counts for the scaling table"
    )
    parser.add_argument("--out", type=Path, default=REPO / ".flywheel" / "bench" / "pipeline.json")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
    try:
        print("1/3 pipeline against one process ...", flush=True)
        over = [overhead(base, 2000), overhead(base, 20000)]
        print("2/3 caching ...", flush=True)
        cache = caching(base)
        print("3/3 scaling ...", flush=True)
        scale = scaling(base, [int(s) for s in args.sizes.split(",")])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("\nPipeline (kfp.local, a process per step) against the same functions in one process")
    print(f"{'rows':>9} {'one process':>12} {'pipeline':>9} {'ratio':>6}  (target <= 1.5)")
    for o in over:
        print(
            f"{o['rows']:>9,.0f} {o['in_process_s']:>11.1f}s {o['pipeline_s']:>8.1f}s {o['ratio']:>6.2f}"
        )
    print("\nSecond identical run with KFP local caching on (28k rows)")
    print(
        f"first {cache['first_s']:.1f}s, second {cache['second_s']:.1f}s, ratio {cache['ratio']:.2f} (target <= 0.20)"
    )
    print("\nvalidate + train, each size in a fresh process")
    print(f"{'rows':>9} {'validate':>9} {'train':>8} {'peak RSS':>9} {'time x':>7} {'mem x':>6}")
    for i, r in enumerate(scale):
        grow = (
            ""
            if i == 0
            else (
                f"{(r['validate_s'] + r['train_s']) / (scale[i - 1]['validate_s'] + scale[i - 1]['train_s']):>7.1f}"
                f" {r['peak_rss_mb'] / scale[i - 1]['peak_rss_mb']:>6.1f}"
            )
        )
        print(
            f"{r['rows']:>9,.0f} {r['validate_s']:>8.1f}s {r['train_s']:>7.1f}s {r['peak_rss_mb']:>7.0f}MB {grow}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"overhead": over, "caching": cache, "scaling": scale}, indent=2)
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
