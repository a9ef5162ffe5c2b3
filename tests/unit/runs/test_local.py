"""Local runs: reading what kfp.local prints, and what each step of a run used.

Whole local runs are driven through `flywheel run` in tests/unit/cli/test_pipeline.py
and the integration tests.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from flywheel.config import STEPS
from flywheel.runs import local
from flywheel.usage import Usage

# What kfp.local prints for a step: the SubprocessRunner indents the step's output
# by four spaces, so the executor input's JSON closes with a line of "    }".
STEP_OUTPUT = """\
    I0101 12:00:00.000 executor_main.py:96] Got executor_input:
    {
        "inputs": {
            "parameterValues": {
                "config": "{}"
            }
        }
    }
    I0101 12:00:01.000 training step: fitting on 2400 rows
"""
TRACEBACK = """\
    before
    Traceback (most recent call last):
      File "/tmp/ephemeral_component.py", line 42, in ingest
        frame = batches.parse(name, raw)
                ^^^^^^^^^^^^^^^^^^^^^^^^
{error}
    after
"""
FLYWHEEL_ERROR = (
    "    flywheel.batches.BatchError: batch 2026-01-04.csv is not readable CSV: bad row"
)


@pytest.mark.parametrize(
    ("message", "task"),
    [
        (
            "Pipeline 'flywheel-training' finished with status \x1b[91mFAILURE\x1b[0m. "
            "Inner task failed: '\x1b[96mvalidate\x1b[0m'.",
            "validate",
        ),
        ("Inner task failed: 'infra-validate'.", "infra-validate"),
        ("Task 'train' finished with status FAILURE", None),
    ],
)
def test_the_failed_task_is_read_through_terminal_colours(message: str, task: str | None) -> None:
    assert local._failed_task(message) == task


def test_the_failure_report_comes_from_the_new_run_only(tmp_path: Path) -> None:
    # given an earlier run and the failed one, both with a validate report
    old = tmp_path / "old-run" / "validate"
    old.mkdir(parents=True)
    (old / "report").write_text("# old")
    before = set(tmp_path.glob("*"))
    new = tmp_path / "new-run" / "validate"
    new.mkdir(parents=True)
    (new / "report").write_text("# Data validation: FAILED")
    # then the new run's report is found, and nothing is invented without a task
    assert local._failure_report(tmp_path, before, "validate") == "# Data validation: FAILED"
    assert local._failure_report(tmp_path, before, "train") is None
    assert local._failure_report(tmp_path, before, None) is None
    assert local._failure_report(tmp_path / "absent", set(), "validate") is None


def test_the_executor_input_is_dropped_from_step_output_and_the_rest_kept() -> None:
    # given a target stream, and step output arriving in arbitrary pieces
    target = io.StringIO()
    log = local._StepLog(target)
    pieces = [STEP_OUTPUT[i : i + 7] for i in range(0, len(STEP_OUTPUT), 7)]
    # when written through the filter
    assert [log.write(p) for p in pieces] == [len(p) for p in pieces]
    log.write("    unterminated")
    log.flush()
    # then the JSON is gone, the line that introduced it says so, and the rest is kept
    assert target.getvalue() == (
        "    I0101 12:00:00.000 executor_main.py:96] (executor input omitted)\n"
        "    I0101 12:00:01.000 training step: fitting on 2400 rows\n"
        "    unterminated"
    )
    assert log.reason is None


def test_a_partial_line_waits_for_its_end() -> None:
    target = io.StringIO()
    log = local._StepLog(target)
    log.write("half a ")
    assert target.getvalue() == ""
    log.write("line\nnext")
    assert target.getvalue() == "half a line\n"


def test_a_flywheel_error_is_reduced_to_its_reason() -> None:
    # given the traceback of a step that failed on an expected error, as kfp.local prints it
    target = io.StringIO()
    log = local._StepLog(target)
    log.write(TRACEBACK.format(error=FLYWHEEL_ERROR))
    log.flush()
    # then one line says why, and the run keeps the reason for its summary
    assert target.getvalue() == (
        "    before\n    BatchError: batch 2026-01-04.csv is not readable CSV: bad row\n    after\n"
    )
    assert log.reason == "batch 2026-01-04.csv is not readable CSV: bad row"


def test_any_other_error_keeps_its_whole_traceback() -> None:
    # given a step that failed on a bug
    target = io.StringIO()
    log = local._StepLog(target)
    text = TRACEBACK.format(error="    KeyError: 'income'")
    log.write(text)
    log.flush()
    # then the traceback is shown whole and there is no one-line reason
    assert target.getvalue() == text
    assert log.reason is None


def test_a_traceback_cut_short_is_shown_on_flush() -> None:
    target = io.StringIO()
    log = local._StepLog(target)
    log.write('    Traceback (most recent call last):\n      File "x.py", line 1\n')
    assert target.getvalue() == ""
    log.flush()
    assert (
        target.getvalue() == '    Traceback (most recent call last):\n      File "x.py", line 1\n'
    )


def test_local_run_outputs_are_read_as_json(tmp_path: Path) -> None:
    (tmp_path / "window").mkdir()
    (tmp_path / "window" / "manifest.json").write_text('{"batches": []}')
    (tmp_path / "decision.json").write_text('{"blessed": true}')
    run = local.LocalRun(
        run_id="r",
        succeeded=True,
        seconds=1.0,
        outputs={"window": tmp_path / "window", "decision": tmp_path / "decision.json"},
    )
    assert run.read("window") == {"batches": []}
    assert run.read("decision") == {"blessed": True}
    assert run.read("evaluation") is None
    assert local.LocalRun(run_id="r", succeeded=False, seconds=0.0).read("window") is None


def record_usage(run_dir: Path, *steps: str) -> None:
    """Usage files as the steps' `usage` Metrics leave them in a kfp.local run folder."""
    for i, step in enumerate(steps):
        (run_dir / step).mkdir(parents=True)
        used = Usage(seconds=i + 0.5, cpu_seconds=i + 0.25, peak_rss_mib=40.0 + i)
        (run_dir / step / "usage").write_text(json.dumps(used.as_metrics()))


def statuses(rows: list[local.StepUsage]) -> dict[str, str]:
    return {row.step: row.status for row in rows}


def test_each_step_shows_its_usage_or_why_this_run_has_none(tmp_path: Path) -> None:
    # given a run in which resolve, register and deploy ran and the rest came from the cache
    record_usage(tmp_path, "resolve", "register", "deploy")
    rows = local.step_usages(tmp_path)
    # then every step has a row, in the order the steps run, with what it recorded
    assert [row.step for row in rows] == list(STEPS)
    assert statuses(rows) == {
        **dict.fromkeys(STEPS, "cached"),
        "resolve": "ran",
        "register": "ran",
        "deploy": "ran",
    }
    assert rows[0].usage == Usage(seconds=0.5, cpu_seconds=0.25, peak_rss_mib=40.0)
    assert rows[-1].usage == Usage(seconds=2.5, cpu_seconds=2.25, peak_rss_mib=42.0)


def test_the_steps_after_an_unblessed_gate_did_not_run(tmp_path: Path) -> None:
    record_usage(tmp_path, "resolve", "ingest", "validate", "train", "evaluate", "gate")
    assert statuses(local.step_usages(tmp_path, blessed=False)) == {
        **dict.fromkeys(STEPS[:6], "ran"),
        **dict.fromkeys(("infra-validate", "register", "deploy"), "not run"),
    }


def test_a_failed_run_shows_the_failed_step_and_that_none_after_it_ran(tmp_path: Path) -> None:
    # given a run that failed at validate after a cached ingest
    record_usage(tmp_path, "resolve")
    rows = local.step_usages(tmp_path, succeeded=False, failed="validate")
    assert statuses(rows) == {
        **dict.fromkeys(STEPS, "not run"),
        "resolve": "ran",
        "ingest": "cached",
        "validate": "failed",
    }
    # and without knowing where it failed, nothing is claimed for the steps without a record
    unknown = local.step_usages(tmp_path, succeeded=False, failed=None)
    assert statuses(unknown) == {**dict.fromkeys(STEPS, "no record"), "resolve": "ran"}
    assert statuses(local.step_usages(None, succeeded=False, failed="resolve"))["resolve"] == (
        "failed"
    )


def test_the_run_folder_is_the_new_one_and_never_the_cache(tmp_path: Path) -> None:
    (tmp_path / "flywheel-training-old").mkdir()
    before = set(tmp_path.glob("*"))
    (tmp_path / ".kfp_cache").mkdir()
    (tmp_path / "flywheel-training-new").mkdir()
    assert local._new_run_dir(tmp_path, before) == tmp_path / "flywheel-training-new"
    assert local._new_run_dir(tmp_path, set(tmp_path.glob("*"))) is None
