from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from kfp import dsl
from sklearn.metrics import roc_auc_score

from flywheel.components.train.component import train
from flywheel.predictor import Predictor, load_model
from harness.steps import Ingested, artifact, assert_used, step_outputs


def assert_scores_the_holdout(model: Path, holdout: Path, window: Ingested) -> None:
    """The model file loads and scores its holdout with probabilities, better than chance."""
    features = window.settings.features
    predictor = Predictor(load_model(model.read_bytes()), features.numeric, features.categorical)
    rows = pd.read_parquet(holdout)
    probabilities = predictor.predict_proba(rows)
    assert probabilities.shape == (len(rows), 2)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert roc_auc_score(rows[features.label], probabilities[:, 1]) > 0.7


def test_logic_writes_a_loadable_model_and_the_holdout(window: Ingested, tmp_path: Path) -> None:
    model = artifact(dsl.Model, tmp_path / "model")
    holdout = artifact(dsl.Dataset, tmp_path / "holdout")
    usage = artifact(dsl.Metrics, tmp_path / "usage")
    train.python_func(
        config=window.config,
        window=artifact(dsl.Dataset, window.path),
        model=model,
        holdout=holdout,
        baselines=artifact(dsl.Model, tmp_path / "baselines"),
        usage=usage,
    )
    assert set(usage.metadata) == {"seconds", "cpu_seconds", "peak_rss_mib"}
    assert model.metadata["framework"] == "scikit-learn"
    assert model.metadata["estimator"] == window.settings.model.estimator_for("binary")
    assert_scores_the_holdout(tmp_path / "model", tmp_path / "holdout", window)
    # The newest batch is never trained on: 2 of 3 days, minus the 20% holdout.
    assert (model.metadata["rows"], holdout.metadata["rows"]) == (960, 240)
    assert len(pd.read_parquet(tmp_path / "holdout")) == holdout.metadata["rows"]


def test_under_kfp_local(window: Ingested, run_component: Callable[..., Path]) -> None:
    task_dir = run_component(
        train, artifacts={"window": artifact(dsl.Dataset, window.path)}, config=window.config
    )
    assert_scores_the_holdout(task_dir / "model", task_dir / "holdout", window)
    metadata = step_outputs(task_dir).metadata
    assert metadata["model"]["framework"] == "scikit-learn"
    assert metadata["model"]["estimator"] == window.settings.model.estimator_for("binary")
    assert (metadata["model"]["rows"], metadata["holdout"]["rows"]) == (960, 240)
    assert len(pd.read_parquet(task_dir / "holdout")) == 240
    # The step's own process: fitting a model takes CPU time, and scikit-learn and
    # pandas loaded take well over 100 MiB.
    used = assert_used(task_dir)
    assert used.cpu_seconds > 0.1 and used.peak_rss_mib > 100


def test_under_kfp_local_fits_the_baselines_on_the_same_rows(
    make_window: Callable[..., Ingested], run_component: Callable[..., Path]
) -> None:
    # given a policy with baselines
    window = make_window("promotion.baseline={}")
    # when the step runs
    task_dir = run_component(
        train, artifacts={"window": artifact(dsl.Dataset, window.path)}, config=window.config
    )
    # then its baselines artifact holds one loadable model per baseline, named in its metadata
    assert step_outputs(task_dir).metadata["baselines"]["models"] == [
        "logistic_regression",
        "majority_class",
    ]
    holdout = pd.read_parquet(task_dir / "holdout")
    features = window.settings.features
    for name, better_than_chance in (("logistic_regression", True), ("majority_class", False)):
        model = load_model((task_dir / "baselines" / f"{name}.joblib").read_bytes())
        p = Predictor(model, features.numeric, features.categorical).predict_proba(holdout)[:, 1]
        assert (roc_auc_score(holdout[features.label], p) > 0.7) is better_than_chance
