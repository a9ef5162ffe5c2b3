"""A registered version of each task beyond binary, as monitoring reads it: wine (multiclass,
on three of its features, so that it errs) and diabetes (regression), trained through
`flywheel.training.train` on older daily batches, evaluated on the newest (rows it never
trained on), registered with its contract and evaluation in production; and rows it never saw
to serve."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from flywheel.batches import BatchSource
from flywheel.config import FeatureSettings, Metric, ModelSettings, Task
from flywheel.storage import LocalStore
from harness.problems import TIME, Dataset, dataset_frame

if TYPE_CHECKING:
    from flywheel.monitoring.window import VersionReference, WindowReport

DAY0 = date(2026, 1, 1)
# window(served, rows, name) -> the report of `rows` served by a task's version and labelled,
# in a copy of its store named `name` (the monitoring tests' fixture).
Window = Callable[["Monitored", pd.DataFrame, str], "WindowReport"]
# The features each model sees: three of wine's (it is right about four times in five), all of
# diabetes'.
WINE = ("alcohol", "malic_acid", "ash")


@dataclass(frozen=True)
class Monitored:
    """A version in production and the store that holds it, its batches and its logs."""

    name: str
    version: str
    store: LocalStore
    source: BatchSource
    features: FeatureSettings
    unseen: pd.DataFrame  # rows neither trained nor evaluated on, to serve


def monitored(name: Dataset, root: Path, *, seed: int = 0) -> Monitored:
    """Register `name` in production under `root`: half its rows in two training batches, a
    quarter as the newest batch it is evaluated on, a quarter left unseen to serve."""
    from flywheel import contract, evaluation, training
    from flywheel.predictor import Predictor, dump_model
    from flywheel.problem import resolve
    from flywheel.registry import MODEL_FILE, PRODUCTION, Registry

    frame = dataset_frame(name).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    numeric = (
        WINE if name == "wine" else tuple(c for c in frame.columns if c not in ("label", TIME))
    )
    features = FeatureSettings(time_column=TIME, label="label", numeric=numeric, categorical=())
    task: Task = "multiclass" if name == "wine" else "regression"
    quarter = len(frame) // 4
    parts = [frame[:quarter], frame[quarter : 2 * quarter], frame[2 * quarter : 3 * quarter]]
    batches = LocalStore(root / "batches")
    names = []
    for i, part in enumerate(parts):
        day = DAY0 + timedelta(days=i)
        stamped = part.assign(**{TIME: pd.Timestamp(day, tz="UTC")})
        buffer = io.BytesIO()
        stamped.to_parquet(buffer, index=False)
        batches.write(f"{day.isoformat()}.parquet", buffer.getvalue())
        names.append(f"{day.isoformat()}.parquet")
    history = pd.concat(parts[:2], ignore_index=True)
    newest = parts[2]
    problem = resolve(task, history["label"], "label")
    metric: Metric = "rmse" if task == "regression" else "accuracy"
    model = ModelSettings(task=task, params={"max_iter": 50}, seed=seed)
    trained = training.train(history, features, model, metric, problem=problem)
    served = Predictor(trained.model, features.numeric, features.categorical)
    candidate = evaluation.evaluate_model(
        served, "candidate", None, newest, trained.holdout, features, metric
    )
    evaluated = evaluation.Evaluation(
        metric=metric,
        task=task,
        classes=tuple(str(c) for c in problem.classes),
        newest_batch=names[-1],
        candidate=candidate,
        production=None,
    )
    reference = contract.infer_contract(
        [(n, p) for n, p in zip(names[:2], parts[:2], strict=True)], features, 10, problem=problem
    )
    store = LocalStore(root / "store")
    registry = Registry(store, name)
    manifest = registry.register(
        {
            MODEL_FILE: dump_model(trained.model),
            "contract.json": reference.to_json().encode(),
            "evaluation.json": evaluated.model_dump_json().encode(),
        },
        run_id=f"{name}-{seed}",
    )
    registry.move_alias(PRODUCTION, manifest.version, expected=None, reason="first", actor="test")
    return Monitored(
        name=name,
        version=manifest.version,
        store=store,
        source=BatchSource(batches),
        features=features,
        unseen=frame[3 * quarter :].reset_index(drop=True),
    )


def shifted(rows: pd.DataFrame, column: str, size: int, *, seed: int = 0) -> pd.DataFrame:
    """`size` of `rows` drawn with replacement, the larger `column` the likelier: a covariate
    shift that leaves the relation between inputs and labels as it was."""
    rank = rows[column].rank(pct=True).to_numpy()
    weights = np.exp(4 * rank)
    picked = np.random.default_rng(seed).choice(len(rows), size, p=weights / weights.sum())
    return rows.iloc[picked].reset_index(drop=True)


def reference_of(served: Monitored) -> VersionReference:
    """What monitoring loads of the version: its contract, evaluation, model, error models."""
    from flywheel.monitoring.reference import load_reference
    from flywheel.registry import Registry

    return load_reference(Registry(served.store, served.name), served.source, served.version)


def shifted_both_ways(rows: pd.DataFrame, column: str) -> dict[str, pd.DataFrame]:
    """`rows` as they are, and 400 of them shifted to high and to low `column` (seeded)."""
    low = rows.assign(_order=-rows[column])
    return {
        "as is": rows,
        "high": shifted(rows, column, 400, seed=1),
        "low": shifted(low, "_order", 400, seed=2).drop(columns="_order"),
    }
