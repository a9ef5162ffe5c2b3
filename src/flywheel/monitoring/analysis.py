"""One window of one served version: drift, skew, performance, its estimate and health.

`analyse_window` is pure: it takes what was read from the logs and the
registry (`VersionReference`) and returns a `WindowReport` (both in `window`), the
typed record that is stored, published and read back by the trigger engine; the drift
tests are in `drifts`. What is measured
follows the version's task (its contract's): a binary classifier's score, a
multiclass one's probability per class and predicted class, a regression's
predicted value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from flywheel.config import ContractSettings, MonitoringSettings
from flywheel.contract import Contract
from flywheel.monitoring import intervals, performance
from flywheel.monitoring.drifts import class_drift, feature_drift, prediction_drift
from flywheel.monitoring.estimation import (
    DLE_ASSUMPTIONS,
    MULTICLASS_ASSUMPTIONS,
    Estimate,
    cbpe_multiclass,
    recalibrate,
)
from flywheel.monitoring.logs import Label, Prediction
from flywheel.monitoring.performance import Joined, Performance
from flywheel.monitoring.served import Logged, Served
from flywheel.monitoring.summary import WindowSummary, latency_percentiles
from flywheel.monitoring.window import (
    CBPE_SIMULATIONS,
    Health,
    Invariants,
    Role,
    Skew,
    VersionReference,
    WindowReport,
)
from flywheel.validation import check_batch

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
    every_label: Joined | None = None,
) -> WindowReport:
    """The report of one version's requests in [start, end); `contract_policy` (default:
    the defaults) sets the tolerances of the invariants. With a `summary` (what monitoring
    passes), `predictions` are its sample (as columns: `Sampled`) and its exact counts give
    the health, every PSI and the categorical tests; `every_label`, the metrics over every
    labelled row (`joined`)."""
    task = reference.task
    rows = (
        predictions
        if isinstance(predictions, Served)
        else Logged(predictions, task, reference.contract.problem.width)
    )
    served = rows.answers
    usable = served.outputs[served.usable]
    features = feature_drift(rows, reference.contract, reference.rows, settings, summary)
    drifted = sum(f.result.drifted for f in features)
    share = drifted / len(features) if features else None
    # A summary's sample stands for the window's rows: CBPE's intervals are of all of them.
    stands_for = None if summary is None or summary.complete else summary.rows
    estimate, no_estimate = _estimate(rows, reference, settings, stands_for)
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
        prediction_drift=prediction_drift(usable, reference, settings),
        class_drift=class_drift(usable, reference, settings),
        skew=_skew(rows, reference, settings),
        performance=_performance(rows, labels, reference, settings.confidence).model_copy(
            update={"every_label": every_label}
        ),
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


def _skew(served: Served, reference: VersionReference, settings: MonitoringSettings) -> Skew | None:
    """Re-score the served rows with the smallest request keys (a uniform random sample) with
    the registered model: every output of a row (a regression's value relative to its size,
    beyond 1). Rows an earlier look re-scored are not scored again (`rescored`)."""
    predictor = reference.predictor
    if predictor is None:
        return None
    rows = served.scorable(set(predictor.columns))
    if not rows:
        return None
    sample = sorted(served.by_key(rows)[: settings.skew_sample])

    def score(missing: list[int]) -> npt.NDArray[np.float64]:
        from threadpoolctl import threadpool_limits

        # A few hundred rows: OpenMP's threads cost far more than they save (scikit-learn's
        # gradient boosting took 0.7 s of CPU on two threads for 200 rows, 12 ms on one).
        with threadpool_limits(1):
            return predictor.outputs(served.frame([sample[at] for at in missing]))

    answered = served.outputs_of(sample)
    offline = reference.rescored.outputs(served.identities(sample), answered.shape[1], score)
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
    stands_for: int | None = None,
) -> tuple[Estimate | None, str | None]:
    """The estimate before labels (CBPE, or DLE for a regression), or why there is none;
    `stands_for`: the window's rows when `rows` are a sample of them."""
    served = rows.answers
    outputs = served.outputs[served.usable]
    if len(outputs) == 0:
        return None, None
    # The window's usable rows, in the sample's share.
    window_rows = (
        None if stands_for is None else round(stands_for * len(outputs) / len(served.outputs))
    )
    covered = len(outputs) if window_rows is None else window_rows  # the rows it stands for
    evaluation = reference.evaluation
    if reference.task == "regression":
        if reference.direct_loss is None:
            return None, f"no estimate before labels: {reference.no_direct_loss}"
        frame = rows.frame()[served.usable]
        estimated = reference.direct_loss.estimate(
            frame, outputs[:, 0], settings.confidence, rows=window_rows
        )
        return (
            Estimate(method="DLE", rows=covered, assumptions=DLE_ASSUMPTIONS, **estimated),
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
            rows=window_rows,
        )
        return (
            Estimate(
                calibration=settings.calibration,
                rows=covered,
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
        scores,
        calibrated,
        settings.confidence,
        draws=draws,
        simulations=CBPE_SIMULATIONS,
        rows=window_rows,
    )
    return Estimate(calibration=settings.calibration, rows=covered, **binary), None


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
