"""A window's drift tests: each feature against the version's reference rows (or its
contract's bins), and its answers against the version's own on its evaluation (a binary
classifier's score, a multiclass one's predicted class and probability of each class, a
regression's predicted value)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import numpy.typing as npt

from flywheel import drift
from flywheel.config import MonitoringSettings
from flywheel.contract import Contract
from flywheel.monitoring import statistics
from flywheel.monitoring.served import Served
from flywheel.monitoring.statistics import DriftTest
from flywheel.monitoring.summary import WindowSummary
from flywheel.monitoring.window import FeatureDrift, VersionReference

if TYPE_CHECKING:
    import pandas as pd


def feature_drift(
    served: Served,
    contract: Contract,
    rows: pd.DataFrame | None,
    settings: MonitoringSettings,
    summary: WindowSummary | None = None,
) -> tuple[FeatureDrift, ...]:
    """Each feature against the reference rows the contract was inferred from, or (when they
    cannot be read) against the contract's bins counted on its rows; with a summary, PSI on
    its exact counts of the contract's bins, and categories tested on its exact counts."""
    import pandas as pd

    limits = drift_limits(settings)
    out: list[FeatureDrift] = []
    for name, profile in contract.numeric.items():
        values = served.numbers(name)
        counts = summary.numeric.get(name) if summary is not None else None
        if rows is not None and name in rows.columns:
            reference = pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)
            result = statistics.sample_drift(
                values, reference, profile.edges, counts=counts, **limits
            )
        else:
            result = statistics.binned_drift(
                values,
                profile.edges,
                profile.fractions,
                reference_rows=contract.rows,
                counts=counts,
                **limits,
            )
        if result is not None:
            out.append(FeatureDrift(feature=name, kind="numeric", result=result))
    for name, categorical in contract.categorical.items():
        if summary is not None:
            found = statistics.counted_drift(
                summary.categorical.get(name, {}),
                categorical.fractions,
                reference_rows=contract.rows,
                **limits,
            )
        else:
            found = statistics.categorical_drift(
                served.values(name),
                categorical.fractions,
                reference_rows=contract.rows,
                **limits,
            )
        if found is not None:
            out.append(FeatureDrift(feature=name, kind="categorical", result=found))
    return tuple(out)


class _Limits(TypedDict):
    p_value: float
    distance: float
    min_expected: float


def drift_limits(settings: MonitoringSettings) -> _Limits:
    """The drift tests' level, effect limit and PSI's minimum expected count."""
    return {
        "p_value": settings.p_value,
        "distance": settings.distance,
        "min_expected": settings.psi_min_expected,
    }


def prediction_drift(
    outputs: npt.NDArray[np.float64], reference: VersionReference, settings: MonitoringSettings
) -> DriftTest | None:
    """A binary classifier's score against its evaluation's stored sample of scores (when an
    older evaluation has none, against the deciles of the distribution behind its ROC curve,
    counted on the batch's rows); a multiclass one's predicted class against the evaluation's
    (its confusion matrix' columns); a regression's predicted value against its predictions
    on the reference rows."""
    evaluation = reference.evaluation
    if len(outputs) == 0:
        return None
    if reference.task == "regression":
        return sample_drift(outputs[:, 0], reference_predictions(reference), settings)
    if evaluation is None:
        return None
    if reference.task == "multiclass":
        confusion = np.asarray(evaluation.newest.confusion, dtype=float)
        if confusion.size == 0 or confusion.sum() == 0:
            return None
        names = [str(c) for c in reference.contract.classes]
        counts = dict(zip(names, confusion.sum(axis=0).tolist(), strict=True))
        return statistics.categorical_drift(
            [names[i] for i in outputs.argmax(axis=1)],
            counts,
            reference_rows=int(confusion.sum()),
            **drift_limits(settings),
        )
    if evaluation.scores_sample:
        scores = np.array([score for score, _ in evaluation.scores_sample], dtype=float)
        return sample_drift(outputs[:, -1], scores, settings)
    if evaluation.roc is None or evaluation.newest.positive_rate is None:
        return None
    return score_drift(
        outputs[:, -1],
        evaluation.roc.thresholds,
        evaluation.roc.fpr,
        evaluation.roc.tpr,
        evaluation.newest.positive_rate,
        evaluation.newest.rows,
        settings,
    )


def sample_drift(
    values: npt.NDArray[np.float64],
    reference: npt.NDArray[np.float64],
    settings: MonitoringSettings,
) -> DriftTest | None:
    """Served values against the reference sample, PSI over its deciles."""
    import pandas as pd

    if len(reference) == 0:
        return None
    edges = drift.quantile_edges(pd.Series(reference), 10)
    return statistics.sample_drift(values, reference, edges, **drift_limits(settings))


def score_drift(
    scores: npt.NDArray[np.float64],
    thresholds: Sequence[float],
    fpr: Sequence[float],
    tpr: Sequence[float],
    positive_rate: float,
    rows: int,
    settings: MonitoringSettings,
) -> DriftTest | None:
    """Scores against the deciles of the distribution behind an ROC curve measured on
    `rows` rows, compared as categories."""
    ref = statistics.score_reference(thresholds, fpr, tpr, positive_rate)
    edges = sorted(set(ref.quantiles(np.linspace(0.1, 0.9, 9)).tolist()))
    fractions = np.diff([0.0, *ref.cdf_at(edges), 1.0]).tolist()
    return statistics.binned_drift(
        scores, edges, fractions, reference_rows=rows, **drift_limits(settings)
    )


def class_drift(
    outputs: npt.NDArray[np.float64], reference: VersionReference, settings: MonitoringSettings
) -> dict[str, DriftTest]:
    """A multiclass model's probability of each class against its probabilities on its
    evaluation's newest batch (when the batch cannot be read, against the deciles of the
    distribution behind that class's one-vs-rest ROC curve)."""
    evaluation = reference.evaluation
    if reference.task != "multiclass" or len(outputs) == 0:
        return {}
    names = [str(c) for c in reference.contract.classes]
    if reference.newest_outputs is not None:
        return {
            name: found
            for c, name in enumerate(names)
            if (found := sample_drift(outputs[:, c], reference.newest_outputs[:, c], settings))
        }
    if evaluation is None:
        return {}
    confusion = np.asarray(evaluation.newest.confusion, dtype=float)
    if confusion.size == 0 or confusion.sum() == 0:
        return {}
    shares = confusion.sum(axis=1) / confusion.sum()
    out = {}
    for c, name in enumerate(names):
        curve = evaluation.roc_per_class.get(name)
        if curve is None:
            continue
        found = score_drift(
            outputs[:, c],
            curve.thresholds,
            curve.fpr,
            curve.tpr,
            float(shares[c]),
            evaluation.newest.rows,
            settings,
        )
        if found is not None:
            out[name] = found
    return out


def reference_predictions(reference: VersionReference) -> npt.NDArray[np.float64]:
    """A regression's predictions on the evaluation's newest batch: all of them when its rows
    were read, else the evaluation's sample of predicted against actual values."""
    if reference.newest_outputs is not None:
        return reference.newest_outputs[:, 0]
    pairs = reference.evaluation.predicted_actual if reference.evaluation else ()
    return np.array([predicted for predicted, _ in pairs], dtype=float)
