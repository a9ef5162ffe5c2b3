"""Window reports built by hand, as monitoring stores them, to judge triggers on known numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flywheel.monitoring.estimation import Estimate
from flywheel.monitoring.intervals import Interval
from flywheel.monitoring.performance import Offline, Performance
from flywheel.monitoring.statistics import DriftTest
from flywheel.monitoring.window import FeatureDrift, Health, WindowReport
from harness.projects import FEATURE_NAMES

DAY0 = datetime(2026, 1, 10, tzinfo=UTC)


def interval(value: float, half: float = 0.03) -> Interval:
    """An estimate of `value`, give or take `half`."""
    return Interval(value=value, low=value - half, high=value + half)


def window_report(
    day: int,
    *,
    drifted: tuple[str, ...] = (),
    psi: dict[str, float] | None = None,
    accuracy: Interval | None = None,
    labelled: int = 0,
    estimate: Interval | None = None,
    offline: float = 0.8,
    rows: int = 400,
    version: str = "v1",
    computed_at: datetime | None = None,
) -> WindowReport:
    """The report of day `day` after DAY0: `drifted` features drifted (PSI 0.3, else 0.01; a
    PSI of 0.1 or more has a significant chi-square)."""
    start = DAY0 + timedelta(days=day)
    psi = psi or {}
    features = tuple(
        FeatureDrift(
            feature=name,
            kind="categorical" if name in ("region", "channel", "employment") else "numeric",
            result=DriftTest(
                rows=rows,
                psi=value,
                psi_p_value=0.001 if value >= 0.1 else 0.6,
                psi_min_rows=50,
                test="ks",
                statistic=0.2 if name in drifted else 0.02,
                p_value=0.001 if name in drifted else 0.6,
                threshold=0.05,
                effect="wasserstein",
                effect_size=0.2 if name in drifted else 0.02,
                distance=0.1,
                drifted=name in drifted,
            ),
        )
        for name in FEATURE_NAMES
        for value in (psi.get(name, 0.3 if name in drifted else 0.01),)
    )
    share = len(drifted) / len(FEATURE_NAMES)
    return WindowReport(
        model="loan-default",
        version=version,
        role="production",
        window="day",
        start=start,
        end=start + timedelta(days=1),
        computed_at=computed_at or start + timedelta(days=1, minutes=5),
        features=features,
        drifted_share=share,
        dataset_drift=share > 0.5,
        prediction_drift=None,
        skew=None,
        performance=Performance(labelled=labelled, accuracy=accuracy, roc_auc=None, log_loss=None),
        offline=Offline(
            newest={"accuracy": offline, "roc_auc": 0.85, "log_loss": 0.4}, holdout=None
        ),
        estimate=Estimate(
            calibration="evaluation",
            rows=rows,
            accuracy=estimate or interval(offline),
            roc_auc=None,
            log_loss=None,
        ),
        health=Health(
            model_age_hours=None,
            data_age_hours=None,
            requests=rows // 25,
            rows=rows,
            missing_inputs=0,
            nan_inputs=0,
            infinite_inputs=0,
            nan_outputs=0,
            infinite_outputs=0,
            error_rate=0.0,
            latency_p50_ms=2.0,
            latency_p95_ms=4.0,
            latency_p99_ms=5.0,
            skipped_lines={},
        ),
    )
