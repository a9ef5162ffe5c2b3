"""The pipeline's steps called in one process: the logic tier of the whole pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flywheel import batches, predictor, runs, synthetic, tasks
from flywheel.batches import PrivacyError
from flywheel.compiled import CompiledScorer
from flywheel.config import Settings
from flywheel.findings import ContractViolation
from flywheel.registry import Registry
from flywheel.storage import LocalStore


def _run(settings: Settings, work: Path, run_id: str = "r1", **why: str) -> tuple[str, bool]:
    """Every step in order, in this process; returns (version or '', blessed)."""
    run = runs.run_in_process(settings, work, run_id=run_id, git_commit="abc123", **why)
    return run.version, bool(run.blessed)


def test_first_run_registers_production_and_second_compares(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    # given five days of stable data, an empty registry and a lenient regression
    # allowance (two small models differ by a few points of AUC by chance)
    settings = small_settings("promotion.max_regression=0.1")
    make_batches(settings, 5)
    # when the pipeline runs
    version, blessed = _run(settings, tmp_path / "run1")
    # then the model is registered as production with its lineage
    registry = Registry.from_settings(settings)
    assert blessed and version == "v1"
    assert registry.resolve("production") == "v1" and registry.resolve("candidate") == "v1"
    # by the run that registered it, as the alias revisions say
    assert [(h.actor, h.reason) for h in registry.history("production")] == [
        ("run r1", "first model: nothing was in production")
    ]
    assert [(h.actor, h.reason) for h in registry.history("candidate")] == [
        ("run r1", "blessed by the gate")
    ]
    lineage = json.loads(registry.read("v1", "lineage.json"))
    assert lineage["git_commit"] == "abc123" and lineage["pipeline_run_id"] == "r1"
    assert lineage["trigger"] == {"reason": "manual run", "decision": None}
    assert lineage["data"]["content_hash"] and lineage["packages"]["scikit-learn"] == "1.9.1"
    assert sorted(registry.manifest("v1").files) == sorted(
        [
            "model.joblib",
            "contract.json",
            "evaluation.json",
            "evaluation.html",
            "decision.json",
            "validation.md",
            "metrics.json",
            "lineage.json",
            "scorer.compiled",
        ]
    )
    # and serving will score through the compiled trees, checked against scikit-learn
    assert lineage["scorer"]["scorer"] == "compiled treelite"
    assert lineage["scorer"]["max_abs_difference"] <= 1e-9
    # and given two new days, when it runs again, then the candidate is compared with v1
    make_batches(settings, 2, start=settings.data.generator.start_date.replace(day=6))
    why = {"reason": "2 new batches since the last run", "decision": "triggers/decisions/d1.json"}
    version2, _ = _run(settings, tmp_path / "run2", run_id="r2", **why)
    evaluation = json.loads((tmp_path / "run2" / "evaluation.json").read_text())
    assert evaluation["production"]["version"] == "v1"
    assert version2 == "v2" and registry.resolve("production") == "v1"
    assert registry.resolve("candidate") == "v2"
    assert (registry.alias("candidate").actor, len(registry.history("production"))) == (  # type: ignore[union-attr]
        "run r2",
        1,
    )
    # and its lineage says why that run started
    assert json.loads(registry.read("v2", "lineage.json"))["trigger"] == why


@pytest.mark.parametrize(
    "scenario", ["broken_nulls", "broken_types", "broken_missing_column", "broken_renamed_column"]
)
def test_broken_upstream_stops_before_training_and_writes_nothing(
    scenario: str,
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    settings = small_settings()
    make_batches(settings, 5, scenario=scenario)
    with pytest.raises(ContractViolation) as error:
        _run(settings, tmp_path)
    assert "2026-01-05" in str(error.value)
    assert (tmp_path / "validation.md").read_text().startswith("# Data validation: FAILED")
    assert Registry.from_settings(settings).versions() == []


def test_a_new_category_after_production_stops_the_run(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings("data.generator.change_day=5")
    make_batches(settings, 5)
    _run(settings, tmp_path / "a")
    make_batches(
        settings,
        1,
        start=settings.data.generator.start_date.replace(day=6),
        scenario="new_category",
    )
    with pytest.raises(ContractViolation, match=r"channel: allowed values"):
        _run(settings, tmp_path / "b", run_id="r2")
    registry = Registry.from_settings(settings)
    assert [m.version for m in registry.versions()] == ["v1"] and registry.resolve(
        "production"
    ) == "v1"


def test_infra_validation_refuses_a_mismatched_serving_pin(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    config = settings.to_json()
    tasks.ingest(config, "", tmp_path / "w")
    tasks.train(config, tmp_path / "w", tmp_path / "m", tmp_path / "h")
    monkeypatch.setitem(predictor.SERVING_PINS, "scikit-learn", "0.0.1")
    with pytest.raises(predictor.InfraValidationError, match=r"serving pins 0\.0\.1"):
        tasks.infra_validate(config, tmp_path / "m", tmp_path / "w")
    monkeypatch.setitem(predictor.SERVING_PINS, "scikit-learn", "1.9.1")
    (tmp_path / "m").write_bytes(b"corrupt")
    with pytest.raises(predictor.InfraValidationError, match="cannot load the model"):
        tasks.infra_validate(config, tmp_path / "m", tmp_path / "w")


def test_a_compiled_scorer_that_disagrees_is_refused_and_the_version_still_registers(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a compiled scorer that is off by 1e-6 from scikit-learn
    settings = small_settings()
    make_batches(settings, 3)
    honest = CompiledScorer.outputs
    monkeypatch.setattr(
        CompiledScorer,
        "outputs",
        lambda self, frame: honest(self, frame) + np.array([1e-6, -1e-6]),
    )
    config = settings.to_json()
    tasks.ingest(config, "", tmp_path / "w")
    tasks.train(config, tmp_path / "w", tmp_path / "m", tmp_path / "h")
    # when infra-validate checks it, then it reports the refusal without failing the step
    checked = tasks.infra_validate(config, tmp_path / "m", tmp_path / "w")["scorer"]
    assert (
        checked["scorer"] == "scikit-learn"
        and "differs from scikit-learn by 1e-06" in checked["reason"]
    )
    # and when the pipeline registers the model, there is no compiled artifact and the
    # lineage says why serving keeps scikit-learn
    version, _ = _run(settings, tmp_path / "run")
    registry = Registry.from_settings(settings)
    assert "scorer.compiled" not in registry.manifest(version).files
    scorer = json.loads(registry.read(version, "lineage.json"))["scorer"]
    assert scorer["scorer"] == "scikit-learn" and "above 1e-09" in scorer["reason"]


def _plant_ssn(settings: Settings, days: int) -> None:
    """The generator's batches with a column of social security numbers."""
    source = batches.BatchSource(LocalStore(settings.data.source))
    for day in synthetic.days(settings.data.generator.start_date, days):
        frame = synthetic.generate_day(day, settings.data.generator)
        source.write(day, frame.assign(ssn=[f"900-{i % 100:02d}-{i:04d}" for i in frame.index]))


def test_validate_refuses_a_column_from_an_unlisted_source_even_once_ingest_dropped_it(
    small_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # given sources allowed for every column but ssn, a pii column that ingest drops
    columns = ["event_time", "defaulted", *Settings().features.columns]
    settings = small_settings(
        "data.generator.rows_per_day=200",
        "contract.allowed_sources=[bureau]",
        "contract.columns.ssn.pii=true",
        *(f"contract.columns.{name}.source=bureau" for name in columns),
    )
    _plant_ssn(settings, 3)
    config = settings.to_json()
    # when the window is ingested and validated
    tasks.ingest(config, "", tmp_path / "w")
    with pytest.raises(ContractViolation) as refused:
        tasks.validate(config, tmp_path / "w", "", tmp_path / "c", tmp_path / "v.md")
    # then each batch is refused naming ssn and its missing source, and nothing else failed
    assert {(f.column, f.check, f.found) for f in refused.value.result.errors} == {
        ("ssn", "source", "no source tag")
    }
    assert (
        "| ssn | source | a source among bureau | no source tag |"
        in (tmp_path / "v.md").read_text()
    )
    # and with its source tagged and allowed, the same window passes
    allowed = small_settings(
        "data.generator.rows_per_day=200",
        "contract.allowed_sources=[bureau, crm]",
        "contract.columns.ssn.pii=true",
        "contract.columns.ssn.source=crm",
        *(f"contract.columns.{name}.source=bureau" for name in columns),
    )
    tasks.validate(allowed.to_json(), tmp_path / "w", "", tmp_path / "c", tmp_path / "v.md")


def test_hashing_pii_without_its_salt_is_one_clear_error(
    small_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PII_SALT", raising=False)
    settings = small_settings(
        "contract.columns.ssn.pii=true", "contract.pii=hash", "contract.pii_salt_env=PII_SALT"
    )
    _plant_ssn(settings, 2)
    with pytest.raises(PrivacyError, match=r"^contract\.pii is hash, but PII_SALT .* is not set"):
        tasks.ingest(settings.to_json(), "", tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_validate_refuses_a_trigger_the_inferred_task_cannot_have() -> None:
    # given an accuracy floor, no task said, and a label that turns out to be a regression's
    from flywheel.problem import Problem, ProblemError

    settings = Settings.model_validate({"triggers": {"performance": {"floor": 0.8}}})
    learned = Problem(task="regression", label="price", inferred=True)
    # when validate checks the settings against it, then the trigger's key is named
    with pytest.raises(ProblemError, match=r"triggers\.performance\.floor: lower rmse is better"):
        tasks.check_problem(settings, learned)
