"""The data contract: how far a batch may stray, and each column's origin and privacy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flywheel.config.base import ENV_PREFIX, OTHER_VARIABLES, Column, Fraction, Name, Strict


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

    null_rate_tolerance: Fraction = Field(
        default=0.05,
        description="How far a healthy batch's null rate may rise above the reference's "
        "(at the upper end of what its rows allow)",
    )
    range_tolerance: float = Field(
        default=0.25, ge=0, description="Slack on the reference's min..max, a share of its width"
    )
    max_out_of_range_fraction: Fraction = Field(
        default=0.01,
        description="The rate at which a healthy batch's values may fall outside the range and "
        "its slack (never below 2/(m+1) for a range profiled from m values)",
    )
    unseen_categories: Literal["error", "warn"] = Field(
        default="error",
        description="error: more values unseen in training than a healthy batch would show "
        "stop the run, fewer are a warning; warn: all are a warning",
    )
    false_block_rate: float = Field(
        default=0.01,
        gt=0,
        le=0.5,
        description="The most often the range, null-rate and unseen-category checks (and "
        "label balance when it is an error) may block a healthy batch, split evenly over them "
        "(two per feature, one for the label)",
    )
    label_balance_tolerance: Fraction = Field(
        default=0.15,
        description="How far a class's share (binary: the positive rate) may move from the "
        "reference's; a batch is flagged only when its share also moved further than a "
        "healthy batch of its size would",
    )
    label_balance: Literal["error", "warn"] = Field(
        default="warn",
        description="error: a shifted label balance stops the run (and takes its share of "
        "false_block_rate); warn: it is a warning",
    )
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
