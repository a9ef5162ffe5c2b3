"""What the CLI prints for numbers, for a failed run, and for what each step used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flywheel.cli import render
from flywheel.config import Settings
from flywheel.runs import LocalRun, StepState, StepUsage
from flywheel.usage import Usage
from harness.cli import table_rows


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
        log=Path("/root/flywheel-training-1/run.log"),
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
    assert "Log: /root/flywheel-training-1/run.log" in printed
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


def test_outside_a_terminal_each_step_is_one_plain_line_when_it_ends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given the states of a run that failed at validate, as run_local reports them
    log = Path("/root/flywheel-training-1/run.log")
    states = [
        StepState("resolve", "running"),
        StepState("resolve", "done", 1.25),
        StepState("ingest", "cached"),
        StepState("validate", "running"),
        StepState("validate", "failed", 2.0, "KeyError: 'income' [x]", log),
        StepState("infra-validate", "skipped"),
        StepState("train", "not run"),
    ]
    # when shown outside a terminal (as under pytest)
    with render.step_progress() as show:
        for state in states:
            show(state)
    # then a step that ended is one line with its state, and a failure says why and where
    assert capsys.readouterr().out.splitlines() == [
        "resolve         done in 1.2 s",
        "ingest          cached",
        "validate        failed after 2.0 s: KeyError: 'income' [x]",
        f"                log: {log}",
        "infra-validate  skipped",
        "train           not run",
    ]


def test_on_a_terminal_the_lines_are_live_and_stay_once_the_run_ends(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a terminal (as rich sees one)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    # when a step runs and ends, and the next starts and is cached
    with render.step_progress() as show:
        show(StepState("resolve", "running"))
        show(StepState("resolve", "done", 0.5))
        show(StepState("ingest", "cached"))
    # then the display redrew its lines in place and left each step's last state
    printed = capsys.readouterr().out
    assert "\x1b[2K" in printed and "running" in printed
    last = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", printed.rsplit("\x1b[2K", 1)[1])
    assert "resolve         done in 0.5 s" in last and "ingest          cached" in last
    assert "running" not in last
