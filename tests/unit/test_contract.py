"""Data contracts: inference, structural and statistical checks, drift findings, and the report."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from flywheel.config import ContractSettings, FeatureSettings, GeneratorSettings
from flywheel.contract import Contract, check_batch, infer_contract, validate_window
from flywheel.synthetic import generate_day

FEATURES = FeatureSettings()
POLICY = ContractSettings()
START = date(2026, 1, 1)


def _days(n: int, **generator: object) -> list[tuple[str, pd.DataFrame]]:
    settings = GeneratorSettings(rows_per_day=800, change_day=0, **generator)  # type: ignore[arg-type]
    return [
        (str(START + timedelta(i)), generate_day(START + timedelta(i), settings)) for i in range(n)
    ]


@pytest.fixture(scope="module")
def contract() -> Contract:
    return infer_contract(_days(5), FEATURES, bins=10)


def test_inferred_contract_profiles_every_feature(contract: Contract) -> None:
    assert contract.features == FEATURES.columns
    assert set(contract.categorical["region"].fractions) == {"north", "south", "east", "west"}
    assert contract.numeric["credit_score"].min >= 300
    assert len(contract.numeric["income"].fractions) == len(contract.numeric["income"].edges) + 1
    assert 0.15 < contract.positive_rate < 0.4
    assert Contract.from_json(contract.to_json()) == contract


def test_a_clean_batch_passes(contract: Contract) -> None:
    _, frame = _days(6)[-1]
    result = check_batch(frame, contract, POLICY, "d6")
    assert [f for f in result.findings if f.severity == "error"] == []
    assert max(result.psi.values()) < 0.1


@pytest.mark.parametrize(
    ("scenario", "column", "check"),
    [
        ("broken_nulls", "credit_score", "null rate"),
        ("broken_types", "credit_score", "type"),
        ("broken_missing_column", "tenure_months", "column present"),
        ("broken_renamed_column", "creditScore", "no unexpected columns"),
        ("broken_renamed_column", "credit_score", "column present"),
        ("new_category", "channel", "allowed values"),
    ],
)
def test_each_broken_batch_names_the_failing_column_and_check(
    contract: Contract, scenario: str, column: str, check: str
) -> None:
    _, frame = _days(1, scenario=scenario)[0]
    result = check_batch(frame, contract, POLICY, "bad")
    errors = {(f.column, f.check) for f in result.findings if f.severity == "error"}
    assert (column, check) in errors


def test_unseen_categories_can_be_a_warning(contract: Contract) -> None:
    _, frame = _days(1, scenario="new_category")[0]
    lenient = POLICY.model_copy(update={"unseen_categories": "warn"})
    result = check_batch(frame, contract, lenient, "d")
    assert not [f for f in result.findings if f.severity == "error"]
    assert any("mobile" in f.found for f in result.findings if f.severity == "warning")


def test_out_of_range_values_and_too_few_rows(contract: Contract) -> None:
    _, frame = _days(1)[0]
    frame = frame.head(40).copy()
    frame.loc[frame.index[:10], "age"] = 400
    errors = {f.check for f in check_batch(frame, contract, POLICY, "d").findings}
    assert {"range", "rows"} <= errors


def test_label_shift_is_reported_with_the_configured_severity(contract: Contract) -> None:
    _, frame = _days(1, scenario="label_shift")[0]
    warn = check_batch(frame, contract, POLICY, "d").findings
    strict = check_batch(
        frame, contract, POLICY.model_copy(update={"label_balance": "error"}), "d"
    ).findings
    assert [f.severity for f in warn if f.check == "label balance"] == ["warning"]
    assert [f.severity for f in strict if f.check == "label balance"] == ["error"]


def test_covariate_drift_raises_psi_and_can_stop_the_run(contract: Contract) -> None:
    settings = GeneratorSettings(rows_per_day=800, change_day=0, scenario="covariate_drift")
    frame = generate_day(START + timedelta(days=30), settings)
    policy = POLICY.model_copy(update={"drift": POLICY.drift.model_copy(update={"psi_fail": 0.5})})
    result = check_batch(frame, contract, policy, "late")
    assert result.psi["credit_score"] > 0.5
    assert ("credit_score", "drift (PSI)", "error") in {
        (f.column, f.check, f.severity) for f in result.findings
    }


def test_the_report_names_batch_column_and_check(contract: Contract) -> None:
    days = _days(3)
    days[1] = (days[1][0], days[1][1].drop(columns=["tenure_months"]))
    result = validate_window(days, contract, POLICY, "test reference", train=days[0][1])
    assert not result.passed
    report = result.markdown()
    assert "# Data validation: FAILED" in report
    assert f"| {days[1][0]} | tenure_months | column present | present | missing |" in report
    assert "KS (train vs newest)" in report
    assert "tenure_months: column present" in result.summary()
