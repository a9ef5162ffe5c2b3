from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from kfp import dsl

from flywheel import tasks
from flywheel.components.validate.component import validate
from flywheel.config import Settings
from flywheel.contract import ContractViolation


def _outputs(tmp_path: Path) -> dict[str, dsl.Artifact]:
    return {
        "contract": dsl.Artifact(name="contract", uri=str(tmp_path / "contract"), metadata={}),
        "report": dsl.Markdown(name="report", uri=str(tmp_path / "report"), metadata={}),
        "drift": dsl.Metrics(name="drift", uri=str(tmp_path / "drift"), metadata={}),
    }


def test_logic_passes_clean_data_and_logs_drift(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    make_batches(settings, 4)
    tasks.ingest(settings.to_json(), "", tmp_path / "w")
    outputs = _outputs(tmp_path)
    window = dsl.Dataset(name="window", uri=str(tmp_path / "w"), metadata={})
    validate.python_func(config=settings.to_json(), window=window, baseline="", **outputs)
    assert "PASSED" in (tmp_path / "report").read_text()
    assert "psi_credit_score" in outputs["drift"].metadata
    assert '"numeric"' in (tmp_path / "contract").read_text()


def test_logic_fails_on_a_broken_batch_after_writing_the_report(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    make_batches(settings, 4, scenario="broken_missing_column")
    tasks.ingest(settings.to_json(), "", tmp_path / "w")
    window = dsl.Dataset(name="window", uri=str(tmp_path / "w"), metadata={})
    with pytest.raises(ContractViolation, match="tenure_months: column present"):
        validate.python_func(
            config=settings.to_json(), window=window, baseline="", **_outputs(tmp_path)
        )
    assert "| 2026-01-04 | tenure_months | column present |" in (tmp_path / "report").read_text()


def test_under_kfp_local(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    run_component: Callable[..., Path],
    tmp_path: Path,
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    tasks.ingest(settings.to_json(), "", tmp_path / "w")
    task_dir = run_component(
        validate,
        artifacts={"window": (dsl.Dataset, tmp_path / "w")},
        config=settings.to_json(),
        baseline="",
    )
    assert (task_dir / "report").read_text().startswith("# Data validation: PASSED")
