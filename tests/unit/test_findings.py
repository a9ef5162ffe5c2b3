"""A window's findings and their report: what a person reads in the Kubeflow UI and in logs,
and the error that stops a run."""

from __future__ import annotations

import pytest

from flywheel.contract import Contract, ContractChange, infer_contract
from flywheel.errors import FlywheelError
from flywheel.findings import (
    BatchCheck,
    ContractViolation,
    Finding,
    Severity,
    ValidationResult,
)
from flywheel.validation import validate_window
from harness.batches import FEATURES, POLICY, generated_days


@pytest.fixture(scope="module")
def contract() -> Contract:
    return infer_contract(generated_days(5), FEATURES, bins=10)


def test_the_report_names_batch_column_and_check(contract: Contract) -> None:
    days = generated_days(3)
    days[1] = (days[1][0], days[1][1].drop(columns=["tenure_months"]))
    result = validate_window(days, contract, POLICY, "test reference", train=days[0][1])
    assert not result.passed
    report = result.markdown()
    assert "# Data validation: FAILED" in report
    assert f"| {days[1][0]} | tenure_months | column present | present | missing |" in report
    assert "KS (train vs newest)" in report
    assert "tenure_months: column present" in result.summary()


def _finding(batch: str, column: str | None, severity: Severity, found: str = "3") -> Finding:
    return Finding(
        batch=batch,
        column=column,
        check="null rate",
        expected="at most 1",
        found=found,
        severity=severity,
    )


def test_errors_stop_the_run_and_warnings_do_not() -> None:
    # given one batch with an error and a warning, and one with a warning only
    result = ValidationResult(
        reference="v1",
        batches=(
            BatchCheck(
                batch="d1",
                rows=80,
                findings=(_finding("d1", "age", "error"), _finding("d1", None, "warning")),
                psi={"age": 0.02},
            ),
            BatchCheck(batch="d2", rows=90, findings=(_finding("d2", "age", "warning"),), psi={}),
        ),
    )
    # then only the error fails it, and the summary has one line for it
    assert not result.passed
    assert [f.batch for f in result.warnings] == ["d1", "d2"]
    assert result.summary() == "batch d1: column age: null rate: expected at most 1, found 3"
    # and the error that stops the run is a FlywheelError naming every failing check
    error = ContractViolation(result)
    assert isinstance(error, FlywheelError) and error.result is result
    assert str(error) == f"data contract violated (1 error(s)):\n{result.summary()}"
    # and the report counts each batch's errors and warnings
    report = result.markdown()
    assert report.startswith("# Data validation: FAILED")
    assert "| d1 | 80 | 1 | 1 |" in report and "| d2 | 90 | 0 | 1 |" in report
    assert "| d1 | (table) | null rate | at most 1 | 3 |" in report


def test_the_report_escapes_table_cells_and_lists_the_contract_changes() -> None:
    # given a finding whose text holds a pipe and a line break, and one contract change
    change = ContractChange(column="dti", change="added", production="–", candidate="numeric")
    result = ValidationResult(
        reference="v1",
        batches=(
            BatchCheck(
                batch="d1", rows=10, findings=(_finding("d1", "a", "error", "x|y\nz"),), psi={}
            ),
        ),
        changes=(change,),
    )
    report = result.markdown()
    # then the cell stays one cell on one line, and the change has its row
    assert "| x\\|y z |" in report
    assert "| dti | added | – | numeric |" in report
    # and with no changes against production's, the report says so
    same = result.model_copy(update={"changes": ()}).markdown()
    assert "None: the same columns, types and tags as production's contract." in same
