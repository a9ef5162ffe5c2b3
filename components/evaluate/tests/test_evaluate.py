from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl

from flywheel.components.evaluate.component import evaluate
from flywheel.config import FeatureSettings
from harness.steps import Ingested, Trained, artifact, assert_used, step_outputs

FEATURES = FeatureSettings()


def inputs(trained: Trained) -> dict[str, Any]:
    return {
        "model": artifact(dsl.Model, trained.model),
        "holdout": artifact(dsl.Dataset, trained.holdout),
        "window": artifact(dsl.Dataset, trained.window.path),
        "baselines": artifact(dsl.Model, trained.baselines),
    }


def assert_evaluated(evaluation: Path, report: Path, metrics: dict[str, Any]) -> None:
    """The candidate scored on its holdout and the newest batch, nothing in production."""
    result = json.loads(evaluation.read_text())
    assert (result["metric"], result["production"]) == ("roc_auc", None)
    assert result["newest_batch"] == "2026-01-03"
    assert result["candidate"]["newest"]["roc_auc"] > 0.7
    assert result["candidate"]["holdout"]["roc_auc"] > 0.7
    newest = result["candidate"]["newest"]["roc_auc"]
    assert metrics["candidate_newest_roc_auc"] == pytest.approx(newest, abs=1e-6)
    assert "<img" in report.read_text()
    # and each feature's importance and cost, recorded for the registry and the UI
    importance = result["candidate"]["importance"]
    assert set(importance) == {*FEATURES.numeric, *FEATURES.categorical}
    for name, measured in importance.items():
        assert measured["low"] <= measured["mean"] <= measured["high"]
        assert metrics[f"candidate_importance_{name}"] == pytest.approx(measured["mean"], abs=1e-6)
    assert sum(m["scoring_share"] for m in importance.values()) == pytest.approx(1.0)
    assert "What each feature adds, and what it costs" in report.read_text()


def test_logic_emits_kfp_metrics_roc_and_confusion_matrix(trained: Trained, tmp_path: Path) -> None:
    out = {
        "evaluation": artifact(dsl.Artifact, tmp_path / "evaluation"),
        "report": artifact(dsl.HTML, tmp_path / "report.html"),
        "metrics": artifact(dsl.Metrics, tmp_path / "metrics"),
        "classification": artifact(dsl.ClassificationMetrics, tmp_path / "classification"),
        "usage": artifact(dsl.Metrics, tmp_path / "usage"),
    }
    evaluate.python_func(config=trained.config, **inputs(trained), baseline="", **out)
    assert_evaluated(tmp_path / "evaluation", tmp_path / "report.html", out["metrics"].metadata)
    # Without promotion.baseline, train's baselines folder is an index naming no model
    # (never an empty folder), and nothing is scored against it.
    assert [p.name for p in trained.baselines.iterdir()] == ["baselines.json"]
    assert json.loads((tmp_path / "evaluation").read_text())["baselines"] == {}
    # The confusion matrix is named by the contract's classes: the label's values
    assert out["classification"].metadata["confusionMatrix"]["annotationSpecs"] == [
        {"displayName": "0"},
        {"displayName": "1"},
    ]
    assert len(out["classification"].metadata["confidenceMetrics"]) > 10


def test_under_kfp_local(trained: Trained, run_component: Callable[..., Path]) -> None:
    task_dir = run_component(
        evaluate, artifacts=inputs(trained), config=trained.config, baseline=""
    )
    metadata = step_outputs(task_dir).metadata
    assert_evaluated(task_dir / "evaluation", task_dir / "report", metadata["metrics"])
    # Written to files too, or kfp.local would never serve the step from its cache.
    assert json.loads((task_dir / "metrics").read_text()) == metadata["metrics"]
    confusion = metadata["classification"]["confusionMatrix"]
    assert [spec["displayName"] for spec in confusion["annotationSpecs"]] == ["0", "1"]
    assert sum(sum(row["row"]) for row in confusion["rows"]) == 600  # the newest batch
    assert_used(task_dir)


def test_under_kfp_local_scores_the_baselines_and_the_groups(
    make_window: Callable[..., Ingested], run_component: Callable[..., Path]
) -> None:
    # given a model and its baselines trained under a policy with baselines and fairness
    from flywheel import tasks

    window = make_window("promotion.baseline={}", "promotion.fairness.attribute=region")
    folder = window.path.parent
    tasks.train(window.config, window.path, folder / "m", folder / "h", folder / "b")
    trained = Trained(window, folder / "m", folder / "h", folder / "b")
    # when the step runs
    task_dir = run_component(
        evaluate, artifacts=inputs(trained), config=trained.config, baseline=""
    )
    # then the evaluation holds each baseline's scores and the candidate's group gaps
    result = json.loads((task_dir / "evaluation").read_text())
    assert sorted(result["baselines"]) == ["logistic_regression", "majority_class"]
    assert result["baselines"]["majority_class"]["newest"]["roc_auc"] == 0.5
    assert result["baselines"]["logistic_regression"]["holdout"]["rows"] == 240
    fairness = result["candidate"]["fairness"]
    assert sorted(fairness["groups"]) == ["east", "north", "south", "west"]
    assert 0 <= fairness["equal_opportunity_difference"] < 1
    # and the KFP metrics carry them
    metrics = step_outputs(task_dir).metadata["metrics"]
    assert metrics["baseline_majority_class_newest_roc_auc"] == 0.5
    assert "candidate_demographic_parity_difference" in metrics
