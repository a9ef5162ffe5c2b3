"""The one configuration model, fed by flywheel.yaml, environment variables and --set flags."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from flywheel import cron
from flywheel.errors import FlywheelError
from flywheel.images import SERVING_IMAGE

ENV_PREFIX = "FLYWHEEL_"
DEFAULT_CONFIG = "flywheel.yaml"
# FLYWHEEL_* variables that are not configuration keys; any other is refused.
OTHER_VARIABLES = {
    "FLYWHEEL_CONFIG": "the configuration file (flywheel --config)",
    "FLYWHEEL_SERVING_PYTHON": "the serving virtualenv's interpreter",
    "FLYWHEEL_TOOLS_DIR": "where the pinned Go tools are cached",
    "FLYWHEEL_CODE_VERSION": "set by local runs so that code changes invalidate cached steps",
    "FLYWHEEL_GIT_COMMIT": "the commit recorded in lineage when git is not available",
    "FLYWHEEL_IMAGE": "the image CI built, for `flywheel triggers check`'s code-change trigger",
    "FLYWHEEL_PII_SALT": "the salt of hashed PII columns (contract.pii_salt_env's default)",
}

Scalar = str | int | float | bool | None
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
Column = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]

Scenario = Literal[
    "stable",
    "covariate_drift",
    "concept_drift",
    "label_shift",
    "new_category",
    "broken_nulls",
    "broken_types",
    "broken_missing_column",
    "broken_renamed_column",
    "underserved_group",
]
Metric = Literal["roc_auc", "average_precision", "accuracy", "balanced_accuracy", "f1"]
# The training pipeline's steps, in the order they run (tasks.STEPS). They are named
# here, in the bottom layer, because the configuration refers to them.
Step = Literal[
    "resolve",
    "ingest",
    "validate",
    "train",
    "evaluate",
    "gate",
    "infra-validate",
    "register",
    "deploy",
]
STEPS: tuple[Step, ...] = get_args(Step)


class Strict(BaseModel):
    """Base for every settings model: typed exactly, immutable, no unknown keys."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class GeneratorSettings(Strict):
    """How `flywheel data generate` writes synthetic daily batches."""

    scenario: Scenario = "stable"
    seed: int = 42
    rows_per_day: int = Field(default=2000, gt=0, le=5_000_000)
    start_date: date = date(2026, 1, 1)
    change_day: int = Field(default=7, ge=0, description="Day index at which a scenario starts")


def _store_uri(value: str) -> str:
    if "://" in value and not value.startswith("s3://"):
        raise ValueError("must be a directory or an s3://bucket/prefix URI")
    return value


StoreUri = Annotated[str, AfterValidator(_store_uri)]


class DataSettings(Strict):
    """Where dated batches come from and how many days one run reads."""

    source: StoreUri = Field(default="data/batches", description="A directory or an s3:// prefix")
    format: Literal["auto", "csv", "parquet"] = "auto"
    window_days: int = Field(default=14, ge=2, le=366)
    generator: GeneratorSettings = GeneratorSettings()


class FeatureSettings(Strict):
    """The columns of a batch and what each one is."""

    time_column: Column = "event_time"
    label: Column = "defaulted"
    numeric: tuple[Column, ...] = (
        "income",
        "age",
        "loan_amount",
        "credit_score",
        "tenure_months",
        "late_payments",
    )
    categorical: tuple[Column, ...] = ("region", "channel", "employment")
    monotonic: dict[Column, Literal["increasing", "decreasing"]] = Field(
        default={},
        description="Numeric features whose effect on the predicted risk may only go one way "
        "(HistGradientBoostingClassifier)",
    )

    @model_validator(mode="after")
    def _distinct(self) -> FeatureSettings:
        names = [*self.numeric, *self.categorical]
        if not names:
            raise ValueError("at least one numeric or categorical feature is needed")
        seen: set[str] = set()
        for name in [*names, self.label, self.time_column]:
            if name in seen:
                raise ValueError(f"column {name!r} is listed twice")
            seen.add(name)
        for name in self.monotonic:
            if name not in self.numeric:
                raise ValueError(f"monotonic: {name!r} is not a numeric feature")
        return self

    @property
    def columns(self) -> tuple[str, ...]:
        """Every feature, numeric first."""
        return (*self.numeric, *self.categorical)


class DriftSettings(Strict):
    """Population stability index thresholds per feature."""

    bins: int = Field(default=10, ge=2, le=100)
    psi_warn: float = Field(default=0.1, gt=0)
    psi_fail: float | None = Field(default=None, gt=0, description="Stop the run above this")


class ColumnTags(Strict):
    """What the contract knows about one column beyond its type: where it comes from and
    whether it identifies a person (`pii`) or is a protected or otherwise sensitive trait."""

    pii: bool = Field(
        default=False, description="Identifies a person: dropped or hashed before ingest writes"
    )
    sensitive: bool = Field(default=False, description="A protected or otherwise sensitive trait")
    source: Name | None = Field(
        default=None, description="The system the column comes from (one of allowed_sources)"
    )


class ContractSettings(Strict):
    """How far a new batch may stray from the reference data before the run stops, and what
    the contract requires of each column's origin and privacy."""

    null_rate_tolerance: Fraction = 0.05
    range_tolerance: float = Field(default=0.25, ge=0)
    max_out_of_range_fraction: Fraction = 0.01
    unseen_categories: Literal["error", "warn"] = "error"
    label_balance_tolerance: Fraction = 0.15
    label_balance: Literal["error", "warn"] = "warn"
    min_rows: int = Field(default=50, ge=1)
    drift: DriftSettings = DriftSettings()
    columns: dict[Column, ColumnTags] = Field(
        default={},
        description="Tags by column name: pii, sensitive, source. A tagged column that is not "
        "a feature may still be carried by the batches (it is not profiled)",
    )
    allowed_sources: tuple[Name, ...] = Field(
        default=(),
        description="When set, every batch column needs a source tag from this list, "
        "or the run stops at validate",
    )
    pii: Literal["drop", "hash"] = Field(
        default="drop",
        description="What ingest does to pii columns before it writes the window: drop them, "
        "or replace each value by its salted HMAC-SHA256",
    )
    pii_salt_env: str = Field(
        default="FLYWHEEL_PII_SALT",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Variable holding the salt of `pii: hash` (its name, never the salt)",
    )
    pii_salt_secret: Name = Field(
        default="flywheel-pii",
        description="Secret on the cluster whose key named pii_salt_env holds the salt; the "
        "pipeline's ingest step reads it when it exists",
    )
    pii_features: tuple[Column, ...] = Field(
        default=(),
        description="pii columns allowed as model features, by name (hashed: needs pii: hash)",
    )

    @property
    def pii_columns(self) -> tuple[str, ...]:
        """The columns tagged pii."""
        return tuple(name for name, tags in self.columns.items() if tags.pii)

    @model_validator(mode="after")
    def _pii_policy(self) -> ContractSettings:
        if self.pii_salt_env.startswith(ENV_PREFIX) and self.pii_salt_env not in OTHER_VARIABLES:
            raise ValueError(
                f"pii_salt_env: {self.pii_salt_env} would be read as a configuration key; "
                f"name a variable without the {ENV_PREFIX} prefix, or FLYWHEEL_PII_SALT"
            )
        for name in self.pii_features:
            if name not in self.pii_columns:
                raise ValueError(f"pii_features: {name!r} is not tagged pii under columns")
            if self.pii == "drop":
                raise ValueError(
                    f"pii_features: {name!r} is dropped at ingest (pii: drop), so it can never "
                    "be a feature; set pii: hash to train on its hashed values"
                )
        return self


class SearchSettings(Strict):
    """An optional small randomized hyper-parameter search."""

    enabled: bool = False
    n_iter: int = Field(default=4, ge=1, le=200)
    cv: int = Field(default=3, ge=2, le=10)
    space: dict[str, tuple[Scalar, ...]] = {}

    @field_validator("space")
    @classmethod
    def _non_empty_choices(
        cls, space: dict[str, tuple[Scalar, ...]]
    ) -> dict[str, tuple[Scalar, ...]]:
        for name, choices in space.items():
            if not choices:
                raise ValueError(f"search space for {name!r} has no values")
        return space


class ModelSettings(Strict):
    """The scikit-learn estimator at the end of the training Pipeline."""

    estimator: str = "sklearn.ensemble.HistGradientBoostingClassifier"
    params: dict[str, Scalar] = {}
    search: SearchSettings = SearchSettings()
    test_size: float = Field(default=0.2, gt=0, lt=0.9)
    seed: int = 42

    @field_validator("estimator")
    @classmethod
    def _sklearn_only(cls, value: str) -> str:
        if not re.fullmatch(r"sklearn(\.[A-Za-z_][A-Za-z0-9_]*)+", value):
            raise ValueError(
                "must be a dotted path inside sklearn, e.g. sklearn.linear_model.LogisticRegression"
            )
        return value


class SliceCheck(Strict):
    """A minimum metric on every value of one categorical column."""

    column: Column
    min_metric: Fraction
    min_rows: int = Field(default=100, ge=1)


class ImportanceSettings(Strict):
    """Permutation importance of each feature on the holdout, and what the gate does with it."""

    repeats: int = Field(default=5, ge=2, le=100, description="Shuffles per feature")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Of the t interval")
    resample: bool = Field(
        default=True,
        description="Score each repeat on a bootstrap resample of the holdout, so that the "
        "interval covers the holdout's sampling noise too, not only the shuffles'",
    )
    unimportant_features: Literal["allow", "refuse"] = Field(
        default="allow",
        description="refuse: the gate refuses a model with a feature whose importance "
        "interval does not lie above zero",
    )


def _sklearn_name_exists(path: str) -> bool:
    """Whether `sklearn.module.Name` names something in the installed scikit-learn, read from
    the module's source rather than imported: importing scikit-learn takes seconds, too long
    for every configuration load. Undecidable cases (no scikit-learn here, a module that builds
    its names at run time) pass; `training.estimator_class` imports and checks them at train."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return True
    module, _, name = path.rpartition(".")
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*module.split(".")[1:])
    source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    if not source.is_file():
        return False
    names: set[str] = set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return name in names or "__getattr__" in names


class BaselineSettings(Strict):
    """The simpler models a candidate must beat: one estimator on the same features, through
    the same preprocessing as model.estimator, and, optionally, the majority class."""

    estimator: str = Field(
        default="sklearn.linear_model.LogisticRegression",
        description="A dotted path inside sklearn to a classifier with predict_proba",
    )
    params: dict[str, Scalar] = Field(
        default={},
        description="The estimator's parameters (LogisticRegression's own defaults are an L2 "
        "penalty with C=1.0: regularised)",
    )
    majority_class: bool = Field(
        default=True, description="Also the majority class: the training rows' base rate"
    )
    margin: Fraction = Field(
        default=0.01,
        description="The candidate's promotion metric on the newest batch must be at least "
        "each baseline's plus this",
    )

    @field_validator("estimator")
    @classmethod
    def _importable(cls, value: str) -> str:
        if not re.fullmatch(r"sklearn(\.[A-Za-z_][A-Za-z0-9_]*)+", value):
            raise ValueError(
                "must be a dotted path inside sklearn, e.g. sklearn.linear_model.LogisticRegression"
            )
        if not _sklearn_name_exists(value):
            raise ValueError(f"{value!r} does not exist in the installed scikit-learn")
        return value


class FairnessSettings(Strict):
    """Gaps between the groups of a protected attribute that the candidate may not exceed
    (on the newest batch, at the 0.5 threshold; null turns one check off). Differences are
    Fairlearn's `between_groups`: the largest group's value minus the smallest's."""

    attribute: Column = Field(description="A categorical feature whose values are the groups")
    max_equal_opportunity_difference: Fraction | None = Field(
        default=0.25, description="Largest gap in true positive rate between groups"
    )
    max_demographic_parity_difference: Fraction | None = Field(
        default=0.25, description="Largest gap in positive prediction rate between groups"
    )
    max_calibration_gap: Fraction | None = Field(
        default=0.1,
        description="Largest gap in expected calibration error (10 bins) between groups",
    )
    min_rows: int = Field(
        default=100, ge=1, description="A group with fewer rows is reported but not compared"
    )


class PromotionSettings(Strict):
    """The gate between a trained candidate and the registry."""

    metric: Metric = "roc_auc"
    min_metric: Fraction = 0.7
    max_regression: Fraction = 0.02
    slices: tuple[SliceCheck, ...] = ()
    importance: ImportanceSettings = ImportanceSettings()
    baseline: BaselineSettings | None = Field(
        default=None,
        description="Simpler models the candidate must beat ({} for a regularised logistic "
        "regression and the majority class; null: none)",
    )
    fairness: FairnessSettings | None = Field(
        default=None, description="Gaps between the groups of a protected attribute (null: off)"
    )


class StorageSettings(Strict):
    """The object store behind datasets, models and logs."""

    uri: StoreUri = Field(
        default=".flywheel/store", description="A directory or s3://bucket[/prefix]"
    )
    endpoint: str | None = Field(default=None, description="host:port of an S3-compatible server")
    secure: bool = True
    region: str | None = None
    access_key_env: str = "AWS_ACCESS_KEY_ID"
    secret_key_env: str = "AWS_SECRET_ACCESS_KEY"

    @property
    def is_s3(self) -> bool:
        """Whether the store is S3 rather than a local directory."""
        return self.uri.startswith("s3://")


class ResourceSettings(Strict):
    """Kubernetes resource requests and limits of one serving container."""

    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"


_CPU = re.compile(r"([0-9]*\.)?[0-9]+m?")
_MEMORY = re.compile(r"([0-9]+)(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")
_MEMORY_UNITS: dict[str, int] = {
    **{s: 1000**i for i, s in enumerate(("", "K", "M", "G", "T", "P", "E"))},
    **{s: 1024**i for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), start=1)},
}


def _quantity_text(value: object) -> object:
    # YAML reads `cpu_limit: 2` as a number; a quantity is written as a string.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _cpu(value: str) -> str:
    if not _CPU.fullmatch(value):
        raise ValueError("must be a number of cores, e.g. 2 or 0.5, or of millicores, e.g. 500m")
    return value


def _memory(value: str) -> str:
    if not _MEMORY.fullmatch(value):
        raise ValueError(
            "must be a whole number of bytes, optionally with one of the suffixes "
            "K, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei, e.g. 512Mi or 2Gi"
        )
    return value


# The forms KFP's compiler accepts (PipelineTask.set_cpu_limit and friends): a
# subset of Kubernetes quantities, so that a bad value fails here, with its key.
CpuQuantity = Annotated[str, BeforeValidator(_quantity_text), AfterValidator(_cpu)]
MemoryQuantity = Annotated[str, BeforeValidator(_quantity_text), AfterValidator(_memory)]


def cpu_cores(quantity: str) -> float:
    """A CPU quantity (2, 0.5, 500m) in cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_bytes(quantity: str) -> int:
    """A memory quantity (512Mi, 2G, 1048576) in bytes."""
    match = _MEMORY.fullmatch(quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a memory quantity")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]


class StepResources(ResourceSettings):
    """The requests and limits of one pipeline step's container."""

    cpu_request: CpuQuantity = "250m"
    cpu_limit: CpuQuantity = "1"
    memory_request: MemoryQuantity = "512Mi"
    memory_limit: MemoryQuantity = "1Gi"

    @model_validator(mode="after")
    def _request_within_limit(self) -> StepResources:
        problem = self.above_limit()
        if problem:
            raise ValueError(problem)
        return self

    def above_limit(self) -> str | None:
        """Why Kubernetes would refuse these (a request above its limit), or None."""
        for kind, over in (
            ("cpu", cpu_cores(self.cpu_request) > cpu_cores(self.cpu_limit)),
            ("memory", memory_bytes(self.memory_request) > memory_bytes(self.memory_limit)),
        ):
            if over:
                request, limit = getattr(self, f"{kind}_request"), getattr(self, f"{kind}_limit")
                return (
                    f"{kind}_request {request} is above {kind}_limit {limit}; "
                    "Kubernetes refuses a request above its limit"
                )
        return None


class StepResourceOverrides(Strict):
    """What one step changes of the default; a key left out keeps the default's value."""

    cpu_request: CpuQuantity | None = None
    cpu_limit: CpuQuantity | None = None
    memory_request: MemoryQuantity | None = None
    memory_limit: MemoryQuantity | None = None


class PipelineResources(Strict):
    """Every step's requests and limits: a default, and overrides by step name."""

    default: StepResources = StepResources()
    steps: dict[Step, StepResourceOverrides] = Field(
        default={}, description=f"Overrides by step: {', '.join(STEPS)}"
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> PipelineResources:
        for step in self.steps:
            merged = self.default.model_copy(update=self.steps[step].model_dump(exclude_none=True))
            problem = merged.above_limit()
            if problem:
                raise ValueError(f"steps.{step} (on top of default): {problem}")
        return self

    def for_step(self, step: str) -> StepResources:
        """The requests and limits of one step: its overrides on top of the default."""
        if step not in STEPS:
            raise ValueError(f"{step!r} is not a pipeline step (one of {', '.join(STEPS)})")
        overrides = self.steps.get(step)
        if overrides is None:
            return self.default
        return self.default.model_copy(update=overrides.model_dump(exclude_none=True))


class PipelineSettings(Strict):
    """Where and how the training pipeline runs."""

    root: str = ".flywheel/pipeline-root"
    caching: bool = True
    host: str | None = Field(default=None, description="KFP API endpoint for `flywheel submit`")
    token_env: str = Field(
        default="KFP_TOKEN",
        description="Variable holding the KFP API's bearer token (its name, never the token)",
    )
    experiment: str = "flywheel"
    s3_secret: Name = Field(default="flywheel-s3", description="Secret with the S3 keys on cluster")
    image: str | None = Field(
        default=None,
        description="Components image the cluster runs the steps in, ideally repo@sha256:... "
        "(`flywheel submit --image` wins; unset: the compiled package's)",
    )
    namespace: Name | None = Field(
        default=None, description="Kubeflow profile namespace runs go to (multi-user KFP)"
    )
    service_account: Name | None = Field(
        default=None,
        description="Service account the steps run as on the cluster (the deploy step patches "
        "the model's SeldonDeployment)",
    )
    resources: PipelineResources = Field(
        default=PipelineResources(),
        description="CPU and memory requests and limits of each step's container",
    )


# Bytes of log records a server holds before it drops new ones (serving.log_max_bytes).
LOG_MAX_BYTES = 4 * 1024 * 1024


class ServingSettings(Strict):
    """How a model version is served (seldon-core Python wrapper)."""

    image: str = SERVING_IMAGE
    image_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    namespace: Name = "flywheel"
    deployment: Name | None = Field(
        default=None, description="SeldonDeployment name (default: model_name)"
    )
    replicas: int = Field(default=1, ge=1, le=100)
    workers: int = Field(default=2, ge=1, le=64, description="gunicorn workers per container")
    max_rows: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_predictions: bool = True
    log_max_bytes: int = Field(
        default=LOG_MAX_BYTES,
        ge=65_536,
        description="Bytes of prediction and feedback records a server holds before "
        "it drops (and counts) new ones, the batch being written included",
    )
    resources: ResourceSettings = ResourceSettings()
    pod_template: Name | None = Field(
        default=None,
        description="PodTemplate (the chart's) whose pod spec and replicas the model's "
        "predictors take on a cluster; unset: rendered from these settings",
    )


class RolloutChecks(Strict):
    """What the canary is compared with the stable model on, at every step."""

    max_error_rate_increase: Fraction = 0.01
    max_p99_ratio: float = Field(default=1.5, ge=1.0)
    p99_floor_ms: float = Field(default=50.0, ge=0, description="p99 below this always passes")
    max_divergence: Fraction = Field(default=0.3, description="Jensen-Shannon distance of scores")
    max_accuracy_drop: Fraction = 0.05
    min_labelled: int = Field(default=100, ge=1)
    min_errors: int = Field(
        default=3, ge=1, description="failed canary requests before an error-rate breach counts"
    )
    min_requests_for_p99: int = Field(
        default=100,
        ge=1,
        description="canary requests before a p99 breach counts alone; below, the median must breach too",
    )
    divergence_significance: float = Field(
        default=0.001,
        gt=0,
        lt=1,
        description="false-rollback rate of the sequential divergence test, however often it looks",
    )
    accuracy_significance: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="false-rollback rate of the sequential accuracy test, however often it looks",
    )
    error_significance: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="false-rollback rate of the sequential error-rate test, however often it looks",
    )
    detect_error_rate_increase: Fraction = Field(
        default=0.05,
        gt=0,
        description="an error rate this far above the allowed one is caught fastest "
        "(the sequential test's alternative)",
    )
    detect_accuracy_drop: Fraction = Field(
        default=0.1,
        gt=0,
        description="an accuracy this far below the floor is caught fastest "
        "(the sequential test's alternative)",
    )


AccuracyPolicy = Literal["required", "optional"]


class TrafficStep(Strict):
    """One canary step: its share of the traffic, and whether it must check accuracy.

    `required`: the step waits for `checks.min_labelled` labels (until its timeout);
    `optional`: it may pass without them, and its decision record says so.
    """

    weight: int = Field(gt=0, le=100, description="canary traffic, in percent")
    accuracy: AccuracyPolicy = "optional"


def _step_form(value: object) -> object:
    # A plain number is the short form of a step: `steps: [10, {weight: 50, accuracy: required}]`.
    if isinstance(value, int) and not isinstance(value, bool):
        return {"weight": value}
    if not isinstance(value, dict | TrafficStep):
        raise ValueError(
            "a step is a traffic percentage, or {weight: PERCENT, accuracy: required|optional}"
        )
    return value


class RolloutSettings(Strict):
    """The canary policy: traffic steps and the analysis that gates each one."""

    steps: tuple[Annotated[TrafficStep, BeforeValidator(_step_form)], ...] = Field(
        default=(
            TrafficStep(weight=10),
            TrafficStep(weight=25),
            TrafficStep(weight=50, accuracy="required"),
            TrafficStep(weight=100),
        ),
        description="canary traffic steps, each a percentage or {weight, accuracy}",
    )
    min_requests: int = Field(
        default=200, ge=1, description="canary requests before a step can pass"
    )
    min_requests_to_fail: int = Field(
        default=20, ge=1, description="canary requests before a breach counts"
    )
    interval_seconds: float = Field(default=5.0, gt=0)
    step_timeout_seconds: float = Field(default=600.0, gt=0)
    checks: RolloutChecks = RolloutChecks()
    prometheus_url: str = "http://prometheus-operated.monitoring:9090"
    driver: Literal["local", "kubernetes"] = "local"

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[TrafficStep, ...]) -> tuple[TrafficStep, ...]:
        if not steps:
            raise ValueError("at least one traffic step is needed")
        weights = [s.weight for s in steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"traffic steps must increase, got {weights}")
        return steps

    @property
    def weights(self) -> tuple[int, ...]:
        """Each step's canary traffic, in percent."""
        return tuple(s.weight for s in self.steps)


class MonitoringSettings(Strict):
    """`flywheel monitor`: windows of the prediction log, drift tests and their thresholds."""

    window: Literal["hour", "day"] = "day"
    windows: int = Field(default=7, ge=1, le=1000, description="Complete windows to look back")
    label_delay_days: int = Field(
        default=7, ge=0, le=366, description="How long after a window its labels may arrive"
    )
    large_window_rows: int = Field(
        default=1000, ge=1, description="Above this, distances replace KS and chi-square"
    )
    p_value: Fraction = Field(default=0.05, description="KS and chi-square: drift below this")
    distance: float = Field(default=0.1, gt=0, description="Wasserstein (normed) and JS limit")
    drifted_share: Fraction = Field(default=0.5, description="Dataset drift above this share")
    skew_sample: int = Field(default=200, ge=1, le=100_000, description="Rows re-scored offline")
    skew_tolerance: float = Field(default=1e-5, gt=0, description="Largest score difference")
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    calibration: Literal["evaluation", "none"] = Field(
        default="evaluation",
        description="CBPE: recalibrate scores on the evaluation's reliability curve, or trust them",
    )
    pushgateway: str | None = Field(
        default=None, description="Push each run's metrics to this Prometheus Pushgateway URL"
    )


Severity = Literal["low", "high"]


def _cron(value: str) -> str:
    try:
        cron.parse(value)
    except cron.CronError as error:
        raise ValueError(str(error)) from None
    return value


CronText = Annotated[str, AfterValidator(_cron)]


class ScheduleTrigger(Strict):
    """Retrain when a cron tick (UTC) has passed since the last run started."""

    cron: CronText = Field(
        default="0 3 * * 1",
        description="Five-field cron in UTC (minute hour day-of-month month day-of-week) or "
        "@daily/@weekly/...; fires once a tick has passed since the last run started",
    )
    severity: Severity = "low"


class NewDataTrigger(Strict):
    """Retrain when enough new daily batches arrived since the data of the last run."""

    batches: int = Field(
        default=7, ge=1, le=366, description="New batches since the newest one the last run read"
    )
    severity: Severity = "low"


class DriftTrigger(Strict):
    """Retrain when serving inputs drift from the production version's reference, window after
    window (monitoring's feature drift)."""

    share: Fraction | None = Field(
        default=0.3,
        description="Fire when more than this share of features drifted (monitoring's tests); "
        "null: only the named features' PSI",
    )
    features: dict[Column, float] = Field(
        default={},
        description="PSI threshold by feature name: fire when one feature's PSI is above its own",
    )
    windows: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Consecutive newest windows that must all drift (one drifted window is noise)",
    )
    severity: Severity = "low"

    @field_validator("features")
    @classmethod
    def _psi_positive(cls, features: dict[str, float]) -> dict[str, float]:
        for name, threshold in features.items():
            if not 0 < threshold <= 10:
                raise ValueError(f"{name}: a PSI threshold must be above 0 and at most 10")
        return features

    @model_validator(mode="after")
    def _can_fire(self) -> DriftTrigger:
        if self.share is None and not self.features:
            raise ValueError(
                "set share, or PSI thresholds under features (or drift: null to turn it off)"
            )
        if self.share is not None and self.share >= 1:
            raise ValueError("share must be below 1: no share of features can be above 1")
        return self


class PerformanceTrigger(Strict):
    """Retrain when a metric on delayed labels is significantly low: the upper bound of its
    confidence interval (monitoring.confidence) is below the floor, or below the offline
    figure by more than max_drop."""

    metric: Literal["accuracy", "roc_auc"] = "accuracy"
    floor: Fraction | None = Field(default=None, description="Fire when surely below this")
    max_drop: Fraction | None = Field(
        default=0.03,
        description="Fire when surely below the version's offline evaluation minus this",
    )
    min_labelled: int = Field(default=100, ge=1, description="Labelled rows a window needs")
    severity: Severity = "high"

    @model_validator(mode="after")
    def _can_fire(self) -> PerformanceTrigger:
        if self.floor is None and self.max_drop is None:
            raise ValueError("set floor or max_drop (or set it to null to turn it off)")
        if self.floor is not None and self.floor <= 0:
            raise ValueError("floor must be above 0: no interval is surely below 0")
        return self


class EstimatedPerformanceTrigger(PerformanceTrigger):
    """Retrain when monitoring's CBPE estimate (before labels arrive) is significantly low in
    each of the newest windows; an estimate, so low severity by default."""

    max_drop: Fraction | None = Field(
        default=0.05,
        description="Fire when surely below the version's offline evaluation minus this",
    )
    windows: int = Field(default=2, ge=1, le=1000, description="Consecutive windows that must fire")
    min_labelled: int = Field(default=100, ge=1, description="Served rows a window needs")
    severity: Severity = "low"


class CodeChangeTrigger(Strict):
    """Retrain when CI reports a commit or image digest other than production's lineage
    (`flywheel triggers check --commit/--image`, or FLYWHEEL_GIT_COMMIT/FLYWHEEL_IMAGE)."""

    severity: Severity = "low"


class TriggerSettings(Strict):
    """The trigger engine's one policy: what starts a retraining run, and what holds it back.

    A trigger set to null is off. Safeguards: a run is not started while another one is in
    flight, beyond the daily budget, while held (`flywheel triggers hold`), or within the
    cooldown of the last one unless a high-severity trigger fired. `--force` bypasses the
    cooldown and the budget, never a hold or a run in flight.
    """

    schedule: ScheduleTrigger | None = ScheduleTrigger()
    new_data: NewDataTrigger | None = None
    drift: DriftTrigger | None = DriftTrigger()
    performance: PerformanceTrigger | None = PerformanceTrigger()
    estimated_performance: EstimatedPerformanceTrigger | None = EstimatedPerformanceTrigger()
    code_change: CodeChangeTrigger | None = CodeChangeTrigger()
    cooldown_hours: float = Field(
        default=24.0, ge=0, le=24 * 366, description="No low-severity run within this of the last"
    )
    daily_budget: int = Field(default=2, ge=1, le=1000, description="Runs started per UTC day")
    run_timeout_hours: float = Field(
        default=6.0,
        gt=0,
        le=24 * 31,
        description="A started run without a finished mark counts as in flight this long",
    )
    records_max_age_hours: float = Field(
        default=1.0,
        gt=0,
        description="Monitoring records older than this (or missing the newest window) are "
        "refreshed by running monitoring first",
    )


class Settings(Strict):
    """Everything one Flywheel deployment needs to know."""

    model_name: Name = "loan-default"
    data: DataSettings = DataSettings()
    features: FeatureSettings = FeatureSettings()
    contract: ContractSettings = ContractSettings()
    model: ModelSettings = ModelSettings()
    promotion: PromotionSettings = PromotionSettings()
    storage: StorageSettings = StorageSettings()
    pipeline: PipelineSettings = PipelineSettings()
    serving: ServingSettings = ServingSettings()
    rollout: RolloutSettings = RolloutSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    triggers: TriggerSettings = TriggerSettings()

    @model_validator(mode="after")
    def _slices_are_features(self) -> Settings:
        for i, check in enumerate(self.promotion.slices):
            if check.column not in self.features.categorical:
                raise ValueError(
                    f"promotion.slices.{i}.column: {check.column!r} is not a categorical feature"
                )
        return self

    @model_validator(mode="after")
    def _pii_is_no_feature(self) -> Settings:
        # A person's identifier in the model would leak through its splits and categories.
        contract = self.contract
        for name in contract.pii_columns:
            if name in (self.features.label, self.features.time_column):
                raise ValueError(
                    f"contract.columns.{name}: the label and the time column cannot be pii "
                    "(they are dropped or hashed at ingest)"
                )
            if name in self.features.columns and name not in contract.pii_features:
                raise ValueError(
                    f"contract.columns.{name}: a pii column is a feature; list it under "
                    "contract.pii_features to allow it, or remove it from features"
                )
        for name in contract.pii_features:
            if name not in self.features.categorical:
                raise ValueError(
                    f"contract.pii_features: {name!r} is not a categorical feature (hashed "
                    "values are strings)"
                )
        return self

    @model_validator(mode="after")
    def _fairness_attribute_is_a_feature(self) -> Settings:
        fairness = self.promotion.fairness
        if fairness is not None and fairness.attribute not in self.features.categorical:
            raise ValueError(
                f"promotion.fairness.attribute: {fairness.attribute!r} is not a categorical "
                f"feature, so it has no groups to compare "
                f"(categorical: {', '.join(self.features.categorical) or 'none'})"
            )
        return self

    @model_validator(mode="after")
    def _triggers_can_fire(self) -> Settings:
        drift = self.triggers.drift
        for name in drift.features if drift else ():
            if name not in self.features.columns:
                raise ValueError(
                    f"triggers.drift.features.{name}: {name!r} is not a feature, so its PSI "
                    f"never exists (features: {', '.join(self.features.columns)})"
                )
        for key in ("drift", "estimated_performance"):
            trigger = getattr(self.triggers, key)
            if trigger is not None and trigger.windows > self.monitoring.windows:
                raise ValueError(
                    f"triggers.{key}.windows: {trigger.windows} windows never fit in the "
                    f"{self.monitoring.windows} that monitoring.windows looks back"
                )
        return self

    def to_json(self) -> str:
        """The canonical serialised form, as passed to pipeline components."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Parse the form written by `to_json`."""
        return cls.model_validate_json(text)


class ConfigError(FlywheelError, ValueError):
    """The configuration is invalid; the message names each key path and reason."""


@dataclass(frozen=True)
class _Origin:
    where: str


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Iterable[str] = (),
) -> Settings:
    """Read flywheel.yaml, then apply FLYWHEEL_* variables, then `key.path=value` overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], _Origin] = {}
    source = Path(path) if path is not None else None
    if source is not None:
        data, origins = _read_yaml(source)
    for name, raw in sorted(env.items()):
        key = _env_key(name)
        if key is not None:
            _assign(data, key, _parse_scalar(raw), origins, _Origin(f"from env {name}"))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        dotted, raw = item.split("=", 1)
        key = tuple(part for part in dotted.strip().split(".") if part)
        if not key:
            raise ConfigError(f"--set {item!r}: the key path is empty")
        _assign(data, key, _parse_scalar(raw), origins, _Origin(f"from --set {dotted}"))
    try:
        return Settings.model_validate_json(json.dumps(data, default=_json_default))
    except ValidationError as error:
        raise ConfigError(_describe(error, source, origins)) from None


def _env_key(name: str) -> tuple[str, ...] | None:
    if not name.startswith(ENV_PREFIX) or name in OTHER_VARIABLES:
        return None
    key = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
    if key[0] not in Settings.model_fields:
        known = ", ".join(sorted(Settings.model_fields))
        raise ConfigError(
            f"environment variable {name}: {key[0]!r} is not a configuration section "
            f"(one of {known}; nested keys are joined by __, as in FLYWHEEL_MODEL__SEED)"
        )
    return key


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _json_default(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a configuration value")


def _assign(
    data: dict[str, Any],
    key: tuple[str, ...],
    value: Any,
    origins: dict[tuple[str, ...], _Origin],
    origin: _Origin,
) -> None:
    node = data
    for i, part in enumerate(key[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            if child is not None:
                dotted = ".".join(key[: i + 1])
                raise ConfigError(f"{dotted} ({origin.where}): is a value, not a section")
            child = node[part] = {}
        node = child
    node[key[-1]] = value
    origins[key] = origin


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], _Origin]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, not {type(data).__name__}"
        )
    origins: dict[tuple[str, ...], _Origin] = {}
    _record_lines(root, (), origins, path)
    return data, origins


def _record_lines(
    node: yaml.Node | None,
    key: tuple[str | int, ...],
    origins: dict[tuple[str, ...], _Origin],
    path: Path,
) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*key, str(key_node.value))
            origins[tuple(map(str, child))] = _Origin(f"{path}:{key_node.start_mark.line + 1}")
            _record_lines(value_node, child, origins, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*key, i)
            origins[tuple(map(str, child))] = _Origin(f"{path}:{item.start_mark.line + 1}")
            _record_lines(item, child, origins, path)


def _describe(
    error: ValidationError, source: Path | None, origins: dict[tuple[str, ...], _Origin]
) -> str:
    lines = [f"{source or 'the configuration'} is not valid:"]
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        dotted = ".".join(loc) or "(top level)"
        origin = _closest_origin(loc, origins)
        reason = item["msg"]
        if loc and loc[-1] == "[key]":
            # The key itself is wrong (a dict whose keys are constrained): name it, not "[key]".
            dotted = ".".join(loc[:-1])
            origin = _closest_origin(loc[:-1], origins)
            reason = f"not a valid key: {reason}"
        elif item["type"] == "extra_forbidden":
            reason = "unknown key"
        elif "input" in item and item["type"] != "missing" and not _is_section(item):
            reason = f"{reason} (got {item['input']!r})"
        where = f" ({origin.where})" if origin else ""
        lines.append(f"  {dotted}{where}: {reason}")
    return "\n".join(lines)


def _is_section(item: Any) -> bool:
    # A check across a whole section names what it found; echoing the section adds noise.
    return item["type"] == "value_error" and isinstance(item["input"], dict)


def _closest_origin(
    loc: tuple[str, ...], origins: dict[tuple[str, ...], _Origin]
) -> _Origin | None:
    for end in range(len(loc), 0, -1):
        origin = origins.get(loc[:end])
        if origin is not None:
            return origin
    # An unknown section set as a.b=... is recorded under its full path.
    return next((o for key, o in origins.items() if key[: len(loc)] == loc), None)


def json_schema() -> dict[str, Any]:
    """The JSON schema of flywheel.yaml."""
    return Settings.model_json_schema()
