"""The report of a simulated timeline: summary.json, the page and its plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from flywheel.simulation import report
from harness.timelines import day, fired, run, timeline


def test_write_puts_the_figures_in_summary_json_and_six_plots_in_the_page(tmp_path: Path) -> None:
    # given a concept drift caught on day 7, a rollout promoted, another rolled back,
    # and a blocked batch
    records = [
        day(i, 0.78 if i < 5 else 0.66, drift={"income": 0.01 * i, "age": 0.02}, drifted_share=0.1)
        for i in range(10)
    ]
    records[7] = day(
        7,
        0.66,
        decision=fired("performance drop: accuracy 0.66"),
        run=run("sim-7"),
        rollout={"version": "v2", "phase": "promoted", "reason": "ok"},
        production="v2",
        model_age_days=0.0,
    )
    records[8] = day(8, 0.77, production="v2", model_age_days=1.0, batch_blocked=True)
    records[9] = day(
        9,
        0.77,
        production="v2",
        model_age_days=2.0,
        run=run("sim-9", "v3"),
        rollout={"version": "v3", "phase": "rolled_back", "reason": "accuracy"},
    )
    oracle: list[float | None] = [0.8] * 10
    # when
    page = report.write(timeline(records), tmp_path / "out", oracle=oracle, floor=0.7)
    # then summary.json holds the figures
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["detection_delay_days"] == 2 and summary["retrains"] == 2
    assert summary["days_below_floor"] == 3  # days 5, 6 and 7 at 0.66
    assert summary["promotions"] == 1 and summary["rollbacks"] == 1
    assert summary["blocked_batches"] == 1 and summary["false_triggers"] == 0
    assert summary["mean_metric"] == pytest.approx((5 * 0.78 + 3 * 0.66 + 2 * 0.77) / 10, abs=1e-4)
    assert summary["oracle_mean_metric"] == 0.8
    assert summary["staleness_cost"]["from"] == "gap to the oracle"
    # and the page has every plot, the definition of the cost and one row per day
    text = page.read_text()
    assert page == tmp_path / "out" / "report.html"
    assert text.count("<img ") == 6
    assert "performance lost per day of model age" in text
    assert text.count("<tr>") == 1 + 10
    # and the terminal summary shows them
    console = Console(record=True, width=120)
    console.print(report.terminal_summary(summary))
    shown = console.export_text()
    assert "2 day(s)" in shown and "1 / 1" in shown and "0.8000" in shown
    assert "production trails it by 0.0580" in shown
