"""One window of one served version: drift, skew, performance, its estimate and health.

`analyse_window` is pure: it takes what was read from the logs and the
registry (`VersionReference`) and returns a `WindowReport`, the typed record
that is stored, published and read back by the trigger engine. What is measured
follows the version's task (its contract's): a binary classifier's score, a
multiclass one's probability per class and predicted class, a regression's
predicted value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

import numpy as np
import numpy.typing as npt
from pydantic import Field

from flywheel import drift
from flywheel.config import ContractSettings, MonitoringSettings, Task
from flywheel.contract import Contract
from flywheel.evaluation import ModelEvaluation
from flywheel.findings import Finding
from flywheel.monitoring import intervals, performance, statistics
from flywheel.monitoring.estimation import (
    DLE_ASSUMPTIONS,
    MULTICLASS_ASSUMPTIONS,
    DirectLoss,
    Estimate,
    Resampled,
    cbpe_multiclass,
    recalibrate,
    resampled,
)
from flywheel.monitoring.logs import Label, Prediction
from flywheel.monitoring.performance import Offline, Performance
from flywheel.monitoring.served import Logged, Served
from flywheel.monitoring.statistics import DriftTest
from flywheel.monitoring.summary import WindowSummary, latency_percentiles
from flywheel.records import Record
from flywheel.validation import check_batch

if TYPE_CHECKING:
    import pandas as pd

Role = Literal["production", "canary"]
Window = Literal["hour", "day"]


class FeatureDrift(Record):
    """One feature's serving inputs against the contract's reference profile."""

    feature: str
    kind: Literal["numeric", "categorical"]
    result: DriftTest


class Skew(Record):
    """Served scores against the registered model re-scoring the same rows offline."""

    sampled: int
    disagreeing: int
    max_difference: float
    tolerance: float

    @property
    def agrees(self) -> bool:
        """True when every sampled row got the same score offline."""
        return self.disagreeing == 0


class Health(Record):
    """Freshness, broken values and traffic of the window."""

    model_age_hours: float | None
    data_age_hours: float | None
    requests: int
    rows: int
    missing_inputs: int
    nan_inputs: int
    infinite_inputs: int
    nan_outputs: int
    infinite_outputs: int
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    skipped_lines: dict[str, int]


# CBPE's simulations of a window's labels, each from its own calibrator refitted on a resample.
CBPE_SIMULATIONS = 300
# The contract's checks that apply to served inputs; the row count, the label, the event
# time and drift (reported per feature) are a training batch's concern.
INVARIANT_CHECKS = frozenset(
    {
        "type",
        "allowed values",
        "allowed categories",
        "null rate",
        "range",
        "column present",
        "no unexpected columns",
    }
)


class Invariants(Record):
    """Served inputs against the version's data contract (ML Test Score, Monitor 2): the
    checks a training batch must pass, on the window's rows."""

    rows: int
    violations: tuple[Finding, ...]

    @property
    def hold(self) -> bool:
        """True when no check the contract makes an error failed."""
        return not any(f.severity == "error" for f in self.violations)


class WindowReport(Record):
    """Everything measured about one version over one window.

    `prediction_drift` is of a binary classifier's score, a multiclass one's predicted class
    and a regression's predicted value; `class_drift` of a multiclass one's probability of
    each class. `no_estimate` says why `estimate` is None when the window had rows.
    """

    format: Literal[1] = 1
    model: str
    version: str
    role: Role
    window: Window
    start: datetime
    end: datetime
    computed_at: datetime
    task: Task = "binary"
    classes: tuple[str, ...] = ()
    features: tuple[FeatureDrift, ...]
    drifted_share: float | None
    dataset_drift: bool
    prediction_drift: DriftTest | None
    class_drift: dict[str, DriftTest] = Field(default={})
    skew: Skew | None
    performance: Performance
    offline: Offline | None
    estimate: Estimate | None
    no_estimate: str | None = None
    health: Health
    invariants: Invariants | None = None
    # The rows the tests, metrics and estimates measured, when a window had more than its
    # summary keeps (a uniform sample, by a hash of the request id); None: every row.
    sampled_rows: int | None = None
    # The share of requests serving logged (monitoring.log_sample).
    logged_share: float = 1.0


class Scorer(Protocol):
    """A version's model as monitoring uses it (`Predictor`, or one loaded in a process of
    its own): the columns it takes, and its answers to rows."""

    @property
    def columns(self) -> tuple[str, ...]: ...

    def outputs(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]: ...


@dataclass(frozen=True)
class VersionReference:
    """What the registry holds about a version that monitoring compares against."""

    version: str
    created_at: datetime | None
    contract: Contract
    evaluation: ModelEvaluation | None
    predictor: Scorer | None
    rows: pd.DataFrame | None = None  # the reference rows named by the contract
    # Beyond binary: the version's answers on its evaluation's newest batch, rows it never
    # trained on; a regression's error models fitted there, or why there are none.
    newest_outputs: npt.NDArray[np.float64] | None = None
    direct_loss: DirectLoss | None = None
    no_direct_loss: str = "no reference rows with labels were read"
    # A digest of all the above as read (cache.reference_fingerprint); "": none was taken,
    # and its windows are never served from a cache.
    fingerprint: str = ""

    @property
    def task(self) -> Task:
        """The version's task, as its contract fixes it."""
        return self.contract.task

    @cached_property
    def score_calibrators(self) -> intervals.Resampled | None:
        """Binary CBPE's calibrators refitted on resamples of the evaluation's stored scores,
        one for each simulation: fitted the first time a window needs them, then reused."""
        if self.evaluation is None or not self.evaluation.scores_sample:
            return None
        return intervals.resampled(self.evaluation.scores_sample, CBPE_SIMULATIONS)

    @cached_property
    def class_calibrators(self) -> Resampled | None:
        """Multiclass CBPE's per-class calibrators refitted on resamples of the evaluation's
        stored probabilities, as `score_calibrators`."""
        if self.evaluation is None or not self.evaluation.probabilities_sample:
            return None
        return resampled(self.evaluation.probabilities_sample, CBPE_SIMULATIONS)


def _width(contract: Contract) -> int:
    return 1 if contract.task == "regression" else len(contract.classes)


def analyse_window(
    predictions: Sequence[Prediction] | Served,
    labels: Mapping[str, tuple[Label, ...]],
    reference: VersionReference,
    settings: MonitoringSettings,
    *,
    model: str,
    role: Role,
    start: datetime,
    end: datetime,
    skipped: Mapping[str, int],
    now: datetime | None = None,
    contract_policy: ContractSettings | None = None,
    summary: WindowSummary | None = None,
) -> WindowReport:
    """The report of one version's requests in [start, end); `contract_policy` (default:
    the defaults) sets the tolerances of the invariants. With a `summary` (what monitoring
    passes), `predictions` are its sample (as columns: `Sampled`) and its exact counts give
    the health, every PSI and the categorical tests."""
    task = reference.task
    rows = (
        predictions
        if isinstance(predictions, Served)
        else Logged(predictions, task, _width(reference.contract))
    )
    served = rows.answers
    usable = served.outputs[served.usable]
    features = _feature_drift(rows, reference.contract, reference.rows, settings, summary)
    drifted = sum(f.result.drifted for f in features)
    share = drifted / len(features) if features else None
    estimate, no_estimate = _estimate(rows, reference, settings)
    return WindowReport(
        model=model,
        version=reference.version,
        role=role,
        window=settings.window,
        start=start,
        end=end,
        computed_at=now or datetime.now(UTC),
        task=task,
        classes=tuple(str(c) for c in reference.contract.classes) if task != "regression" else (),
        features=features,
        drifted_share=share,
        dataset_drift=share is not None and share > settings.drifted_share,
        prediction_drift=_prediction_drift(usable, reference, settings),
        class_drift=_class_drift(usable, reference, settings),
        skew=_skew(rows, reference, settings, seed=int(start.timestamp())),
        performance=_performance(rows, labels, reference, settings.confidence),
        offline=performance.offline(reference.evaluation, task),
        estimate=estimate,
        no_estimate=no_estimate,
        health=_health(rows, reference, end, skipped)
        if summary is None
        else _counted_health(summary, reference, end, skipped),
        invariants=_invariants(rows, reference.contract, contract_policy, start),
        sampled_rows=None if summary is None or summary.complete else len(served.outputs),
        logged_share=settings.log_sample,
    )


def _invariants(
    rows: Served,
    contract: Contract,
    policy: ContractSettings | None,
    start: datetime,
) -> Invariants | None:
    """The contract's checks of a batch, run on the served rows."""
    if not rows.requests:
        return None
    frame = rows.frame()
    # A batch has an event time and a label; served rows have neither, so both are filled
    # in (the label with a class the contract knows) and their findings left out.
    frame[contract.time_column] = start.astimezone(UTC).replace(tzinfo=None)
    frame[contract.label] = 0.0 if contract.task == "regression" else contract.classes[0]
    checked = check_batch(frame, contract, policy or ContractSettings(), f"{start:%Y-%m-%d %H:%M}")
    return Invariants(
        rows=len(frame),
        violations=tuple(
            f
            for f in checked.findings
            if f.check in INVARIANT_CHECKS
            and f.column not in (contract.time_column, contract.label)
        ),
    )


def _feature_drift(
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

    limits = _limits(settings)
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


def _limits(settings: MonitoringSettings) -> _Limits:
    return {
        "p_value": settings.p_value,
        "distance": settings.distance,
        "min_expected": settings.psi_min_expected,
    }


def _prediction_drift(
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
        return _sample_drift(outputs[:, 0], _reference_predictions(reference), settings)
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
            **_limits(settings),
        )
    if evaluation.scores_sample:
        scores = np.array([score for score, _ in evaluation.scores_sample], dtype=float)
        return _sample_drift(outputs[:, -1], scores, settings)
    if evaluation.roc is None or evaluation.newest.positive_rate is None:
        return None
    return _score_drift(
        outputs[:, -1],
        evaluation.roc.thresholds,
        evaluation.roc.fpr,
        evaluation.roc.tpr,
        evaluation.newest.positive_rate,
        evaluation.newest.rows,
        settings,
    )


def _sample_drift(
    values: npt.NDArray[np.float64],
    reference: npt.NDArray[np.float64],
    settings: MonitoringSettings,
) -> DriftTest | None:
    """Served values against the reference sample, PSI over its deciles."""
    import pandas as pd

    if len(reference) == 0:
        return None
    edges = drift.quantile_edges(pd.Series(reference), 10)
    return statistics.sample_drift(values, reference, edges, **_limits(settings))


def _score_drift(
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
        scores, edges, fractions, reference_rows=rows, **_limits(settings)
    )


def _class_drift(
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
            if (found := _sample_drift(outputs[:, c], reference.newest_outputs[:, c], settings))
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
        found = _score_drift(
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


def _reference_predictions(reference: VersionReference) -> npt.NDArray[np.float64]:
    """A regression's predictions on the evaluation's newest batch: all of them when its rows
    were read, else the evaluation's sample of predicted against actual values."""
    if reference.newest_outputs is not None:
        return reference.newest_outputs[:, 0]
    pairs = reference.evaluation.predicted_actual if reference.evaluation else ()
    return np.array([predicted for predicted, _ in pairs], dtype=float)


def _skew(
    served: Served,
    reference: VersionReference,
    settings: MonitoringSettings,
    seed: int,
) -> Skew | None:
    """Re-score a seeded sample of served rows with the registered model: every output of a
    row (a regression's value relative to its size, beyond 1)."""
    if reference.predictor is None:
        return None
    rows = served.scorable(set(reference.predictor.columns))
    if not rows:
        return None
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rows), size=min(settings.skew_sample, len(rows)), replace=False)
    sample = [rows[i] for i in sorted(picked)]
    from threadpoolctl import threadpool_limits

    # A few hundred rows: OpenMP's threads cost far more than they save (scikit-learn's
    # gradient boosting took 0.7 s of CPU on two threads for 200 rows, 12 ms on one).
    with threadpool_limits(1):
        offline = reference.predictor.outputs(served.frame(sample))
    answered = served.outputs_of(sample)
    difference = np.abs(offline - answered)
    if reference.task == "regression":
        difference /= np.maximum(np.abs(offline), 1.0)
    largest = difference.max(axis=1)
    return Skew(
        sampled=len(sample),
        disagreeing=int((largest > settings.skew_tolerance).sum()),
        max_difference=float(largest.max()),
        tolerance=settings.skew_tolerance,
    )


def _performance(
    rows_served: Served,
    labels: Mapping[str, tuple[Label, ...]],
    reference: VersionReference,
    confidence: float,
) -> Performance:
    """The task's metrics on the usable rows whose labels arrived; labels the task cannot
    use (a class never learned, a regression label that is not a number) are counted."""
    problem = reference.contract.problem
    served = rows_served.answers
    truth: list[Label] = []
    rows: list[int] = []
    at = 0
    for request_id, answered in rows_served.requests:
        found = labels.get(request_id)
        if found is not None and len(found) == answered:
            for i, label in enumerate(found):
                if served.usable[at + i]:
                    truth.append(label)
                    rows.append(at + i)
        at += answered
    outputs = served.outputs[rows]
    if problem.is_classifier:
        known = problem.known(truth) if truth else np.zeros(0, dtype=bool)
        y: Any = problem.codes([t for t, k in zip(truth, known, strict=True) if k])
    else:
        known = np.array([_number(t) for t in truth], dtype=bool)
        y = np.array([float(t) for t, k in zip(truth, known, strict=True) if k], dtype=float)
    return performance.measure(
        reference.task,
        y,
        outputs[known],
        confidence,
        classes=tuple(str(c) for c in problem.classes),
        unusable=int((~known).sum()),
    )


def _number(value: Label) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _estimate(
    rows: Served,
    reference: VersionReference,
    settings: MonitoringSettings,
) -> tuple[Estimate | None, str | None]:
    """The estimate before labels (CBPE, or DLE for a regression), or why there is none."""
    served = rows.answers
    outputs = served.outputs[served.usable]
    if len(outputs) == 0:
        return None, None
    evaluation = reference.evaluation
    if reference.task == "regression":
        if reference.direct_loss is None:
            return None, f"no estimate before labels: {reference.no_direct_loss}"
        frame = rows.frame()[served.usable]
        estimated = reference.direct_loss.estimate(frame, outputs[:, 0], settings.confidence)
        return (
            Estimate(method="DLE", rows=len(outputs), assumptions=DLE_ASSUMPTIONS, **estimated),
            None,
        )
    calibrate = settings.calibration == "evaluation"
    if reference.task == "multiclass":
        names = [str(c) for c in reference.contract.classes]
        if calibrate and (evaluation is None or not evaluation.calibration_per_class):
            return None, "no estimate before labels: the evaluation has no calibration per class"
        pairs = (
            [evaluation.calibration_per_class.get(n, ()) for n in names]
            if calibrate and evaluation
            else []
        )
        calibrated = recalibrate(outputs, pairs) if calibrate else outputs
        found = cbpe_multiclass(
            outputs,
            calibrated,
            settings.confidence,
            calibrators=reference.class_calibrators if calibrate else None,
            simulations=CBPE_SIMULATIONS,
        )
        return (
            Estimate(
                calibration=settings.calibration,
                rows=len(outputs),
                assumptions=MULTICLASS_ASSUMPTIONS,
                **found,
            ),
            None,
        )
    scores = outputs[:, -1]
    calibrated = scores
    if calibrate:
        if evaluation is None or not evaluation.calibration:
            return None, "no estimate before labels: the evaluation has no calibration"
        calibrator = intervals.calibrator(evaluation.calibration)
        assert calibrator is not None  # the calibration has points
        calibrated = calibrator(scores)
    # The calibrator is fitted on a sample too: each simulation's is refitted on a resample.
    draws = reference.score_calibrators if calibrate else None
    binary = intervals.cbpe(
        scores, calibrated, settings.confidence, draws=draws, simulations=CBPE_SIMULATIONS
    )
    return Estimate(calibration=settings.calibration, rows=len(scores), **binary), None


def _health(
    rows: Served,
    reference: VersionReference,
    end: datetime,
    skipped: Mapping[str, int],
) -> Health:
    """The health of a window from its logged requests, one by one."""
    if not isinstance(rows, Logged):
        raise TypeError("a window's health is counted from its requests or from its summary")
    predictions, served = rows.predictions, rows.answers
    values = [v for column in rows.columns().values() for v in column]
    numbers = np.array([v for v in values if isinstance(v, float)], dtype=float)
    latencies = np.array([p.latency_ms for p in predictions if p.latency_ms is not None])
    percentiles: list[float | None] = (
        [float(v) for v in np.percentile(latencies, [50, 95, 99])] if len(latencies) else [None] * 3
    )
    # Counted by row: a row of NaN (or of another width) is one NaN output.
    outputs = [row for p in predictions for row in p.outputs]
    return Health(
        model_age_hours=_hours(end, reference.created_at),
        data_age_hours=_hours(end, _newest_batch_end(reference.contract)),
        requests=len(predictions),
        rows=len(served.outputs),
        missing_inputs=sum(v is None for v in values),
        nan_inputs=int(np.isnan(numbers).sum()),
        infinite_inputs=int(np.isinf(numbers).sum()),
        nan_outputs=sum(any(math.isnan(v) for v in row) for row in outputs),
        infinite_outputs=sum(any(math.isinf(v) for v in row) for row in outputs),
        error_rate=served.broken_requests / len(predictions) if predictions else None,
        latency_p50_ms=percentiles[0],
        latency_p95_ms=percentiles[1],
        latency_p99_ms=percentiles[2],
        skipped_lines=dict(skipped),
    )


def _counted_health(
    summary: WindowSummary,
    reference: VersionReference,
    end: datetime,
    skipped: Mapping[str, int],
) -> Health:
    """The health of a window from its summary's exact counts."""
    p50, p95, p99 = latency_percentiles(summary, (50, 95, 99))
    return Health(
        model_age_hours=_hours(end, reference.created_at),
        data_age_hours=_hours(end, _newest_batch_end(reference.contract)),
        requests=summary.requests,
        rows=summary.rows,
        missing_inputs=summary.missing_inputs,
        nan_inputs=summary.nan_inputs,
        infinite_inputs=summary.infinite_inputs,
        nan_outputs=summary.nan_outputs,
        infinite_outputs=summary.infinite_outputs,
        error_rate=summary.broken_requests / summary.requests if summary.requests else None,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        skipped_lines=dict(skipped),
    )


def _hours(end: datetime, since: datetime | None) -> float | None:
    return None if since is None else round((end - since).total_seconds() / 3600, 3)


def _newest_batch_end(contract: Contract) -> datetime | None:
    """The end of the newest day the version was trained on (batches are named by day)."""
    from datetime import timedelta

    days = []
    for name in contract.batches:
        try:
            days.append(datetime.fromisoformat(name[:10]).replace(tzinfo=UTC))
        except ValueError:
            continue
    return max(days) + timedelta(days=1) if days else None
