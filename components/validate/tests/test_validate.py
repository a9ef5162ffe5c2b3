from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kfp import dsl

from flywheel.components.validate.component import validate
from flywheel.contract import Contract
from flywheel.findings import ContractViolation
from harness.steps import Ingested, artifact, assert_used, step_outputs


def outputs(tmp_path: Path) -> dict[str, Any]:
    return {
        "contract": artifact(dsl.Artifact, tmp_path / "contract"),
        "report": artifact(dsl.Markdown, tmp_path / "report"),
        "drift": artifact(dsl.Metrics, tmp_path / "drift"),
        "usage": artifact(dsl.Metrics, tmp_path / "usage"),
    }


def assert_passed(contract: Path, report: Path, drift: dict[str, Any], window: Ingested) -> None:
    """The report passes, the contract is profiled from the two training batches, and the
    newest batch's drift is logged for every feature."""
    assert report.read_text().startswith("# Data validation: PASSED")
    profiled = Contract.from_json(contract.read_text())
    assert profiled.batches == ("2026-01-01", "2026-01-02") and profiled.rows == 1200
    assert profiled.features == window.settings.features.columns
    assert set(drift) == {*(f"psi_{n}" for n in window.settings.features.columns), "warnings"}


def test_logic_passes_clean_data_and_logs_drift(window: Ingested, tmp_path: Path) -> None:
    out = outputs(tmp_path)
    validate.python_func(
        config=window.config, window=artifact(dsl.Dataset, window.path), baseline="", **out
    )
    assert_passed(tmp_path / "contract", tmp_path / "report", out["drift"].metadata, window)
    assert out["contract"].metadata["reference"].startswith("profiled from this window's")


def test_logic_fails_on_a_broken_batch_after_writing_the_report(
    make_window: Callable[..., Ingested], tmp_path: Path
) -> None:
    window = make_window(days=4, scenario="broken_missing_column")
    with pytest.raises(ContractViolation, match="tenure_months: column present"):
        validate.python_func(
            config=window.config,
            window=artifact(dsl.Dataset, window.path),
            baseline="",
            **outputs(tmp_path),
        )
    assert "| 2026-01-04 | tenure_months | column present |" in (tmp_path / "report").read_text()


def test_under_kfp_local(window: Ingested, run_component: Callable[..., Path]) -> None:
    task_dir = run_component(
        validate,
        artifacts={"window": artifact(dsl.Dataset, window.path)},
        config=window.config,
        baseline="",
    )
    metadata = step_outputs(task_dir).metadata
    assert_passed(task_dir / "contract", task_dir / "report", metadata["drift"], window)
    assert metadata["contract"]["reference"].startswith("profiled from this window's")
    assert_used(task_dir)
