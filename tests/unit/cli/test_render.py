"""What the CLI prints for numbers, for a failed run, and for what each step used."""

from __future__ import annotations

import pytest

from flywheel.cli import render
from flywheel.config import Settings
from flywheel.runs import LocalRun, StepUsage
from flywheel.usage import Usage
from tests.unit.cli.conftest import table_rows


@pytest.mark.parametrize(
    ("value", "shown"), [(0.81234, "0.8123"), (None, "–"), (float("nan"), "–"), (1, "1.0000")]
)
def test_fmt(value: float | None, shown: str) -> None:
    assert render.fmt(value) == shown


def test_a_failed_run_shows_the_step_the_reason_and_that_nothing_changed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = LocalRun(
        run_id="run-1",
        succeeded=False,
        seconds=2.5,
        error="batch 2026-01-04.csv is not readable CSV: No columns to parse from file",
        failed_task="validate",
        failure_report="# Data validation: FAILED",
        steps=[
            StepUsage("resolve", "ran", Usage(seconds=0.25, cpu_seconds=0.1, peak_rss_mib=38.4)),
            StepUsage("ingest", "ran", Usage(seconds=1.5, cpu_seconds=0.75, peak_rss_mib=52.6)),
            StepUsage("validate", "failed"),
            StepUsage("train", "not run"),
        ],
    )
    render.run_result(Settings(), result)
    printed = capsys.readouterr().out
    assert "FAILED at step validate after 2.5s: batch 2026-01-04.csv is not readable CSV" in printed
    assert "# Data validation: FAILED" in printed
    assert "No model version was written; the production alias is unchanged." in printed
    # and it ends with what each step used, in the order they run, with the totals
    assert table_rows(printed) == [
        ["step", "seconds", "peak memory (MiB)", "CPU seconds"],
        ["resolve", "0.25", "38", "0.10"],
        ["ingest", "1.50", "53", "0.75"],
        ["validate", "failed", "–", "–"],
        ["train", "not run", "–", "–"],
        ["all that ran", "1.75", "53", "0.85"],
    ]


def test_a_step_table_without_any_step_that_ran_has_no_totals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    render.out.print(render.steps_table([StepUsage("resolve", "no record")]))
    assert table_rows(capsys.readouterr().out) == [
        ["step", "seconds", "peak memory (MiB)", "CPU seconds"],
        ["resolve", "no record", "–", "–"],
    ]
