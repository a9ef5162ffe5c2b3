"""`make soak`: a steady open-loop load through the gateway, with the prediction log on.

200 requests a second (`--rate`) for 10 minutes (`--minutes`) reach one registered
version through the local gateway, as `flywheel serve` deploys it. The checks:

- kept up: the server answered at least 95% of the rate sent (else the run measured a queue);
- no errors: every request is answered 200;
- flat memory: the resident memory of the server and the gateway grows by at most 10%
  from the end of the warm-up (the first fifth of the run, at most a minute) to the end;
- a complete prediction log: records in the store plus records the server counted as
  dropped (its `flywheel_log_dropped` gauge, summed over workers) equals requests served.

Exits 1 naming each failed check; the last line is one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.serving import REPO, models, open_loop, project, rss_mb, seldon_target

GOAL_MEMORY_GROWTH = 0.10
# A soak the server cannot keep up with tests its queue, not 200 requests a second.
KEPT_UP = 0.95
_GAUGE = re.compile(r"^(?P<name>\w+)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")


def gauge_sum(exposition: str, name: str) -> float:
    """A per-worker gauge summed over workers (the newest value of each worker's label sets)."""
    per_worker: dict[str, float] = {}
    for line in exposition.splitlines():
        match = _GAUGE.match(line)
        if match is None or match["name"] != name:
            continue
        worker = re.search(r'worker_id="([^"]*)"', match["labels"])
        key = worker[1] if worker else ""
        per_worker[key] = max(per_worker.get(key, 0.0), float(match["value"]))
    return sum(per_worker.values())


def memory_growth(samples: list[tuple[float, float]], warmup: float) -> float | None:
    """Growth of resident memory from the end of the warm-up to the end of the run, as a share.

    Each end is the mean of up to three samples, so one sample caught mid-collection
    does not decide it; None when fewer than two samples follow the warm-up.
    """
    after = [mb for at, mb in samples if at >= warmup]
    if len(after) < 2:
        return None
    edge = min(3, len(after) // 2)
    first, last = after[:edge], after[-edge:]
    base = sum(first) / len(first)
    return (sum(last) / len(last)) / base - 1 if base > 0 else None


def checks(figures: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """The soak's checks: (passed, what was measured)."""
    growth = figures["memory_growth"]
    accounted = figures["log_written"] + figures["log_dropped"]
    return {
        f"kept up with {figures['offered_rps']:g} requests/s": (
            figures["rps"] >= KEPT_UP * figures["offered_rps"],
            f"answered {figures['rps']:.1f}/s, p99 {figures['p99_ms']:.1f} ms",
        ),
        "no errors": (
            figures["errors"] == 0,
            f"{figures['errors']:.0f} of {figures['requests']:.0f} requests failed",
        ),
        f"memory grows <= {GOAL_MEMORY_GROWTH:.0%} after warm-up": (
            growth is not None and growth <= GOAL_MEMORY_GROWTH,
            "too few samples" if growth is None else f"{growth:+.1%}",
        ),
        "the prediction log is complete": (
            accounted == figures["served"],
            f"{figures['log_written']:.0f} written + {figures['log_dropped']:.0f} dropped "
            f"= {accounted:.0f}, {figures['served']:.0f} served",
        ),
    }


def _count_records(store: Path, model: str) -> int:
    """Records (requests) in the Parquet logs under predictions/<model>/ in a local store:
    a request's first row (`_row` 0) stands for it."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    return sum(
        int(pc.sum(pc.equal(pq.read_table(path, columns=["_row"])["_row"], 0)).as_py() or 0)
        for path in (store / "predictions" / model).rglob("*.parquet")
    )


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="requests a second")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="memory sampling period")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    parser.add_argument("--project", type=Path, help="a registered project to reuse")
    args = parser.parse_args(argv)

    from flywheel.config import load_settings
    from flywheel.errors import FlywheelError
    from flywheel.rollout.local import LocalDriver

    work = project(args.project, "flywheel-soak-")
    registered = models(work, ["binary"])["binary"].settings
    store = Path(registered.storage.uri)
    settings = load_settings(
        work / "binary" / "flywheel.yaml",
        env={},
        overrides=[f"storage.uri={store}", "serving.log_predictions=true"],
    )
    seconds = args.minutes * 60
    warmup = min(60.0, seconds / 5)
    samples: list[tuple[float, float]] = []
    before = _count_records(store, settings.model_name)
    stop = threading.Event()
    failed = False
    try:
        with LocalDriver(settings, workdir=work / "serve") as driver:
            driver.serve("v1")
            backend = driver.backends["v1"]
            assert driver.gateway is not None and backend.metrics_port is not None
            pids = [backend.process.pid, driver.gateway.pid]
            target = seldon_target(driver.gateway_url.removeprefix("http://"))

            def sample() -> None:
                started = time.monotonic()
                while not stop.wait(args.sample_seconds):
                    samples.append((time.monotonic() - started, sum(rss_mb(p) for p in pids)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            print(
                f">> {args.rate:g} requests/s for {args.minutes:g} min through the gateway",
                flush=True,
            )
            load = open_loop(target, args.rate, seconds)
            stop.set()
            sampler.join()
            # The gauges are reported with a request at most once a second per worker: a few
            # paced requests (served too) bring each worker's gauges up to date.
            time.sleep(3)
            probes = open_loop(target, 10, 2, connections=2)
            time.sleep(5)
            metrics = _scrape(f"http://127.0.0.1:{backend.metrics_port}/metrics")
        # A worker writes its log a file a minute, and what it holds when it stops: count the
        # log once the servers have stopped.
        written = _count_records(store, settings.model_name) - before
    except FlywheelError as error:  # no serving virtualenv, a server that would not start
        failed = True
        print(f"error: {error} (servers' logs kept in {work / 'serve'})", file=sys.stderr)
        return 1
    finally:
        stop.set()
        if args.project is None and not failed:
            shutil.rmtree(work, ignore_errors=True)

    served = load["requests"] - load["errors"] + probes["requests"] - probes["errors"]
    figures: dict[str, Any] = {
        "requests": load["requests"] + probes["requests"],
        "errors": load["errors"] + probes["errors"],
        "served": served,
        "rps": load["rps"],
        "offered_rps": args.rate,
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "rss_mb_start": next((mb for at, mb in samples if at >= warmup), None),
        "rss_mb_end": samples[-1][1] if samples else None,
        "memory_growth": memory_growth(samples, warmup),
        "log_written": written,
        "log_dropped": gauge_sum(metrics, "flywheel_log_dropped"),
    }
    print(
        f"\n{figures['requests']:.0f} requests at {figures['rps']:.1f}/s, p50 {figures['p50_ms']:.2f} ms, "
        f"p99 {figures['p99_ms']:.2f} ms; RSS {figures['rss_mb_start'] or 0:.0f} -> "
        f"{figures['rss_mb_end'] or 0:.0f} MB "
        f"(server and gateway, {len(samples)} samples, warm-up {warmup:.0f} s)\n"
    )
    checked = checks(figures)
    for name, (ok, detail) in checked.items():
        print(f"{'passed' if ok else 'FAILED':>8}  {name}: {detail}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(
        json.dumps({"figures": figures, "samples": samples}, indent=2)
    )
    print(json.dumps(figures))
    failed = [name for name, (ok, _) in checked.items() if not ok]
    if failed:
        print(f"soak failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
