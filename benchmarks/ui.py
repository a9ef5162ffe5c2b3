"""`make bench-ui`: how long the web UI takes to render each page over a large store.

The store (`benchmarks/ui_store.py`, cached under ~/.cache/flywheel/bench-ui): 1,000
versions, 1,000 rollouts with their records, 10,000 window records, 500 trigger decisions and
500 run records, cloned from a real simulation. Each store is measured in turn: a local
directory, and the same history in S3 (SeaweedFS on loopback, started over a copy of its data
folder kept after the first upload). For each, `flywheel ui` is started afresh and every page
is asked for once (cold: the first request of each page since the server started, in the
order of PAGES), then `--repeats` times more in rounds (warm).

Each request is timed by the client (loopback, one keep-alive connection) and by the server
(its `Server-Timing: render;dur=<ms>` header: reading the store and rendering the page); the
goals judge the server's figure, the client's when the server sends none. The goals, per page
and store: warm p95 at most 300 ms, cold at most 3 s, on a 2-core machine, and every answer a
200. The run ends with one JSON line of the figures; everything also goes to
build/bench/ui.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.ui_store import CACHE, Made, Sizes, cached, environment, flywheel, upload

REPO = Path(__file__).resolve().parents[1]
STORES = ("local", "s3")
GOAL_WARM_MS = 300.0
GOAL_COLD_MS = 3000.0
BUCKET_URI = "s3://bench-ui/flywheel"
_DUR = re.compile(r"(?P<name>[\w-]+)(?:;[^,]*?dur=(?P<dur>[\d.]+))?")


def pages(made: Made) -> dict[str, str]:
    """Each page measured, by name: the newest version, rollout and runs, production's
    monitoring and each of its plots, and list pages at their first page and at page 10."""
    newest, before = made.versions[-1], made.versions[-2]
    first_run, second_run = made.runs[-2], made.runs[-1]
    return {
        "/versions": "/versions",
        "/versions?page=10": "/versions?page=10",
        "/versions/<v>": f"/versions/{newest}",
        "/diff": f"/diff?a={before}&b={newest}",
        "/aliases": "/aliases",
        "/aliases?page=10": "/aliases?page=10",
        "/rollouts": "/rollouts",
        "/rollouts?page=10": "/rollouts?page=10",
        "/rollouts/<id>": f"/rollouts/{made.rollouts[-1]}",
        "/triggers": "/triggers",
        "/triggers?page=10": "/triggers?page=10",
        "/monitoring": f"/monitoring?version={made.production}&window=day",
        "/monitoring?page=2": f"/monitoring?version={made.production}&window=day&page=2",
        # Each plot the monitoring page's images ask for, drawn on request.
        **{
            f"/monitoring/plots/{n}.svg": (
                f"/monitoring/plots/{n}.svg?version={made.production}&window=day&page=1"
            )
            for n in range(5)
        },
        "/runs": "/runs",
        "/runs?page=10": "/runs?page=10",
        "/runs/compare": f"/runs/compare?a={first_run}&b={second_run}",
    }


# --- measuring ------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """One request: its status, the client's time and the server's (None: no header)."""

    status: int
    client_ms: float
    server_ms: float | None

    @property
    def ms(self) -> float:
        """The figure the goals judge: the server's, else the client's."""
        return self.server_ms if self.server_ms is not None else self.client_ms


def server_timing(header: str | None) -> float | None:
    """The render duration of a Server-Timing header (`render;dur=12.5`), else the sum of its
    durations; None when it has none."""
    if not header:
        return None
    durations: dict[str, float] = {}
    for part in header.split(","):
        match = _DUR.match(part.strip())
        if match and match["dur"] is not None:
            durations[match["name"]] = float(match["dur"])
    if not durations:
        return None
    return durations.get("render", sum(durations.values()))


class Client:
    """A keep-alive HTTP client of one server on loopback."""

    def __init__(self, port: int, timeout: float = 120.0) -> None:
        self.port = port
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None

    def get(self, path: str) -> Timed:
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
            started = time.perf_counter()
            try:
                self.connection.request("GET", path)
                response = self.connection.getresponse()
                response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
                continue
            took = (time.perf_counter() - started) * 1000
            return Timed(response.status, took, server_timing(response.getheader("Server-Timing")))
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def measure(client: Client, paths: dict[str, str], repeats: int) -> dict[str, list[Timed]]:
    """Each page once in order (the first, cold), then `repeats` rounds of every page."""
    timed: dict[str, list[Timed]] = {name: [client.get(path)] for name, path in paths.items()}
    for _ in range(repeats):
        for name, path in paths.items():
            timed[name].append(client.get(path))
    return timed


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile, interpolated between the nearest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = share * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def figures(timed: list[Timed]) -> dict[str, Any]:
    """One page's figures: cold, warm median and p95 (the goals' figure and the client's),
    and the answers that were not a 200."""
    cold, warm = timed[0], timed[1:] or timed[:1]
    return {
        "cold_ms": round(cold.ms, 1),
        "warm_p50_ms": round(statistics.median(t.ms for t in warm), 1),
        "warm_p95_ms": round(percentile([t.ms for t in warm], 0.95), 1),
        "cold_client_ms": round(cold.client_ms, 1),
        "warm_client_p50_ms": round(statistics.median(t.client_ms for t in warm), 1),
        "warm_client_p95_ms": round(percentile([t.client_ms for t in warm], 0.95), 1),
        "server_timed": all(t.server_ms is not None for t in timed),
        "errors": sum(t.status != 200 for t in timed),
        "statuses": sorted({t.status for t in timed}),
        "requests": len(timed),
    }


def met(page: dict[str, Any]) -> bool:
    """Whether one page of one store meets the goals."""
    return bool(
        page["errors"] == 0
        and page["warm_p95_ms"] <= GOAL_WARM_MS
        and page["cold_ms"] <= GOAL_COLD_MS
    )


def goals(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, tuple[bool, str]]:
    """Per store: every page warm and cold within the goals, with the pages that miss."""
    checked: dict[str, tuple[bool, str]] = {}
    for store, by_page in results.items():
        for what, key, limit in (
            ("warm p95", "warm_p95_ms", GOAL_WARM_MS),
            ("cold", "cold_ms", GOAL_COLD_MS),
        ):
            slow = {name: page[key] for name, page in by_page.items() if page[key] > limit}
            worst = max(by_page.values(), key=lambda p: p[key])[key] if by_page else 0.0
            detail = (
                "; ".join(f"{name} {ms:,.0f} ms" for name, ms in slow.items())
                if slow
                else f"slowest {worst:,.0f} ms"
            )
            checked[f"{store}: every page {what} <= {limit:,.0f} ms"] = (not slow, detail)
        failed = {name: page["statuses"] for name, page in by_page.items() if page["errors"]}
        checked[f"{store}: every answer a 200"] = (
            not failed,
            "; ".join(f"{name} answered {codes}" for name, codes in failed.items()) or "all 200",
        )
    return checked


def table(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One row per page: each store's cold, warm median and p95 (ms), and whether it meets
    the goals."""
    stores = list(results)
    names = list(dict.fromkeys(n for by_page in results.values() for n in by_page))
    head = f"{'page':22}" + "".join(
        f" {store + ' cold':>11} {'p50':>7} {'p95':>7} {'goal':>6}" for store in stores
    )
    lines = [head, "-" * len(head)]
    for name in names:
        row = f"{name:22}"
        for store in stores:
            page = results[store].get(name)
            if page is None:
                row += f" {'-':>11} {'-':>7} {'-':>7} {'-':>6}"
                continue
            row += (
                f" {page['cold_ms']:11,.0f} {page['warm_p50_ms']:7,.0f} "
                f"{page['warm_p95_ms']:7,.0f} {'met' if met(page) else 'MISSED':>6}"
            )
        lines.append(row)
    return lines


def report(checked: dict[str, tuple[bool, str]]) -> list[str]:
    """Each goal, met or MISSED, with its figure."""
    return [
        f"{'met' if ok else 'MISSED':>8}  {name}: {detail}"
        for name, (ok, detail) in checked.items()
    ]


def last_line(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The JSON line: each store's and page's cold, warm median and p95, and whether it met
    the goals."""
    out: dict[str, Any] = {}
    for store, by_page in results.items():
        for name, page in by_page.items():
            for key in ("cold_ms", "warm_p50_ms", "warm_p95_ms"):
                out[f"{store} {name} {key}"] = page[key]
            out[f"{store} {name} met"] = met(page)
    out["met"] = all(out[k] for k in out if k.endswith(" met"))
    return out


# --- the servers --------------------------------------------------------------------------


@contextmanager
def ui_server(env: dict[str, str], log: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`flywheel ui` on a free loopback port over the store `env` configures, until the block
    ends."""
    from harness.servers import free_ports, stop, wait_until

    (port,) = free_ports(1)
    command = flywheel("ui", "--host", "127.0.0.1", "--port", str(port))
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**environment(), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def healthy() -> bool:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/healthz")
                return connection.getresponse().status == 200
            finally:
                connection.close()

        wait_until(healthy, 60, "flywheel ui", process, log)
        yield port, process
    finally:
        stop(process)


def rss_mb(pid: int) -> float | None:
    """The resident memory of a process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def s3_data(made: Made, log: Callable[[str], None]) -> Path:
    """SeaweedFS's data folder holding `made` at BUCKET_URI: uploaded once (a couple of
    minutes: SeaweedFS takes a few hundred small writes a second here) and kept beside it."""
    from flywheel.storage import S3Store
    from harness.servers import seaweedfs, stop

    kept = made.root.parent / "seaweedfs"
    if kept.exists():
        return kept
    with seaweedfs() as server:
        store = S3Store(
            BUCKET_URI,
            endpoint=server.endpoint,
            access_key=server.access_key,
            secret_key=server.secret_key,
            secure=False,
        )
        store.ensure_bucket()
        log(f"uploading {made.objects:,} objects to SeaweedFS")
        started = time.monotonic()
        upload(made.root, store, progress=lambda n: log(f"  {n:,} uploaded"))
        log(f"uploaded in {time.monotonic() - started:.0f} s")
        stop(server.process)  # a clean stop: its data folder is whole
        work = Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=made.root.parent))
        try:
            shutil.copytree(server.data_dir / "data", work / "data")
            (work / "data").rename(kept)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return kept


@contextmanager
def store_env(
    store: str, sizes: Sizes, cache: Path, fresh: bool, log: Callable[[str], None]
) -> Iterator[tuple[Made, dict[str, str]]]:
    """The generated store of `store` (local or s3) and the environment pointing at it."""
    if store == "local":
        made = cached(sizes, cache=cache, fresh=fresh)
        yield made, {"FLYWHEEL_STORAGE__URI": str(made.root)}
        return
    from harness.servers import seaweedfs

    made = cached(sizes, BUCKET_URI, cache=cache, fresh=fresh)
    with seaweedfs(data=s3_data(made, log)) as server:
        yield (
            made,
            {
                "FLYWHEEL_STORAGE__URI": BUCKET_URI,
                "FLYWHEEL_STORAGE__ENDPOINT": server.endpoint,
                "FLYWHEEL_STORAGE__SECURE": "false",
                "AWS_ACCESS_KEY_ID": server.access_key,
                "AWS_SECRET_ACCESS_KEY": server.secret_key,
            },
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default=",".join(STORES), help="local, s3 or both")
    parser.add_argument("--repeats", type=int, default=20, help="warm requests of each page")
    parser.add_argument("--versions", type=int, default=Sizes.versions)
    parser.add_argument("--rollouts", type=int, default=Sizes.rollouts)
    parser.add_argument("--windows", type=int, default=Sizes.windows)
    parser.add_argument("--decisions", type=int, default=Sizes.decisions)
    parser.add_argument("--runs", type=int, default=Sizes.runs)
    parser.add_argument("--fresh", action="store_true", help="generate the store again")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where stores are kept")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if unknown := set(stores) - set(STORES):
        parser.error(f"unknown stores {sorted(unknown)}: choose from {', '.join(STORES)}")
    sizes = Sizes(args.versions, args.rollouts, args.windows, args.decisions, args.runs)

    def log(message: str) -> None:
        print(f">> {message}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    memory: dict[str, float | None] = {}
    for store in stores:
        with store_env(store, sizes, args.cache, args.fresh, log) as (made, env):
            log(f"{store}: {made.objects:,} objects; starting flywheel ui")
            with ui_server(env, args.out / f"ui-{store}.log") as (port, process):
                client = Client(port)
                try:
                    timed = measure(client, pages(made), args.repeats)
                finally:
                    client.close()
                memory[store] = rss_mb(process.pid)
        results[store] = {name: figures(t) for name, t in timed.items()}
        if not all(page["server_timed"] for page in results[store].values()):
            log(f"{store}: some answers had no Server-Timing header: judged on the client's time")

    print(f"\nms per page at the server (warm: {args.repeats} requests of each page)\n")
    for line in table(results):
        print(line)
    print(
        "\nserver memory after the run: "
        + ", ".join(f"{store} {mb:,.0f} MiB" for store, mb in memory.items() if mb is not None)
    )
    checked = goals(results)
    print()
    for line in report(checked):
        print(line)
    (args.out / "ui.json").write_text(
        json.dumps({"sizes": sizes.key(), "results": results, "rss_mb": memory}, indent=2)
    )
    print(f"\nwrote {args.out / 'ui.json'}")
    print(json.dumps(last_line(results)))
    return 0 if all(ok for ok, _ in checked.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
