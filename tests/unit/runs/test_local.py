"""Local runs: what each step of a run used, and where a run's report and log are.

Whole local runs are driven through `flywheel run` in tests/unit/cli/test_pipeline.py
and the integration tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from flywheel.config import STEPS
from flywheel.runs import local
from flywheel.usage import Usage


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


def test_the_log_is_kept_in_the_new_run_folder_or_beside_the_folders_without_one(
    tmp_path: Path,
) -> None:
    before = set(tmp_path.glob("*"))
    assert local._log_path(tmp_path, before, "run-1") == tmp_path / "run-1.log"
    (tmp_path / "flywheel-training-new").mkdir()
    assert local._log_path(tmp_path, before, "run-1") == (
        tmp_path / "flywheel-training-new" / local.LOG_FILE
    )
