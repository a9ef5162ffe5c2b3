"""What kfp.local prints while it runs the steps: each step's state, why a step failed, the
run's log file, and the steps' output for a person.

kfp.local's records and the steps' output are produced here as kfp.local produces them
(its own logger context, colours and indented print), without running a pipeline;
whole runs are in tests/unit/cli/test_pipeline.py.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from kfp.local import logging_utils, status

from flywheel.runs.steplog import StepLog, StepState, StepTracker, capture

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


def test_the_executor_input_is_dropped_from_step_output_and_the_rest_kept() -> None:
    # given a target stream, and step output arriving in arbitrary pieces
    target = io.StringIO()
    log = StepLog(target)
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
    log = StepLog(target)
    log.write("half a ")
    assert target.getvalue() == ""
    log.write("line\nnext")
    assert target.getvalue() == "half a line\n"


def test_a_flywheel_error_is_reduced_to_its_reason() -> None:
    # given the traceback of a step that failed on an expected error, as kfp.local prints it
    target = io.StringIO()
    log = StepLog(target)
    log.write(TRACEBACK.format(error=FLYWHEEL_ERROR))
    log.flush()
    # then one line says why, and the run keeps the reason for its summary
    assert target.getvalue() == (
        "    before\n    BatchError: batch 2026-01-04.csv is not readable CSV: bad row\n    after\n"
    )
    assert log.reason == "batch 2026-01-04.csv is not readable CSV: bad row"


def test_any_other_error_keeps_its_whole_traceback_and_its_line_is_the_reason() -> None:
    # given a step that failed on a bug
    target = io.StringIO()
    log = StepLog(target)
    text = TRACEBACK.format(error="    KeyError: 'income'")
    log.write(text)
    log.flush()
    # then the traceback is shown whole, and the reason is the error's own line
    assert target.getvalue() == text
    assert log.reason == "KeyError: 'income'"


def test_a_traceback_cut_short_is_shown_on_flush() -> None:
    target = io.StringIO()
    log = StepLog(target)
    log.write('    Traceback (most recent call last):\n      File "x.py", line 1\n')
    assert target.getvalue() == ""
    log.flush()
    assert (
        target.getvalue() == '    Traceback (most recent call last):\n      File "x.py", line 1\n'
    )


# A step that fails on a bug, as its subprocess prints it (kfp.local indents it).
BUG = """\
Traceback (most recent call last):
  File "/tmp/ephemeral_component.py", line 42, in validate
    frame["income"]
KeyError: 'income'
"""
GROUPS = {"condition-1": ["deploy", "infra-validate", "register"]}


def executed(task: str, output: str, succeeded: bool = True) -> None:
    """A task as kfp.local's task dispatcher reports it: its records in kfp.local's logger
    context, and the step's output printed indented."""
    with logging_utils.local_logger_context():
        name = logging_utils.format_task_name(task)
        logging.info(f"Executing task {name}")
        logging.info("Streamed logs:\n")
        with logging_utils.indented_print():
            for line in output.splitlines():
                print(line)
        ended = status.Status.SUCCESS if succeeded else status.Status.FAILURE
        report = logging.info if succeeded else logging.error
        report(f"Task {name} finished with status {logging_utils.format_status(ended)}")


def tracked(tmp_path: Path) -> tuple[list[StepState], StepLog, StepTracker]:
    """The states heard, the step log (showing nothing) and the tracker of one run."""
    states: list[StepState] = []
    steplog = StepLog(None)
    return states, steplog, StepTracker(GROUPS, steplog, states.append, lambda: tmp_path / "log")


def test_each_step_is_heard_of_as_it_changes_and_a_failure_says_why_in_the_steps_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a run in which resolve ran, ingest came from the cache, validate failed on a
    # bug, and so the steps after it, also those inside the gate's condition, did not run
    states, steplog, tracker = tracked(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with capture(tmp_path / "log", steplog, tracker):
        executed("resolve", "production model: none yet\n")
        logging.info("Task ingest cache hit (key=02470d1d5f7a); skipping execution.")
        executed("validate", BUG, succeeded=False)
        logging.info("Skipping task train: upstream task(s) ['validate'] failed.")
        logging.info("Skipping task condition-1: upstream task(s) ['gate'] failed.")
    # then each step was heard of, in the order the steps run, with its state
    assert [(s.step, s.state) for s in states] == [
        ("resolve", "running"),
        ("resolve", "done"),
        ("ingest", "cached"),
        ("validate", "running"),
        ("validate", "failed"),
        ("train", "not run"),
        ("infra-validate", "not run"),
        ("register", "not run"),
        ("deploy", "not run"),
    ]
    # and the failure names the step's own error, not kfp.local's, and where the log is
    failed = states[4]
    assert (failed.error, failed.log) == ("KeyError: 'income'", tmp_path / "log")
    assert failed.seconds is not None and states[1].seconds is not None
    assert (tracker.failed, tracker.error) == ("validate", "KeyError: 'income'")
    # and the log file holds everything, traceback included, without colours
    log = (tmp_path / "log").read_text()
    for line in ("Executing task 'validate'", "    KeyError: 'income'", "Task ingest cache hit"):
        assert line in log
    assert "    Traceback (most recent call last):" in log and "\x1b[" not in log
    # and nothing reached the terminal, and the root logger is as it was
    assert capsys.readouterr().out == ""
    assert (root.handlers, root.level, tracker in root.filters) == (handlers, level, False)


def test_the_steps_of_a_condition_that_did_not_hold_are_skipped(tmp_path: Path) -> None:
    states, steplog, tracker = tracked(tmp_path)
    with capture(tmp_path / "log", steplog, tracker):
        executed("gate", "not blessed\n")
        logging.info("Skipping conditional task condition-1 (condition evaluated to False)")
    assert [(s.step, s.state) for s in states[2:]] == [
        ("infra-validate", "skipped"),
        ("register", "skipped"),
        ("deploy", "skipped"),
    ]


def test_a_step_that_failed_without_an_error_is_not_given_an_earlier_steps(
    tmp_path: Path,
) -> None:
    # given a step that printed a traceback and succeeded, and the next one killed silently
    states, steplog, tracker = tracked(tmp_path)
    with capture(tmp_path / "log", steplog, tracker):
        executed("resolve", BUG)
        executed("ingest", "Killed\n", succeeded=False)
    # then the failure says the step gave no reason
    assert states[-1].error == "the step ended without an error message"


def test_with_a_target_a_person_sees_what_kfp_local_and_the_steps_print(tmp_path: Path) -> None:
    shown = io.StringIO()
    steplog = StepLog(shown)
    tracker = StepTracker(GROUPS, steplog, lambda state: None, lambda: tmp_path / "log")
    with capture(tmp_path / "log", steplog, tracker):
        executed("ingest", STEP_OUTPUT.replace("\n    ", "\n").removeprefix("    "))
    assert "Executing task" in shown.getvalue()
    assert "    I0101 12:00:01.000 training step: fitting on 2400 rows\n" in shown.getvalue()
    assert "parameterValues" not in shown.getvalue()


def test_a_step_inside_the_gates_condition_that_fails_is_named_by_its_own_error(
    tmp_path: Path,
) -> None:
    # given a run whose infra-validate step, inside condition-1, fails with a Flywheel error,
    # and kfp.local's wrapper message about the group after it
    states, steplog, tracker = tracked(tmp_path)
    failure = (
        "Traceback (most recent call last):\n"
        '  File "/tmp/ephemeral_component.py", line 9, in infra_validate\n'
        "flywheel.predictor.InfraValidationError: the model returned answers that are not finite\n"
    )
    with capture(tmp_path / "log", steplog, tracker):
        executed("gate", "candidate blessed\n")
        executed("infra-validate", failure, succeeded=False)
        logging.error("Inner task failed: 'infra-validate' inside 'condition-1'")
        logging.info("Skipping task register: upstream task(s) ['infra-validate'] failed.")
    # then the run's reason is the step's own line, not the wrapper's
    assert tracker.failed == "infra-validate"
    assert tracker.error == "the model returned answers that are not finite"
    assert ("register", "not run") in [(s.step, s.state) for s in states]
