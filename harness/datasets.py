"""scikit-learn's own small datasets as a Flywheel project sees them: all-numeric features named
as a flywheel.yaml can name them, the label `target`, and the task each one is."""

from __future__ import annotations

import re

import pandas as pd

from flywheel.config import FeatureSettings, Task

# Each dataset scikit-learn ships that stands for a task.
SHIPPED: dict[str, Task] = {
    "breast_cancer": "binary",
    "wine": "multiclass",
    "diabetes": "regression",
}


def shipped(name: str) -> tuple[pd.DataFrame, FeatureSettings, Task]:
    """The dataset's rows, its feature settings and its task."""
    import sklearn.datasets

    loaded = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
    frame = loaded.rename(columns=lambda c: re.sub(r"\W", "_", str(c)))
    numeric = tuple(c for c in frame.columns if c != "target")
    return frame, FeatureSettings(label="target", numeric=numeric, categorical=()), SHIPPED[name]
