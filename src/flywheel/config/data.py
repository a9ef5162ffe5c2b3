"""The data: where dated batches come from, the store they are kept in, and their columns."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from flywheel.config.base import Column, Strict

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


# The label each synthetic world writes: features.label must name it.
WORLD_LABELS = {"binary": "defaulted", "multiclass": "risk_grade", "regression": "days_late"}


class GeneratorSettings(Strict):
    """How `flywheel data generate` writes synthetic daily batches."""

    task: Literal["binary", "multiclass", "regression"] = Field(
        default="binary",
        description="The world's label: binary `defaulted`; multiclass `risk_grade` (low, "
        "medium, high); regression `days_late` (days a repayment is late). features.label "
        "must name it",
    )
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
