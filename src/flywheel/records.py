"""The base of every record Flywheel writes and reads back: an evaluation, a contract, a report."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """Immutable, with no unknown keys; unlike config.Strict not strict, so a record's values
    are coerced as they always were when it is built or read back from the store."""

    model_config = ConfigDict(frozen=True, extra="forbid")
