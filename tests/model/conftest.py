"""One model of the small configuration, trained once per session, and rows it never saw."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from flywheel import runs, synthetic
from flywheel.config import load_settings
from flywheel.predictor import Predictor
from harness.model import HELD_OUT_ROWS, TrainedModel
from harness.projects import SMALL, write_batches


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The shipped flywheel.yaml's model (its features and their monotonic constraints),
    trained by the pipeline's own steps on 5 days of 600 rows, without the search.

    The held-out batch is a day after the window (2,000 rows), drawn by the same
    generator: the model never saw it, in training or in its holdout.
    """
    root: Path = tmp_path_factory.mktemp("model")
    settings = load_settings(
        Path(__file__).resolve().parents[2] / "flywheel.yaml",
        env={},
        overrides=[
            f"data.source={root / 'batches'}",
            f"storage.uri={root / 'store'}",
            f"pipeline.root={root / 'pipeline-root'}",
            *SMALL,
        ],
    )
    write_batches(settings, settings.data.window_days)
    work = root / "work"
    runs.run_in_process(settings, work, last_step="train")
    predictor = Predictor.from_bytes((work / "model.joblib").read_bytes(), settings.features)
    generator = settings.data.generator.model_copy(update={"rows_per_day": HELD_OUT_ROWS})
    day = generator.start_date + timedelta(days=settings.data.window_days)
    return TrainedModel(settings, predictor, synthetic.generate_day(day, generator))
