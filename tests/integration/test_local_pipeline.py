"""The whole pipeline under kfp.local, driven through the `flywheel` command as a user would."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from flywheel import batches, synthetic
from flywheel.config import STEPS, load_settings
from flywheel.registry import Registry
from flywheel.storage import LocalStore
from flywheel.triggers import ledger as triggers

pytestmark = pytest.mark.integration

START = date(2026, 1, 1)
CONFIG = {
    "data": {
        "source": "batches",
        "window_days": 5,
        "generator": {"rows_per_day": 600, "change_day": 0},
    },
    "model": {"params": {"max_iter": 60}, "search": {"enabled": False}},
    "promotion": {"min_metric": 0.7, "max_regression": 0.1},
    "contract": {"min_rows": 50},
    "storage": {"uri": "store"},
    "pipeline": {"root": "pipeline-root"},
}


def flywheel(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flywheel.cli", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def add_day(project: Path, day: date, scenario: str = "stable") -> Path:
    settings = load_settings(project / "flywheel.yaml", env={})
    gen = settings.data.generator.model_copy(update={"scenario": scenario})
    batches.BatchSource(LocalStore(project / "batches")).write(
        day, synthetic.generate_day(day, gen)
    )
    return project / "batches" / f"{day}.parquet"


def cached(printed: str) -> set[str]:
    """The steps a run's lines say came from the cache ("ingest          cached")."""
    return set(re.findall(r"^(\S+) +cached$", printed, re.M))


def registry(project: Path) -> Registry:
    return Registry(LocalStore(project / "store"), "loan-default")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose first run put v1 in production."""
    project = tmp_path_factory.mktemp("project")
    (project / "flywheel.yaml").write_text(yaml.safe_dump(CONFIG))
    for day in synthetic.days(START, 5):
        add_day(project, day)
    result = flywheel(project, "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    project.joinpath("first-run.log").write_text(result.stdout)
    return project


@pytest.fixture
def project(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained project."""
    copy = tmp_path / "p"
    shutil.copytree(trained, copy)
    return copy


def test_first_run_registers_a_blessed_model_as_production(trained: Path) -> None:
    log = (trained / "first-run.log").read_text()
    assert "SUCCEEDED" in log and "Gate: BLESSED" in log
    assert "Registered loan-default v1" in log and "production is v1" in log
    assert registry(trained).resolve("production") == "v1"


def test_an_identical_second_run_is_served_from_the_cache(trained: Path) -> None:
    # (On the trained project itself: a copy has new inodes, so its batches count as new.)
    second = flywheel(trained, "run")
    assert second.returncode == 0, second.stdout[-2000:]
    # Production moved from nothing to v1, so the steps that compare with it run again.
    assert cached(second.stdout) == {"ingest", "train", "infra-validate"}
    third = flywheel(trained, "run")
    assert cached(third.stdout) == set(STEPS) - {"resolve", "register", "deploy"}
    assert [m.version for m in registry(trained).versions()] == ["v1"]


def test_new_batches_are_compared_against_production(project: Path) -> None:
    for day in synthetic.days(START + timedelta(days=5), 2):
        add_day(project, day)
    # when `flywheel watch` looks a week after v1, so that the weekly schedule fires
    # (without a canary: that is `flywheel run --deploy`'s, tested end to end in tests/e2e)
    created = datetime.fromisoformat(registry(project).manifest("v1").created_at)
    later = (created + timedelta(days=8)).isoformat()
    result = flywheel(project, "watch", "--once", "--now", later, "--no-rollout")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "decide: fired: schedule '0 3 * * 1': tick at" in result.stdout
    assert "Compared with production v1 on the newest batch" in result.stdout
    evaluation = json.loads(registry(project).read("v2", "evaluation.json"))
    assert evaluation["production"]["version"] == "v1"
    assert registry(project).resolve("production") == "v1"
    assert registry(project).resolve("candidate") == "v2"
    assert "rollout: off (--no-rollout)" in result.stdout
    # then the version it registered says why it was trained, and which decision said so
    shown = flywheel(project, "models", "show", "v2").stdout
    assert "trained because: schedule '0 3 * * 1': tick at" in shown
    record = next(line for line in result.stdout.splitlines() if line.startswith("  record "))
    assert f"trigger decision record {record.split()[-1]}" in shown
    # and the engine knows the run it started finished, so it is not in flight (beside the
    # `flywheel run` that registered v1, recorded too)
    runs = triggers.Ledger(LocalStore(project / "store"), "loan-default").runs()
    assert {r.started.origin for r in runs[:-1]} == {"run"}
    run = runs[-1]
    assert run.started.origin == "trigger"
    assert run.finished is not None and run.finished.succeeded


@pytest.mark.parametrize(
    ("scenario", "named"),
    [
        ("broken_nulls", "credit_score | null rate"),
        ("broken_types", "credit_score | type | numeric"),
        ("broken_missing_column", "tenure_months | column present | present | missing"),
        ("broken_renamed_column", "creditScore | no unexpected columns"),
    ],
)
def test_a_broken_upstream_batch_fails_the_run_and_writes_nothing(
    project: Path, scenario: str, named: str
) -> None:
    # given production v1 and a broken batch for the next day
    add_day(project, START + timedelta(days=5), scenario)
    # when the pipeline runs, then it fails at validate and names the column and check
    result = flywheel(project, "run")
    assert result.returncode == 1
    assert "FAILED at step validate" in result.stdout
    assert named in result.stdout
    assert "No model version was written; the production alias is unchanged." in result.stdout
    # and nothing was written to the registry
    assert [m.version for m in registry(project).versions()] == ["v1"]
    assert registry(project).resolve("production") == "v1"


def test_a_failed_run_does_not_block_the_next(project: Path) -> None:
    # given a run that failed on a broken batch
    day = START + timedelta(days=5)
    broken = add_day(project, day, "broken_missing_column")
    assert flywheel(project, "run").returncode == 1
    # when upstream re-delivers that day correctly and the pipeline runs again
    broken.unlink()
    add_day(project, day)
    again = flywheel(project, "run")
    # then nothing cached from the failed run gets in the way
    assert again.returncode == 0, again.stdout[-3000:]
    assert "Registered loan-default v2" in again.stdout


def test_an_unknown_category_after_production_names_the_value(project: Path) -> None:
    add_day(project, START + timedelta(days=5), "new_category")
    result = flywheel(project, "run")
    assert result.returncode == 1
    assert "channel | allowed values" in result.stdout and "mobile" in result.stdout


def test_a_malformed_config_fails_before_any_step(project: Path) -> None:
    (project / "flywheel.yaml").write_text(
        (project / "flywheel.yaml").read_text().replace("window_days: 5", "window_days: 1")
    )
    result = flywheel(project, "run")
    assert result.returncode == 2
    assert "data.window_days (flywheel.yaml:" in result.stderr
    assert "greater than or equal to 2" in result.stderr
    assert [m.version for m in registry(project).versions()] == ["v1"]
