"""A served model of each task beyond binary, on data scikit-learn ships: wine (multiclass,
its classes by name) and diabetes (regression), trained through `flywheel.training.train`
and registered with the contract and lineage serving reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import pandas as pd

from flywheel.config import Settings
from flywheel.registry import MODEL_FILE, PRODUCTION, Registry
from flywheel.storage import LocalStore

Dataset = Literal["wine", "diabetes"]
TIME = "event_time"


def dataset_frame(name: Dataset) -> pd.DataFrame:
    """The dataset with plain column names, a `label` column (wine's by class name) and a
    time column."""
    from sklearn import datasets

    loaded = (
        datasets.load_wine(as_frame=True)
        if name == "wine"
        else datasets.load_diabetes(as_frame=True)
    )
    frame = loaded.frame.rename(columns=lambda c: re.sub(r"[^0-9a-zA-Z_]", "_", str(c)))
    target = frame.pop("target")
    if name == "wine":
        frame["label"] = [str(loaded.target_names[i]) for i in target]
    else:
        frame["label"] = target.astype(float)
    frame[TIME] = pd.date_range("2026-01-01", periods=len(frame), freq="min", tz="UTC")
    return frame


def settings_for(name: Dataset, store: Path) -> Settings:
    """A small configuration of the dataset, its registry under `store`."""
    frame = dataset_frame(name)
    numeric = [c for c in frame.columns if c not in ("label", TIME)]
    return Settings.model_validate_json(
        json.dumps(
            {
                "model_name": name,
                "storage": {"uri": str(store)},
                "features": {
                    "time_column": TIME,
                    "label": "label",
                    "numeric": numeric,
                    "categorical": [],
                },
                "model": {
                    # diabetes' label is whole numbers: the task must be said
                    "task": "multiclass" if name == "wine" else "regression",
                    "search": {"enabled": False},
                    "params": {"max_iter": 30},
                },
            }
        )
    )


def register(
    name: Dataset, store: Path, version_of: int = 0, *, shuffled: bool = False
) -> tuple[Settings, str]:
    """Train on the dataset (all rows but a held-out share) and register the model with its
    contract in production; `version_of` > 0 registers another, differently seeded, copy
    as a candidate, and `shuffled` one that learned shuffled labels (a broken candidate).
    Returns the settings and the version."""
    from flywheel import contract, training
    from flywheel.predictor import dump_model
    from flywheel.problem import resolve

    settings = settings_for(name, store)
    frame = dataset_frame(name)
    if shuffled:
        frame["label"] = frame["label"].sample(frac=1.0, random_state=version_of).to_numpy()
    problem = resolve(settings.model.task, frame["label"], "label")
    model_settings = settings.model.model_copy(update={"seed": 42 + version_of})
    metric = "rmse" if problem.task == "regression" else "accuracy"
    trained = training.train(frame, settings.features, model_settings, metric, problem=problem)
    reference = contract.infer_contract([("all", frame)], settings.features, 10, problem=problem)
    registry = Registry(LocalStore(store), name)
    manifest = registry.register(
        {
            MODEL_FILE: dump_model(trained.model),
            "contract.json": reference.to_json().encode(),
            "lineage.json": json.dumps(
                {"data": {"content_hash": f"{name}-{version_of}"}, "git_commit": "abc123"}
            ).encode(),
        },
        run_id=f"{name}-{version_of}",
    )
    if version_of == 0:
        registry.move_alias(
            PRODUCTION, manifest.version, expected=None, reason="first", actor="test"
        )
    return settings, manifest.version
