"""`flywheel run`, `compile` and `submit`: a failing run says which file and why, in one line;
every run ends with what each step used; why a run started reaches its lineage."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from flywheel import runs
from flywheel.config import STEPS, Settings
from flywheel.registry import Registry
from flywheel.stores import Stores
from flywheel.triggers import engine
from flywheel.triggers.engine import Decision
from harness.cli import Flywheel, own_table, table_rows, write_config


def progress(printed: str) -> list[str]:
    """The lines a run printed before its summary: one per step, as each ended."""
    lines = printed.splitlines()
    return lines[: next(i for i, line in enumerate(lines) if " run run-" in line)]


def run_log(printed: str) -> Path:
    """The run's log file, as its summary names it."""
    return Path(next(line for line in printed.splitlines() if line.startswith("Log: "))[5:])


@pytest.fixture
def project(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> tuple[Settings, Path]:
    """Three good days of a small project, and its flywheel.yaml (window of three days)."""
    settings = small_settings("data.window_days=3")
    make_batches(settings, 3)
    return settings, write_config(settings, tmp_path / "flywheel.yaml")


def test_an_empty_batch_is_named_with_the_reason_and_nothing_is_registered(
    flywheel: Flywheel, project: tuple[Settings, Path]
) -> None:
    # given an empty file delivered as the newest day
    settings, config = project
    empty = Path(settings.data.source) / "2026-01-04.csv"
    empty.write_bytes(b"")
    # when the pipeline runs
    result = flywheel("-c", str(config), "run")
    # then the summary names the file and why, with no traceback anywhere
    assert result.code == 1
    why = f"batch {empty} is not readable CSV: No columns to parse from file"
    assert "FAILED at step validate after" in result.out and why in result.out
    assert "Traceback" not in result.text
    # and, before it, one line per step: the failed one with its own error and its log,
    # which holds what the steps printed, the traceback too
    lines = progress(result.out)
    assert [line.split()[:2] for line in lines[:3]] == [
        ["resolve", "done"],
        ["ingest", "done"],
        ["validate", "failed"],
    ]
    assert lines[2].endswith(f": {why}")
    assert lines[3].split() == ["log:", str(run_log(result.out))]
    assert [line.split(maxsplit=1) for line in lines[4:]] == [[s, "not run"] for s in STEPS[3:]]
    log = run_log(result.out).read_text()
    assert "Traceback (most recent call last):" in log and f"BatchError: {why}" in log
    assert "Looking for component" not in result.out
    assert Registry.from_settings(settings).versions() == []
    # and it ends with what the steps up to the failed one used
    rows = table_rows(result.out)
    assert [row[:2] for row in rows[3:]] == [
        ["validate", "failed"],
        *([step, "not run"] for step in STEPS[3:]),
        ["all that ran", rows[-1][1]],
    ]
    assert [row[0] for row in rows[1:3]] == ["resolve", "ingest"]
    for _, seconds, peak, cpu in rows[1:3]:
        assert float(seconds) >= 0 and float(cpu) >= 0 and float(peak) > 15


def test_verbose_also_shows_what_kfp_local_and_the_steps_print(
    flywheel: Flywheel, project: tuple[Settings, Path]
) -> None:
    # given a run that fails at validate on an empty batch
    settings, config = project
    (Path(settings.data.source) / "2026-01-04.csv").write_bytes(b"")
    # when it runs with -v
    result = flywheel("-c", str(config), "run", "-v")
    # then the steps' output is shown as it comes, a Flywheel error reduced to its line,
    # beside the line of each step and the summary
    assert result.code == 1
    for shown in (
        "Executing task",
        "Looking for component `validate`",
        "(executor input omitted)",
        "    BatchError: batch ",
    ):
        assert shown in result.out, shown
    assert "Traceback" not in result.text
    assert any(line.startswith("validate        failed after") for line in result.out.splitlines())
    assert "FAILED at step validate after" in result.out


def test_strings_in_a_numeric_column_are_named_with_their_share_and_an_example(
    flywheel: Flywheel,
    project: tuple[Settings, Path],
    make_batches: Callable[..., list[str]],
) -> None:
    # given a newest batch whose credit_score arrives as text ("663pts", and some "n/a")
    settings, config = project
    make_batches(
        settings,
        1,
        start=settings.data.generator.start_date.replace(day=4),
        scenario="broken_types",
        change_day=0,
    )
    result = flywheel("-c", str(config), "run")
    assert result.code == 1
    assert "FAILED at step validate" in result.out
    row = next(line for line in result.out.splitlines() if "| credit_score | type |" in line)
    assert "600 of 600 values (100.0%) are not numbers, e.g. '" in row
    assert "pts'" in row
    assert "null" not in row


def test_the_summary_ends_with_what_each_step_used_and_what_came_from_the_cache(
    flywheel: Flywheel, project: tuple[Settings, Path]
) -> None:
    # given a project's first run, in which every step ran (the first model is blessed),
    # started with a reason as the trigger engine starts one
    settings, config = project
    why = ["--reason", "new data: 3 new batch(es)", "--decision", "triggers/d.json"]
    first = flywheel("-c", str(config), "run", *why)
    assert first.code == 0, first.text
    lineage = json.loads(Registry.from_settings(settings).read("v1", "lineage.json"))
    assert lineage["trigger"] == {
        "reason": "new data: 3 new batch(es)",
        "decision": "triggers/d.json",
    }
    # then it shows one line per step as it ends, not what the steps print
    assert [line.split()[:2] for line in progress(first.out)] == [[s, "done"] for s in STEPS]
    assert "Looking for component" not in first.out and "executor" not in first.out
    assert "Looking for component `train`" in run_log(first.out).read_text()
    rows = table_rows(first.out)
    # and the summary ends with each step's seconds, peak memory (MiB) and CPU seconds
    assert rows[0] == ["step", "seconds", "peak memory (MiB)", "CPU seconds"]
    assert [row[0] for row in rows[1:]] == [*STEPS, "all that ran"]
    measured = {row[0]: [float(cell) for cell in row[1:]] for row in rows[1:]}
    assert all(peak > 15 for _, peak, _ in measured.values())
    # training loads scikit-learn and pandas and fits a model: far more than resolving
    assert measured["train"][1] > 100 > measured["resolve"][1]
    assert measured["train"][2] > 0.1
    assert measured["all that ran"][1] == max(peak for _, peak, _ in measured.values())
    # when the run is repeated, with that model now in production
    repeated = flywheel("-c", str(config), "run").out
    again = table_rows(repeated)
    status = {row[0]: row[1] for row in again[1:-1]}
    # then the steps that do not compare with production come from the cache
    cached = {"ingest", "train", "infra-validate"}
    assert {step for step, shown in status.items() if shown == "cached"} == cached
    assert {line.split()[0] for line in progress(repeated) if line.endswith("cached")} == cached
    assert all(float(status[step]) >= 0 for step in ("resolve", "register", "deploy"))


def test_a_run_is_recorded_so_the_engine_counts_it_in_flight_and_for_its_cooldown(
    flywheel: Flywheel,
    project: tuple[Settings, Path],
    make_batches: Callable[..., list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a run that will fail at validate (an empty newest batch: a quick run), and the
    # trigger engine looking, forced, while it runs
    settings, config = project
    (Path(settings.data.source) / "2026-01-04.csv").write_bytes(b"")
    stores = Stores(settings)
    meanwhile: list[Decision] = []
    run_local = runs.run_local

    def looked_at(*args: Any, **kwargs: Any) -> runs.LocalRun:
        meanwhile.append(engine.check(settings, stores.registry, stores.source, force="hotfix"))
        return run_local(*args, **kwargs)

    monkeypatch.setattr(runs, "run_local", looked_at)
    # when a person runs the pipeline
    result = flywheel("-c", str(config), "run", "--run-id", "run-ada", "--actor", "ada")
    assert result.code == 1 and "FAILED at step validate" in result.out
    # then, while it ran, the engine counted it in flight, and said who started it
    (during,) = meanwhile
    assert not during.fired and during.blocked_by is not None
    assert during.blocked_by.startswith("run run-ada in flight since ")
    assert during.blocked_by.endswith("(started by flywheel run by ada)")
    # and its record says what started it, why, on which data, and how it ended
    (run,) = stores.ledger.runs()
    started = run.started
    assert (started.origin, started.actor, started.reason) == ("run", "ada", "manual run")
    assert started.newest_batch == "2026-01-04" and started.decision == ""
    assert run.finished is not None and run.finished.outcome == "failed"
    # when a new batch arrives, then the new-data trigger fires but waits out the cooldown
    make_batches(settings, 1, start=settings.data.generator.start_date.replace(day=5))
    check = flywheel(
        "-c", str(config), "--set=triggers.new_data.batches=1", "triggers", "check"
    )  # fmt: skip
    assert check.code == 3, check.text
    assert "fired new_data (low): new data: 1 new batch(es) after 2026-01-04" in check.out
    assert "cooldown until " in check.out
    assert "(after run run-ada) (started by flywheel run by ada)" in check.out


def test_compile_writes_the_package(flywheel: Flywheel, tmp_path: Path) -> None:
    result = flywheel("compile", "--out", str(tmp_path))
    assert result.code == 0
    assert (tmp_path / "training.yaml").read_text().startswith("# PIPELINE DEFINITION")


def test_submit_needs_an_endpoint_and_an_s3_store(flywheel: Flywheel, config_file: Path) -> None:
    no_host = flywheel("-c", str(config_file), "submit")
    assert (
        no_host.err.strip() == "error: no KFP endpoint: pass --host, set KFP_HOST or pipeline.host"
    )
    local = flywheel("-c", str(config_file), "submit", "--host", "http://127.0.0.1:1")
    assert local.code == 1
    assert "a local directory: a cluster run needs an s3:// store" in local.err
    # The steps on the cluster read the batches too: a local data.source is refused as well.
    s3 = ["-c", str(config_file), "--set", "storage.uri=s3://bucket/flywheel"]
    batches = flywheel(*s3, "submit", "--host", "http://127.0.0.1:1")
    assert batches.code == 1
    assert (
        batches.err.startswith("error: data.source is ") and "needs an s3:// store" in batches.err
    )


@pytest.mark.parametrize(
    ("label", "model", "why"),
    [
        (
            ["cheap", "12.5", "3"],
            {"task": "regression"},
            "y: a regression label must be numbers, found 'cheap'",
        ),
        ([4], {"task": "multiclass"}, "y: a multiclass label needs at least two classes"),
        (
            [0, 1, 2],
            {"task": "binary"},
            "y: a binary label has two classes, the window has 3; set model.task: multiclass",
        ),
        (
            [0.5, 1.5, 2.5],
            {"estimator": "sklearn.ensemble.RandomForestClassifier", "task": "regression"},
            "model.estimator: RandomForestClassifier is not a regressor, and the task is regression",
        ),
        (
            [0, 1, 2],
            {"estimator": "sklearn.linear_model.Ridge"},
            "model.estimator: Ridge is not a classifier, and the task is multiclass",
        ),
    ],
)
def test_a_label_or_estimator_that_cannot_be_the_task_stops_validate_in_one_line(
    flywheel: Flywheel, tmp_path: Path, label: list[object], model: dict[str, object], why: str
) -> None:
    config = own_table(tmp_path, label, **model)
    assert (
        flywheel(
            "-c", str(config), "data", "split", str(tmp_path / "table.csv"), "--rows-per-day", "60"
        ).code
        == 0
    )
    result = flywheel("-c", str(config), "run")
    assert result.code == 1
    assert "FAILED at step validate after" in result.out and why in result.out
    assert "Traceback" not in result.text
    assert "No model version was written" in result.out


def test_a_class_the_training_batches_never_saw_fails_the_newest_batch(
    flywheel: Flywheel, tmp_path: Path
) -> None:
    # given three classes in the older batches and a fourth in the newest
    config = own_table(tmp_path, ["a", "b", "c"])
    flywheel(
        "-c",
        str(config),
        "data",
        "split",
        str(tmp_path / "table.csv"),
        "--rows-per-day",
        "60",
        "--seed",
        "-1",
    )
    newest = tmp_path / "batches" / "2026-01-04.parquet"
    frame = pd.read_parquet(newest)
    frame.loc[:4, "y"] = "d"
    frame.to_parquet(newest, index=False)
    # when the pipeline runs, then validate names the class and the batch
    result = flywheel("-c", str(config), "run")
    assert result.code == 1
    assert "FAILED at step validate" in result.out
    assert "2026-01-04" in result.out and "unseen class(es): d" in result.out


def test_monotonic_features_for_a_multiclass_label_stop_validate_in_one_line(
    flywheel: Flywheel, tmp_path: Path
) -> None:
    config = own_table(tmp_path, ["a", "b", "c"])
    settings = yaml.safe_load(config.read_text())
    settings["features"]["monotonic"] = {"size": "increasing"}
    config.write_text(yaml.safe_dump(settings))
    split = ("data", "split", str(tmp_path / "table.csv"), "--rows-per-day", "60")
    assert flywheel("-c", str(config), *split).code == 0
    result = flywheel("-c", str(config), "run")
    assert result.code == 1 and "FAILED at step validate" in result.out
    assert "features.monotonic: a multiclass model cannot be held monotonic in size" in result.out
