"""Mergeable summaries: exact counts and a hash sample that merge to what one pass would give."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from flywheel import logformat, synthetic
from flywheel.config import Settings
from flywheel.contract import Contract
from flywheel.monitoring import summary
from flywheel.monitoring.summary import DaySummary, WindowSummary
from flywheel.monitoring.window import VersionReference

DAY = 86_400
START = 1_767_225_600  # a midnight, UTC


def _table(contract: Contract, rows: int, seed: int, *, start: float = START) -> pa.Table:
    """`rows` one-row requests over a day, with the contract's features and two scores."""
    rng = np.random.default_rng(seed)
    generator = Settings().data.generator
    frame = synthetic.generate_day(generator.start_date, generator).head(rows)
    entries = []
    for i, (_, row) in enumerate(frame.iterrows()):
        score = float(rng.uniform())
        entries.append(
            {
                "request_id": uuid.UUID(int=int(rng.integers(2**63))).hex,
                "time": start + (i * DAY) / rows,
                "latency_ms": float(rng.uniform(0.5, 5.0)),
                "features": list(contract.features),
                "inputs": [[None if row[f] != row[f] else row[f] for f in contract.features]],
                "outputs": [[1 - score, score]],
            }
        )
    return logformat.prediction_table(
        entries, list(contract.numeric), list(contract.categorical), 2
    )


def _keys(s: WindowSummary) -> list[tuple[int, int]]:
    return sorted(
        zip(s.sample.column("_key").to_pylist(), s.sample.column("_row").to_pylist(), strict=True)
    )


def _same(a: WindowSummary, b: WindowSummary) -> None:
    for name in (*summary._SUMS, "repeats", "latency", "numeric", "categorical", "threshold"):
        assert getattr(a, name) == getattr(b, name), name
    assert _keys(a) == _keys(b)


@pytest.fixture
def contract(reference: VersionReference) -> Contract:
    return reference.contract


def test_a_window_within_the_sample_keeps_every_row(contract: Contract) -> None:
    table = _table(contract, 500, seed=1)
    found = summary.reduce(table, contract, DAY, sample_rows=1000)
    (window,) = found.values()
    assert window.complete and window.sample.num_rows == 500 and window.rows == 500
    assert sum(window.numeric[next(iter(contract.numeric))]) + window.missing_inputs >= 500


@pytest.mark.parametrize("parts", [2, 7])
def test_summaries_of_parts_merge_to_the_summary_of_the_whole(
    contract: Contract, parts: int
) -> None:
    # given 3,000 rows, a sample of 1,000, and the rows split into files
    table = _table(contract, 3000, seed=2)
    whole = summary.reduce(table, contract, DAY, sample_rows=1000)[START]
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    # when each file is reduced on its own and the summaries merged, in any order
    pieces = [
        summary.reduce(table.slice(a, b - a), contract, DAY, sample_rows=1000)[START]
        for a, b in itertools.pairwise(bounds)
    ]
    merged = summary.merge_all(reversed(pieces))
    # then the counts and the sample are exactly the whole's
    assert merged is not None
    _same(merged, whole)
    assert not whole.complete and whole.sample.num_rows == 1000
    # and the sample is the rows of the smallest keys
    keys = np.sort(table.column("_key").to_numpy())
    assert whole.sample.column("_key").to_numpy().max() == keys[999]


def test_windows_split_a_file_by_the_rows_own_time(contract: Contract) -> None:
    table = _table(contract, 480, seed=3)
    found = summary.reduce(table, contract, 3600, sample_rows=1000)
    assert len(found) == 24 and sum(w.rows for w in found.values()) == 480
    assert all(start % 3600 == 0 for start in found)


def test_a_duplicated_request_is_counted_once_in_the_sample(contract: Contract) -> None:
    table = _table(contract, 200, seed=4)
    again = table.slice(0, 10)
    merged = summary.merge_all(
        summary.reduce(t, contract, DAY, sample_rows=1000)[START] for t in (table, again)
    )
    assert merged is not None
    assert merged.duplicates == 10 and merged.sample.num_rows == 200


@pytest.mark.parametrize("parts", [1, 3])
def test_repeats_are_counted_for_the_sampled_rows_however_the_rows_were_grouped(
    contract: Contract, parts: int
) -> None:
    # given 3,000 rows, each logged twice (the copies in another file), and a sample of 1,000
    table = _table(contract, 3000, seed=6)
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    files = [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)] * 2
    # when the files are reduced alone and merged, or all rows reduced at once
    merged = summary.merge_all(summary.reduce(f, contract, DAY, 1000)[START] for f in files)
    whole = summary.reduce(pa.concat_tables(files), contract, DAY, 1000)[START]
    # then both count one repeat for each sampled row, not for the rows left out
    assert merged is not None
    assert merged.duplicates == whole.duplicates == merged.sample.num_rows == 1000
    _same(merged, whole)
    # and the count is kept in the stored summary
    day = DaySummary(DAY, 1000, "abc", windows={START: merged})
    assert DaySummary.from_bytes(day.to_bytes()).windows[START].duplicates == 1000


def test_a_day_summary_is_stored_and_read_back_unchanged(contract: Contract) -> None:
    table = _table(contract, 1500, seed=5)
    day = DaySummary(3600, 1000, "abc", files={"predictions/m/v1/2026-01-01/x.parquet"})
    day.add(summary.reduce(table, contract, 3600, sample_rows=1000))
    day.skip(datetime.fromtimestamp(START, UTC), "unreadable", 2)
    back = DaySummary.from_bytes(day.to_bytes())
    assert back.files == day.files and back.skipped == day.skipped
    assert back.fingerprint == "abc" and set(back.windows) == set(day.windows)
    for start, window in day.windows.items():
        _same(back.windows[start], window)


def test_bytes_that_are_not_a_summary_are_refused() -> None:
    with pytest.raises(ValueError, match="not a monitoring summary"):
        DaySummary.from_bytes(b"PAR1 cut short")


def test_latency_percentiles_are_exact_when_complete_and_within_1pct_from_buckets(
    contract: Contract,
) -> None:
    table = _table(contract, 3000, seed=6)
    latencies = table.column("_latency_ms").to_numpy()
    exact = np.percentile(latencies, [50, 95, 99])
    complete = summary.reduce(table, contract, DAY, sample_rows=5000)[START]
    assert summary.latency_percentiles(complete, (50, 95, 99)) == pytest.approx(exact)
    sampled = summary.reduce(table, contract, DAY, sample_rows=1000)[START]
    found = summary.latency_percentiles(sampled, (50, 95, 99))
    assert found == pytest.approx(exact, rel=0.011)
