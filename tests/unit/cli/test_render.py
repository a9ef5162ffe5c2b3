"""What the CLI prints for numbers and for a failed run."""

from __future__ import annotations

import pytest

from flywheel.cli import render
from flywheel.config import Settings
from flywheel.runs import LocalRun


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
    )
    render.run_result(Settings(), result)
    printed = capsys.readouterr().out
    assert "FAILED at step validate after 2.5s: batch 2026-01-04.csv is not readable CSV" in printed
    assert "# Data validation: FAILED" in printed
    assert "No model version was written; the production alias is unchanged." in printed
