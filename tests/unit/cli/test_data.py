"""`flywheel data`: generate batches after the newest, and list them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.cli import Flywheel, own_table


def test_generate_then_next_continues_after_the_newest_day(
    flywheel: Flywheel, config_file: Path, tmp_path: Path
) -> None:
    # given an empty project, when two days are generated from a chosen start
    first = flywheel(
        "-c", str(config_file), "data", "generate", "--days", "2", "--start", "2026-03-01"
    )
    assert first.code == 0, first.text
    assert "wrote 2 stable batch(es) 2026-03-01..2026-03-02, 600 rows each" in first.out
    # and then one more with --next, then it follows the newest
    following = flywheel("-c", str(config_file), "data", "generate", "--next", "1")
    assert "2026-03-03..2026-03-03" in following.out
    listed = flywheel("-c", str(config_file), "data", "list")
    assert listed.out.splitlines()[-1] == f"3 batch(es) in {tmp_path / 'batches'}"
    assert listed.out.splitlines()[0].startswith("2026-03-01  ")


def test_generate_refuses_an_unknown_format(flywheel: Flywheel, config_file: Path) -> None:
    result = flywheel("-c", str(config_file), "data", "generate", "--format", "xlsx")
    assert (result.code, result.err.strip()) == (
        1,
        "error: --format must be parquet or csv, not 'xlsx'",
    )


def test_generate_refuses_an_unknown_scenario_as_configuration(
    flywheel: Flywheel, config_file: Path
) -> None:
    result = flywheel("-c", str(config_file), "data", "generate", "--scenario", "chaos")
    assert result.code == 2
    assert "data.generator.scenario (from --set data.generator.scenario)" in result.err


def test_split_makes_dated_batches_with_times_and_never_rewrites_them(
    flywheel: Flywheel, tmp_path: Path
) -> None:
    config = own_table(tmp_path, [0, 1])
    first = flywheel(
        "-c", str(config), "data", "split", str(tmp_path / "table.csv"), "--rows-per-day", "60"
    )
    assert first.code == 0, first.text
    assert "wrote 4 batch(es) 2026-01-01..2026-01-04 of 240 rows" in first.out
    day = pd.read_parquet(tmp_path / "batches" / "2026-01-02.parquet")
    assert len(day) == 60 and (day["event_time"].dt.date == pd.Timestamp("2026-01-02").date()).all()
    again = flywheel("-c", str(config), "data", "split", str(tmp_path / "table.csv"))
    assert again.code != 0 and "already has batches for 2026-01-01..2026-01-03" in again.text
