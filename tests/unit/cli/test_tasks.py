"""A project of one's own for each task: `flywheel data split` makes dated batches of a table,
and a label that cannot be the task, a class training never saw, or an estimator of the wrong
kind stops the run at validate with one line naming the problem, registering nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.cli import Flywheel


def _project(tmp_path: Path, label: list[object], **model: object) -> Path:
    """A table of 240 rows with one numeric and one categorical feature and `label` repeated,
    split into four daily batches, and its flywheel.yaml."""
    rng = np.random.default_rng(0)
    labels = (label * (240 // len(label) + 1))[:240]
    table = pd.DataFrame(
        {"size": rng.normal(size=240), "colour": rng.choice(["red", "blue"], 240), "y": labels}
    )
    table.to_csv(tmp_path / "table.csv", index=False)
    config = {
        "model_name": "own",
        "data": {"source": str(tmp_path / "batches"), "window_days": 4},
        "features": {"label": "y", "numeric": ["size"], "categorical": ["colour"]},
        "contract": {"min_rows": 20},
        "model": {"params": {}, **model},
        "storage": {"uri": str(tmp_path / "store")},
    }
    path = tmp_path / "flywheel.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_split_makes_dated_batches_with_times_and_never_rewrites_them(
    flywheel: Flywheel, tmp_path: Path
) -> None:
    config = _project(tmp_path, [0, 1])
    first = flywheel(
        "-c", str(config), "data", "split", str(tmp_path / "table.csv"), "--rows-per-day", "60"
    )
    assert first.code == 0, first.text
    assert "wrote 4 batch(es) 2026-01-01..2026-01-04 of 240 rows" in first.out
    day = pd.read_parquet(tmp_path / "batches" / "2026-01-02.parquet")
    assert len(day) == 60 and (day["event_time"].dt.date == pd.Timestamp("2026-01-02").date()).all()
    again = flywheel("-c", str(config), "data", "split", str(tmp_path / "table.csv"))
    assert again.code != 0 and "already has batches for 2026-01-01..2026-01-03" in again.text


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
    config = _project(tmp_path, label, **model)
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
    config = _project(tmp_path, ["a", "b", "c"])
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
