"""The base of every settings model, and the names and types the sections share."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ENV_PREFIX = "FLYWHEEL_"
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

# The learning problem and the metrics that judge a model of it; which task each metric fits is
# the model section's (METRIC_TASKS).
Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")
Metric = Literal[
    "roc_auc",
    "average_precision",
    "accuracy",
    "balanced_accuracy",
    "f1",
    "macro_f1",
    "weighted_f1",
    "log_loss",
    "rmse",
    "mae",
    "r2",
    "mape",
]
# Errors and losses: a smaller value is a better model.
LOWER_IS_BETTER: frozenset[Metric] = frozenset({"log_loss", "rmse", "mae", "mape"})


class Strict(BaseModel):
    """Base for every settings model: typed exactly, immutable, no unknown keys."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")
