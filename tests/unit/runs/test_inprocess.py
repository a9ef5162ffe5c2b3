"""The pipeline's steps called in this process, stopping where asked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.config import Settings
from flywheel.registry import Registry
from flywheel.runs.inprocess import run_in_process


def test_an_unknown_last_step_is_refused_before_any_step_runs(
    small_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"last_step must be one of resolve, .*, not 'evaluation'"):
        run_in_process(small_settings(), tmp_path / "work", last_step="evaluation")
    assert not (tmp_path / "work").exists()


def test_an_in_process_run_stops_after_the_last_step_asked_for(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    # given five days of batches and an empty registry, and a policy with a baseline (a
    # trivial one, so that it never decides the run) and fairness by region
    settings = small_settings(
        "promotion.baseline.estimator=sklearn.dummy.DummyClassifier",
        "promotion.fairness.attribute=region",
    )
    make_batches(settings, 5)
    # when the run stops after ingesting
    ingested = run_in_process(settings, tmp_path / "a", last_step="ingest")
    # then only resolve and ingest ran, and the window is on disk
    assert list(ingested.seconds) == ["resolve", "ingest"]
    assert (ingested.version, ingested.blessed) == ("", None)
    manifest = json.loads((tmp_path / "a" / "window" / "manifest.json").read_text())
    assert len(manifest["batches"]) == 5
    assert not (tmp_path / "a" / "contract.json").exists()
    # when it stops at the gate, then the model was judged but nothing was registered
    gated = run_in_process(settings, tmp_path / "b", last_step="gate")
    assert list(gated.seconds) == ["resolve", "ingest", "validate", "train", "evaluate", "gate"]
    assert gated.blessed is True and gated.version == ""
    assert json.loads((tmp_path / "b" / "decision.json").read_text())["blessed"] is True
    assert Registry.from_settings(settings).versions() == []
    # and train handed its baselines to evaluate, and the gate checked them and the groups
    evaluation = json.loads((tmp_path / "b" / "evaluation.json").read_text())
    assert sorted(evaluation["baselines"]) == ["dummy_classifier", "majority_class"]
    assert evaluation["candidate"]["fairness"]["attribute"] == "region"
    checks = [
        c["name"] for c in json.loads((tmp_path / "b" / "decision.json").read_text())["checks"]
    ]
    assert checks[-5:] == [
        "beats baseline dummy_classifier",
        "beats baseline majority_class",
        "equal opportunity difference (region)",
        "demographic parity difference (region)",
        "calibration gap (region)",
    ]
