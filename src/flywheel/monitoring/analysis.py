"""One window of one served version: drift, skew, performance, its estimate and health.

`analyse_window` is pure: it takes what was read from the logs and the
registry (`VersionReference`) and returns a `WindowReport`, the typed record
that is stored, published and read back by the trigger engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from flywheel.config import ContractSettings, MonitoringSettings
from flywheel.contract import Contract
from flywheel.evaluation import ModelEvaluation
from flywheel.monitoring import statistics
from flywheel.monitoring.logs import Prediction
from flywheel.monitoring.statistics import DriftTest, Interval
from flywheel.predictor import Predictor
from flywheel.records import Record
from flywheel.validation import Finding, check_batch

if TYPE_CHECKING:
    import pandas as pd

Role = Literal["production", "canary"]
Window = Literal["hour", "day"]
METRICS = ("accuracy", "roc_auc", "log_loss")

ASSUMPTIONS = (
    "The scores, after recalibration on the version's evaluation, are calibrated on the "
    "serving population: P(label = 1 | score) is what it was at evaluation.",
    "Only the inputs drift (covariate shift): the relation between inputs and labels "
    "(concept) is unchanged. Under concept drift the estimate is wrong and only delayed "
    "labels show it.",
    "Each row's label is an independent Bernoulli draw; the interval covers that draw, "
    "not an error in the calibration itself.",
    "Accuracy is at the serving threshold of 0.5.",
)


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


class Performance(Record):
    """Metrics on the rows whose labels arrived, with confidence intervals."""

    labelled: int
    accuracy: Interval | None
    roc_auc: Interval | None
    log_loss: Interval | None


class Offline(Record):
    """The same metrics from the version's own evaluation, for comparison."""

    newest: dict[str, float | None]
    holdout: dict[str, float | None] | None


class Estimate(Record):
    """CBPE: expected metrics from calibrated scores, before labels arrive. An estimate."""

    method: Literal["CBPE"] = "CBPE"
    calibration: Literal["evaluation", "none"]
    rows: int
    accuracy: Interval | None
    roc_auc: Interval | None
    log_loss: Interval | None
    assumptions: tuple[str, ...] = ASSUMPTIONS


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
    """Everything measured about one version over one window."""

    format: Literal[1] = 1
    model: str
    version: str
    role: Role
    window: Window
    start: datetime
    end: datetime
    computed_at: datetime
    features: tuple[FeatureDrift, ...]
    drifted_share: float | None
    dataset_drift: bool
    prediction_drift: DriftTest | None
    skew: Skew | None
    performance: Performance
    offline: Offline | None
    estimate: Estimate | None
    health: Health
    invariants: Invariants | None = None


@dataclass(frozen=True)
class VersionReference:
    """What the registry holds about a version that monitoring compares against."""

    version: str
    created_at: datetime | None
    contract: Contract
    evaluation: ModelEvaluation | None
    predictor: Predictor | None
    rows: pd.DataFrame | None = None  # the reference rows named by the contract


def analyse_window(
    predictions: Sequence[Prediction],
    labels: Mapping[str, tuple[int, ...]],
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
) -> WindowReport:
    """The report of one version's requests in [start, end); `contract_policy` (default:
    the defaults) sets the tolerances of the invariants."""
    columns = _columns(predictions)
    scores = np.array([s for p in predictions for s in p.scores], dtype=float)
    usable = np.isfinite(scores) & (scores >= 0) & (scores <= 1)
    features = _feature_drift(columns, reference.contract, reference.rows, settings)
    drifted = sum(f.result.drifted for f in features)
    share = drifted / len(features) if features else None
    return WindowReport(
        model=model,
        version=reference.version,
        role=role,
        window=settings.window,
        start=start,
        end=end,
        computed_at=now or datetime.now(UTC),
        features=features,
        drifted_share=share,
        dataset_drift=share is not None and share > settings.drifted_share,
        prediction_drift=_prediction_drift(scores[usable], reference.evaluation, settings),
        skew=_skew(predictions, reference, settings, seed=int(start.timestamp())),
        performance=_performance(predictions, labels, settings.confidence),
        offline=_offline(reference.evaluation),
        estimate=_estimate(scores[usable], reference.evaluation, settings),
        health=_health(predictions, columns, reference, scores, end, skipped),
        invariants=_invariants(predictions, reference.contract, contract_policy, start),
    )


def _invariants(
    predictions: Sequence[Prediction],
    contract: Contract,
    policy: ContractSettings | None,
    start: datetime,
) -> Invariants | None:
    """The contract's checks of a batch, run on the served rows."""
    import pandas as pd

    if not predictions:
        return None
    frame = pd.DataFrame.from_records(
        [dict(zip(p.features, row, strict=True)) for p in predictions for row in p.inputs]
    )
    # A batch has an event time and a label; served rows have neither, so both are filled
    # in and their findings left out.
    frame[contract.time_column] = start.astimezone(UTC).replace(tzinfo=None)
    frame[contract.label] = 0
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


def _columns(predictions: Sequence[Prediction]) -> dict[str, list[Any]]:
    """Every served row's value, by feature name."""
    columns: dict[str, list[Any]] = {}
    for p in predictions:
        for row in p.inputs:
            for name, value in zip(p.features, row, strict=True):
                columns.setdefault(name, []).append(value)
    return columns


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return math.nan
    try:
        return float(value)
    except ValueError:
        return math.nan


def _feature_drift(
    columns: Mapping[str, list[Any]],
    contract: Contract,
    rows: pd.DataFrame | None,
    settings: MonitoringSettings,
) -> tuple[FeatureDrift, ...]:
    """Each feature against the reference rows the contract was inferred from, or (when they
    cannot be read) against the contract's bins."""
    import pandas as pd

    out: list[FeatureDrift] = []
    for name, profile in contract.numeric.items():
        values = [_as_float(v) for v in columns.get(name, [])]
        if rows is not None and name in rows.columns:
            reference = pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)
            result = statistics.sample_drift(
                values,
                reference,
                profile.edges,
                profile.fractions,
                large=settings.large_window_rows,
                p_value=settings.p_value,
                distance=settings.distance,
            )
        else:
            result = statistics.binned_drift(
                values,
                profile.edges,
                profile.fractions,
                large=settings.large_window_rows,
                p_value=settings.p_value,
                distance=settings.distance,
            )
        if result is not None:
            out.append(FeatureDrift(feature=name, kind="numeric", result=result))
    for name, categorical in contract.categorical.items():
        found = statistics.categorical_drift(
            columns.get(name, []),
            categorical.fractions,
            large=settings.large_window_rows,
            p_value=settings.p_value,
            distance=settings.distance,
        )
        if found is not None:
            out.append(FeatureDrift(feature=name, kind="categorical", result=found))
    return tuple(out)


def _prediction_drift(
    scores: np.ndarray[Any, Any], evaluation: ModelEvaluation | None, settings: MonitoringSettings
) -> DriftTest | None:
    if evaluation is None or len(scores) == 0:
        return None
    ref = statistics.score_reference(
        evaluation.roc.thresholds,
        evaluation.roc.fpr,
        evaluation.roc.tpr,
        evaluation.newest.positive_rate,
    )
    edges = sorted(set(ref.quantiles(np.linspace(0.1, 0.9, 9)).tolist()))
    fractions = np.diff([0.0, *ref.cdf_at(edges), 1.0]).tolist()
    return statistics.distribution_drift(
        scores,
        ref,
        edges,
        fractions,
        large=settings.large_window_rows,
        p_value=settings.p_value,
        distance=settings.distance,
    )


def _skew(
    predictions: Sequence[Prediction],
    reference: VersionReference,
    settings: MonitoringSettings,
    seed: int,
) -> Skew | None:
    """Re-score a seeded sample of served rows with the registered model."""
    import pandas as pd

    if reference.predictor is None:
        return None
    wanted = set(reference.predictor.columns)
    rows = [
        (p, i)
        for p in predictions
        if set(p.features) == wanted
        for i in range(len(p.inputs))
        if math.isfinite(p.scores[i])
    ]
    if not rows:
        return None
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rows), size=min(settings.skew_sample, len(rows)), replace=False)
    sample = [rows[i] for i in sorted(picked)]
    frame = pd.DataFrame([dict(zip(p.features, p.inputs[i], strict=True)) for p, i in sample])
    offline = reference.predictor.predict_proba(frame)[:, 1]
    served = np.array([p.scores[i] for p, i in sample])
    difference = np.abs(offline - served)
    return Skew(
        sampled=len(sample),
        disagreeing=int((difference > settings.skew_tolerance).sum()),
        max_difference=float(difference.max()),
        tolerance=settings.skew_tolerance,
    )


def _performance(
    predictions: Sequence[Prediction], labels: Mapping[str, tuple[int, ...]], confidence: float
) -> Performance:
    y: list[int] = []
    p: list[float] = []
    for prediction in predictions:
        truth = labels.get(prediction.request_id)
        if truth is None or len(truth) != len(prediction.scores):
            continue
        for label, score in zip(truth, prediction.scores, strict=True):
            if math.isfinite(score) and 0 <= score <= 1:
                y.append(label)
                p.append(score)
    if not y:
        return Performance(labelled=0, accuracy=None, roc_auc=None, log_loss=None)
    y_arr, p_arr = np.array(y), np.array(p)
    right = int(((p_arr >= 0.5).astype(int) == y_arr).sum())
    return Performance(
        labelled=len(y),
        accuracy=statistics.wilson(right, len(y), confidence),
        roc_auc=statistics.auc_interval(y_arr, p_arr, confidence),
        log_loss=statistics.mean_interval(statistics.row_log_loss(y_arr, p_arr), confidence),
    )


def _offline(evaluation: ModelEvaluation | None) -> Offline | None:
    if evaluation is None:
        return None

    def pick(scores: Any) -> dict[str, float | None]:
        values = {m: float(getattr(scores, m)) for m in METRICS}
        return {m: v if math.isfinite(v) else None for m, v in values.items()}

    return Offline(
        newest=pick(evaluation.newest),
        holdout=pick(evaluation.holdout) if evaluation.holdout else None,
    )


def _estimate(
    scores: np.ndarray[Any, Any], evaluation: ModelEvaluation | None, settings: MonitoringSettings
) -> Estimate | None:
    if len(scores) == 0:
        return None
    calibrated = scores
    if settings.calibration == "evaluation":
        if evaluation is None or not evaluation.calibration:
            return None
        calibrator = statistics.calibrator(evaluation.calibration)
        assert calibrator is not None  # the calibration has points
        calibrated = calibrator(scores)
    estimated = statistics.cbpe(scores, calibrated, settings.confidence)
    return Estimate(calibration=settings.calibration, rows=len(scores), **estimated)


def _health(
    predictions: Sequence[Prediction],
    columns: Mapping[str, list[Any]],
    reference: VersionReference,
    scores: np.ndarray[Any, Any],
    end: datetime,
    skipped: Mapping[str, int],
) -> Health:
    values = [v for column in columns.values() for v in column]
    numbers = np.array([v for v in values if isinstance(v, float)], dtype=float)
    broken_requests = sum(
        any(not (math.isfinite(s) and 0 <= s <= 1) for s in p.scores) for p in predictions
    )
    latencies = np.array([p.latency_ms for p in predictions if p.latency_ms is not None])
    percentiles: list[float | None] = (
        [float(v) for v in np.percentile(latencies, [50, 95, 99])] if len(latencies) else [None] * 3
    )
    return Health(
        model_age_hours=_hours(end, reference.created_at),
        data_age_hours=_hours(end, _newest_batch_end(reference.contract)),
        requests=len(predictions),
        rows=len(scores),
        missing_inputs=sum(v is None for v in values),
        nan_inputs=int(np.isnan(numbers).sum()),
        infinite_inputs=int(np.isinf(numbers).sum()),
        nan_outputs=int(np.isnan(scores).sum()),
        infinite_outputs=int(np.isinf(scores).sum()),
        error_rate=broken_requests / len(predictions) if predictions else None,
        latency_p50_ms=percentiles[0],
        latency_p95_ms=percentiles[1],
        latency_p99_ms=percentiles[2],
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
