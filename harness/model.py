"""The model the behavioural tests probe: as serving loads it, with rows from after its window."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from flywheel.config import Settings
from flywheel.predictor import Predictor

HELD_OUT_ROWS = 2000


@dataclass(frozen=True)
class TrainedModel:
    """The model as serving loads it, and a batch of rows from after its window."""

    settings: Settings
    predictor: Predictor
    held_out: pd.DataFrame

    def risk(self, rows: pd.DataFrame) -> npt.NDArray[np.float64]:
        """P(default) for each row, in order, through the serving code path."""
        return self.predictor.predict_proba(rows)[:, 1]
