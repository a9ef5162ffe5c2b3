"""What a look measures about one window of one served version (`WindowReport` and its
parts: the typed record that is stored, published and read back by the trigger engine), and
what it is measured against (`VersionReference`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import Field

from flywheel.config import Task
from flywheel.contract import Contract
from flywheel.evaluation import ModelEvaluation
from flywheel.findings import Finding
from flywheel.monitoring import intervals
from flywheel.monitoring.estimation import DirectLoss, Estimate, Resampled, resampled
from flywheel.monitoring.performance import Offline, Performance
from flywheel.monitoring.rescored import Rescored
from flywheel.monitoring.statistics import DriftTest
from flywheel.records import Record

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
    # The model's answers to rows earlier looks re-scored, and this look's.
    rescored: Rescored = field(default_factory=Rescored)

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
