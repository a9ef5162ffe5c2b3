"""Served traffic for monitoring tests: rows scored by a registered version and written through
the real prediction and feedback loggers, in the records serving writes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from flywheel import logformat
from flywheel.contract import Contract
from flywheel.predictor import Predictor, load_model
from flywheel.registry import MODEL_FILE, Registry
from flywheel.serving.feedbacklog import FeedbackLogger, feedback_entry
from flywheel.serving.predictionlog import PredictionLogger
from flywheel.storage import ObjectStore

if TYPE_CHECKING:
    from flywheel.config import Settings
    from flywheel.monitoring.logs import Label, Prediction
    from flywheel.monitoring.window import WindowReport
    from flywheel.simulation.traffic import ServedDay
    from flywheel.storage import LocalStore

# The span monitoring tests read logged traffic back from: it holds whatever they log now.
START = datetime.now(UTC) - timedelta(hours=1)
END = datetime.now(UTC) + timedelta(hours=1)
# served(day, scenario, **log_traffic options) -> the predictions and labels read back.
Served = Callable[..., tuple[list["Prediction"], dict[str, tuple["Label", ...]]]]
# play(days, scenario=..., **serve_day options) -> the days served and each one's report.
Play = Callable[..., tuple[list["ServedDay"], dict[date, "WindowReport"]]]


def _value(value: Any) -> Any:
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _outputs(predictor: Predictor, part: pd.DataFrame, shift: float) -> list[list[float]]:
    """The rows' answers as serving logs them, rounded to six decimals."""
    if predictor.problem.task == "binary":
        scores = predictor.predict_proba(part)[:, 1] + shift
        return [[round(1 - s, 6), round(s, 6)] for s in scores]
    return [[round(float(v), 6) for v in row] for row in predictor.outputs(part)]


def monitored_in(settings: Settings, store: LocalStore, **monitoring: object) -> Settings:
    """`settings` storing in `store`, with `monitoring` over their monitoring
    settings."""
    return settings.model_copy(
        update={
            "storage": settings.storage.model_copy(update={"uri": str(store.root)}),
            "monitoring": settings.monitoring.model_copy(update=monitoring),
        }
    )


def log_traffic(
    store: ObjectStore,
    model: str,
    version: str,
    frame: pd.DataFrame,
    *,
    rows_per_request: int = 20,
    labelled: float = 1.0,
    shift_scores: float = 0.0,
) -> list[str]:
    """Score `frame` as `version` would and log it, as serving does for its task (a binary
    classifier's two probabilities, a multiclass one's per class, a regression's value); send
    the labels of the first `labelled` share of requests as feedback, as the label column holds
    them. `shift_scores` moves a binary classifier's logged scores (a skewed server).
    Returns the request ids."""
    registry = Registry(store, model)
    contract = Contract.from_json(registry.read(version, "contract.json"))
    predictor = Predictor(
        load_model(registry.read(version, MODEL_FILE)),
        list(contract.numeric),
        list(contract.categorical),
    )
    names = list(contract.features)
    predictions = PredictionLogger(
        store,
        model,
        version,
        numeric=list(contract.numeric),
        categorical=list(contract.categorical),
        width=len(contract.problem.output_names),
        flush_seconds=3600,
    )
    feedback = FeedbackLogger(store, model, version, flush_seconds=3600)
    ids = []
    starts = range(0, len(frame), rows_per_request)
    for n, start in enumerate(starts):
        part = frame.iloc[start : start + rows_per_request]
        request_id = uuid.uuid4().hex
        ids.append(request_id)
        predictions.record(
            {
                "request_id": request_id,
                "model": model,
                "version": version,
                "time": time.time(),
                "latency_ms": 2.0 + n % 5,
                "features": names,
                "inputs": [[_value(v) for v in row] for row in part[names].itertuples(index=False)],
                "outputs": _outputs(predictor, part, shift_scores),
            }
        )
        if n < labelled * len(starts):
            response = {"meta": {"tags": {"request_id": request_id}}}
            entry = feedback_entry(model, version, {}, response, []) or {}
            # Feedback carries class values as the label column takes them, or numbers.
            feedback.record({**entry, "labels": [_value(v) for v in part[contract.label]]})
    for logger in (predictions, feedback):
        logger.flush()
        logger.close()
    return ids


def parquet_traffic(
    store: ObjectStore, version: str, rows: int, at: datetime, *, seed: int = 0, name: str = ""
) -> tuple[str, list[str]]:
    """One Parquet prediction file of `rows` one-row requests served at `at`, written as
    serving writes it; its key and its request ids."""
    import numpy as np

    from flywheel import synthetic
    from flywheel.config import Settings

    registry = Registry(store, "loan-default")
    contract = Contract.from_json(registry.read(version, "contract.json"))
    rng = np.random.default_rng(seed)
    generator = Settings().data.generator
    frame = synthetic.generate_day(generator.start_date, generator).sample(rows, random_state=seed)
    ids = [f"{seed}-{i}-{rng.integers(1 << 30)}" for i in range(rows)]
    entries = [
        {
            "request_id": rid,
            "time": at.timestamp() + i * 0.01,
            "latency_ms": 2.0,
            "features": list(contract.features),
            "inputs": [[None if v != v else v for v in row]],
            "outputs": [[0.7, 0.3]],
        }
        for i, (rid, row) in enumerate(
            zip(ids, frame[list(contract.features)].itertuples(index=False), strict=True)
        )
    ]
    table = logformat.prediction_table(
        entries, list(contract.numeric), list(contract.categorical), 2
    )
    key = (
        f"predictions/loan-default/{version}/{at:%Y-%m-%d}/"
        f"{name or f'{at:%H%M%S%f}-{seed}-000001'}.parquet"
    )
    store.write(key, logformat.to_parquet(table, {"model": "loan-default", "version": version}))
    return key, ids


def wrong_typed(table: Any) -> Any:
    """A prediction table whose income column holds text: a file of the wrong type."""
    import pyarrow as pa

    column = table.schema.get_field_index("in.income")
    return table.set_column(column, "in.income", pa.array(["x"] * table.num_rows))


def feedback_file(store: ObjectStore, at: datetime, entries: list[dict[str, Any]]) -> str:
    """`entries` (request_id, time, labels) as one Parquet feedback file of v1 written in the
    hour of `at`; its key."""
    key = f"feedback/loan-default/v1/{at:%Y-%m-%d}/{at:%H%M%S}000005-6-000001.parquet"
    table = logformat.feedback_table(entries)
    store.write(key, logformat.to_parquet(table, {"model": "loan-default", "version": "v1"}))
    return key


def read_back(
    store: ObjectStore, version: str = "v1"
) -> tuple[list[Prediction], dict[str, tuple[Label, ...]]]:
    """What monitoring reads of `version`'s traffic logged between START and END; every
    line read."""
    from flywheel.monitoring.logs import Skipped, read_labels, read_predictions

    skipped = Skipped()
    predictions = read_predictions(store, "loan-default", {version}, START, END, skipped)
    labels = read_labels(store, "loan-default", {version}, START, END, skipped)
    assert not skipped.counts
    return predictions, labels


def production_report(
    predictions: list[Prediction],
    labels: dict[str, tuple[Label, ...]],
    reference: Any,
    skipped: dict[str, int] | None = None,
) -> WindowReport:
    """Production's report on the window START..END, under the default monitoring settings."""
    from flywheel.config import MonitoringSettings
    from flywheel.monitoring import analysis

    return analysis.analyse_window(
        predictions,
        labels,
        reference,
        MonitoringSettings(),
        model="loan-default",
        role="production",
        start=START,
        end=END,
        skipped=skipped or {},
    )
