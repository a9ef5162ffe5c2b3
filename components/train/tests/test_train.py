from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from kfp import dsl

from flywheel import tasks
from flywheel.components.train.component import train
from flywheel.config import Settings
from flywheel.predictor import load_model


def test_logic_writes_a_loadable_model_and_the_holdout(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    tasks.ingest(settings.to_json(), "", tmp_path / "w")
    model = dsl.Model(name="model", uri=str(tmp_path / "model"), metadata={})
    holdout = dsl.Dataset(name="holdout", uri=str(tmp_path / "holdout"), metadata={})
    window = dsl.Dataset(name="window", uri=str(tmp_path / "w"), metadata={})
    train.python_func(config=settings.to_json(), window=window, model=model, holdout=holdout)
    assert model.metadata["framework"] == "scikit-learn"
    assert hasattr(load_model((tmp_path / "model").read_bytes()), "predict_proba")
    # The newest batch is never trained on: 2 of 3 days, minus the 20% holdout.
    assert model.metadata["rows"] + holdout.metadata["rows"] == 2 * 600
    assert len(pd.read_parquet(tmp_path / "holdout")) == holdout.metadata["rows"]


def test_under_kfp_local(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    run_component: Callable[..., Path],
    tmp_path: Path,
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    tasks.ingest(settings.to_json(), "", tmp_path / "w")
    task_dir = run_component(
        train, artifacts={"window": (dsl.Dataset, tmp_path / "w")}, config=settings.to_json()
    )
    assert load_model((task_dir / "model").read_bytes()) is not None
