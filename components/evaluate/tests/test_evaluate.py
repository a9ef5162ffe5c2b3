from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kfp import dsl

from flywheel import tasks
from flywheel.components.evaluate.component import evaluate
from flywheel.config import Settings


def _prepare(settings: Settings, make_batches: Callable[..., list[str]], tmp_path: Path) -> None:
    make_batches(settings, 4)
    config = settings.to_json()
    tasks.ingest(config, "", tmp_path / "w")
    tasks.train(config, tmp_path / "w", tmp_path / "model", tmp_path / "holdout")


def test_logic_emits_kfp_metrics_roc_and_confusion_matrix(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    _prepare(settings, make_batches, tmp_path)
    out = {
        "evaluation": dsl.Artifact(
            name="evaluation", uri=str(tmp_path / "evaluation"), metadata={}
        ),
        "report": dsl.HTML(name="report", uri=str(tmp_path / "report.html"), metadata={}),
        "metrics": dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={}),
        "classification": dsl.ClassificationMetrics(name="c", uri=str(tmp_path / "c"), metadata={}),
    }
    evaluate.python_func(
        config=settings.to_json(),
        model=dsl.Model(name="model", uri=str(tmp_path / "model"), metadata={}),
        holdout=dsl.Dataset(name="holdout", uri=str(tmp_path / "holdout"), metadata={}),
        window=dsl.Dataset(name="window", uri=str(tmp_path / "w"), metadata={}),
        baseline="",
        **out,
    )
    assert out["metrics"].metadata["candidate_newest_roc_auc"] > 0.7
    assert out["classification"].metadata["confusionMatrix"]["annotationSpecs"] == [
        {"displayName": "repaid"},
        {"displayName": "defaulted"},
    ]
    assert len(out["classification"].metadata["confidenceMetrics"]) > 10
    assert json.loads((tmp_path / "evaluation").read_text())["production"] is None
    assert "<img" in (tmp_path / "report.html").read_text()


def test_under_kfp_local(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    run_component: Callable[..., Path],
    tmp_path: Path,
) -> None:
    settings = small_settings()
    _prepare(settings, make_batches, tmp_path)
    task_dir = run_component(
        evaluate,
        artifacts={
            "model": (dsl.Model, tmp_path / "model"),
            "holdout": (dsl.Dataset, tmp_path / "holdout"),
            "window": (dsl.Dataset, tmp_path / "w"),
        },
        config=settings.to_json(),
        baseline="",
    )
    assert json.loads((task_dir / "evaluation").read_text())["metric"] == "roc_auc"
