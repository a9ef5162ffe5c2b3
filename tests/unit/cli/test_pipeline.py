"""`flywheel run`, `compile` and `submit`: a failing run says which file and why, in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.config import Settings
from flywheel.registry import Registry
from tests.unit.cli.conftest import Flywheel, write_config


@pytest.fixture
def project(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> tuple[Settings, Path]:
    """Three good days of a small project, and its flywheel.yaml (window of three days)."""
    settings = small_settings("data.window_days=3")
    make_batches(settings, 3)
    return settings, write_config(settings, tmp_path / "flywheel.yaml")


def test_an_empty_batch_is_named_with_the_reason_and_nothing_is_registered(
    flywheel: Flywheel, project: tuple[Settings, Path]
) -> None:
    # given an empty file delivered as the newest day
    settings, config = project
    empty = Path(settings.data.source) / "2026-01-04.csv"
    empty.write_bytes(b"")
    # when the pipeline runs
    result = flywheel("-c", str(config), "run")
    # then the summary names the file and why, with no traceback anywhere
    assert result.code == 1
    assert (
        "FAILED at step validate after" in result.out
        and f"batch {empty} is not readable CSV: No columns to parse from file" in result.out
    )
    assert "Traceback" not in result.text
    assert Registry.from_settings(settings).versions() == []


def test_strings_in_a_numeric_column_are_named_with_their_share_and_an_example(
    flywheel: Flywheel,
    project: tuple[Settings, Path],
    make_batches: Callable[..., list[str]],
) -> None:
    # given a newest batch whose credit_score arrives as text ("663pts", and some "n/a")
    settings, config = project
    make_batches(
        settings,
        1,
        start=settings.data.generator.start_date.replace(day=4),
        scenario="broken_types",
        change_day=0,
    )
    result = flywheel("-c", str(config), "run")
    assert result.code == 1
    assert "FAILED at step validate" in result.out
    row = next(line for line in result.out.splitlines() if "| credit_score | type |" in line)
    assert "600 of 600 values (100.0%) are not numbers, e.g. '" in row
    assert "pts'" in row
    assert "null" not in row


def test_compile_writes_the_package(flywheel: Flywheel, tmp_path: Path) -> None:
    result = flywheel("compile", "--out", str(tmp_path))
    assert result.code == 0
    assert (tmp_path / "training.yaml").read_text().startswith("# PIPELINE DEFINITION")


def test_submit_needs_an_endpoint_and_an_s3_store(flywheel: Flywheel, config_file: Path) -> None:
    no_host = flywheel("-c", str(config_file), "submit")
    assert (
        no_host.err.strip() == "error: no KFP endpoint: pass --host, set KFP_HOST or pipeline.host"
    )
    local = flywheel("-c", str(config_file), "submit", "--host", "http://127.0.0.1:1")
    assert local.code == 1
    assert "a local directory: a cluster run needs an s3:// store" in local.err
