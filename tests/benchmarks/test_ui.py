"""`make bench-ui`'s figures, goals and table on made-up timings, and its store generator on a
real seed at a tiny size: what it writes is read back by the registry, the rollout state, the
monitoring records and the ledger, and every page of a real `flywheel ui` over it answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import ui as bench
from benchmarks import ui_store
from flywheel.monitoring.records import latest_records
from flywheel.registry import CANDIDATE, PRODUCTION, Registry
from flywheel.rollout.state import RolloutState
from flywheel.storage import LocalStore
from flywheel.triggers.ledger import Ledger

TINY = ui_store.Sizes(versions=12, rollouts=12, windows=300, decisions=5, runs=6)


def timed(cold: float, warm: float, *, status: int = 200, server: bool = True) -> list[bench.Timed]:
    """A cold request of `cold` ms and 20 warm ones of `warm` ms (the client 1 ms slower)."""
    ms = [cold] + [warm] * 20
    return [bench.Timed(status, m + 1, m if server else None) for m in ms]


def test_the_server_timing_header_gives_the_render_time_else_the_sum_of_its_durations() -> None:
    assert bench.server_timing("render;dur=12.5") == 12.5
    assert bench.server_timing("db;dur=3, render;desc=page;dur=7.25") == 7.25
    assert bench.server_timing("db;dur=3, cache;dur=2") == 5.0
    assert bench.server_timing("miss") is None
    assert bench.server_timing(None) is None


def test_figures_judge_the_servers_time_and_fall_back_to_the_clients() -> None:
    # given a page the server timed, and one it did not
    by_server = bench.figures(timed(900.0, 40.0))
    by_client = bench.figures(timed(900.0, 40.0, server=False))
    # then the server's figure is judged where there is one, the client's otherwise
    assert (by_server["cold_ms"], by_server["warm_p50_ms"], by_server["warm_p95_ms"]) == (
        900.0,
        40.0,
        40.0,
    )
    assert by_server["server_timed"] and by_server["warm_client_p50_ms"] == 41.0
    assert (by_client["cold_ms"], by_client["warm_p95_ms"]) == (901.0, 41.0)
    assert not by_client["server_timed"]


def test_p95_interpolates_between_the_nearest_ranks() -> None:
    assert bench.percentile([float(v) for v in range(1, 21)], 0.95) == pytest.approx(19.05)
    assert bench.percentile([5.0], 0.95) == 5.0


def test_each_goal_is_missed_on_its_own_figure_and_names_the_page() -> None:
    # given a fast store, and one with a slow warm page, a slow cold page and an error
    results = {
        "local": {"/versions": bench.figures(timed(800.0, 20.0))},
        "s3": {
            "/versions": bench.figures(timed(800.0, 450.0)),
            "/runs": bench.figures(timed(4000.0, 20.0)),
            "/diff": bench.figures(timed(100.0, 20.0, status=503)),
        },
    }
    # when
    checked = {name: ok for name, (ok, _) in bench.goals(results).items()}
    details = {name: detail for name, (_, detail) in bench.goals(results).items()}
    # then
    assert checked == {
        "local: every page warm p95 <= 300 ms": True,
        "local: every page cold <= 3,000 ms": True,
        "local: every answer a 200": True,
        "s3: every page warm p95 <= 300 ms": False,
        "s3: every page cold <= 3,000 ms": False,
        "s3: every answer a 200": False,
    }
    assert details["s3: every page warm p95 <= 300 ms"] == "/versions 450 ms"
    assert details["s3: every page cold <= 3,000 ms"] == "/runs 4,000 ms"
    assert details["s3: every answer a 200"] == "/diff answered [503]"
    line = bench.last_line(results)
    assert line["local /versions met"] and not line["s3 /runs met"] and not line["met"]
    table = "\n".join(bench.table(results))
    assert "MISSED" in table and "/diff" in table


def test_the_history_is_a_version_a_day_and_every_seventh_canary_is_rolled_back() -> None:
    history = ui_store.plan(12)
    assert [v.fate for v in history][:4] == ["direct", "promoted", "rolled_back", "promoted"]
    assert history[3].stable == "v2"  # v3 was rolled back: v2 stayed in production
    assert (
        history[-1].created.date()
        == (ui_store.END - ui_store.timedelta(days=ui_store.SERVED_DAYS)).date()
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> ui_store.Made:
    """A tiny generated store, from a seed simulated for it (about a minute)."""
    return ui_store.cached(TINY, cache=tmp_path_factory.mktemp("bench-ui"))


def test_the_generated_store_is_read_back_by_the_code_that_reads_each_record(
    made: ui_store.Made,
) -> None:
    store = LocalStore(made.root)
    registry = Registry(store, made.model)
    # every version complete, every file matching its manifest's digest
    versions = registry.versions()
    assert [m.version for m in versions] == made.versions == [f"v{n}" for n in range(1, 13)]
    for manifest in versions:
        for name in manifest.files:
            registry.read(manifest.version, name)
    # the aliases: candidate on every version, production on every one not rolled back
    assert len(registry.history(CANDIDATE)) == 12
    assert registry.resolve(PRODUCTION) == made.production == "v12"
    assert [s.version for s in registry.history(PRODUCTION)][:3] == ["v1", "v2", "v4"]
    # each rollout's states in order, and its records under the canary
    states = [RolloutState.model_validate_json(store.read(k)) for k in store.list("rollouts/")]
    assert [s.revision for s in states] == list(range(1, len(states) + 1))
    ended = {s.rollout_id: s.phase for s in states if s.done}
    assert list(ended) == made.rollouts and ended[made.rollouts[2]] == "rolled_back"
    records = registry.records("v3")
    assert records[-1]["kind"] == "rollout-rolled-back" and records[-1]["stable"] == "v2"
    assert {r["rollout_id"] for r in records} == {made.rollouts[2]}
    # the window records: production's newest days, as monitoring reads them
    windows = latest_records(store, made.model, made.production, "day")
    assert len(windows) == ui_store.SERVED_DAYS
    assert len(store.list("monitoring/")) == TINY.windows
    # the ledger
    ledger = Ledger(store, made.model)
    assert len(ledger.decisions()) == TINY.decisions
    runs = ledger.runs()
    assert len(runs) == TINY.runs
    assert [r.started.run_id for r in runs if r.finished and r.finished.outcome == "succeeded"] == (
        made.runs
    )


def test_every_page_of_a_real_ui_over_the_store_answers_timed(
    made: ui_store.Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the tiny store, kept where the benchmark looks for it
    cache = made.root.parents[1]
    sizes = [f"--{k}={v}" for k, v in vars(TINY).items()]
    # when the benchmark runs on it, a request of each page after the cold one
    bench.main(["--stores=local", f"--cache={cache}", "--repeats=1", f"--out={tmp_path}", *sizes])
    # then every page answered 200 with a Server-Timing header
    results = json.loads((tmp_path / "ui.json").read_text())["results"]["local"]
    assert set(results) == set(bench.pages(made))
    assert all(page["errors"] == 0 and page["server_timed"] for page in results.values())
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["local /versions/<v> cold_ms"] > 0
