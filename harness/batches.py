"""Generated batches and the contract policy they are checked with (the contract's and
validation's unit tests)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from flywheel.config import ColumnTags, ContractSettings, FeatureSettings, GeneratorSettings
from flywheel.synthetic import generate_day

FEATURES = FeatureSettings()
POLICY = ContractSettings()
START = date(2026, 1, 1)


def generated_days(n: int, **generator: object) -> list[tuple[str, pd.DataFrame]]:
    """`n` days of 800 generated rows from START, by day name; the scenario from day 0."""
    settings = GeneratorSettings(rows_per_day=800, change_day=0, **generator)  # type: ignore[arg-type]
    return [
        (str(START + timedelta(i)), generate_day(START + timedelta(i), settings)) for i in range(n)
    ]


def policy_tagging(**columns: ColumnTags) -> ContractSettings:
    """The contract policy with these column tags."""
    return POLICY.model_copy(update={"columns": columns})
