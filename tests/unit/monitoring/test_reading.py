"""Reading the prediction log into summaries: the windows a look reads, and the files it
reduces (a look's summaries stored, the next reads only what was written since: in
test_monitor.py, through `monitor`)."""

from __future__ import annotations

from datetime import UTC, datetime

from flywheel.monitoring.reading import Pool, windows


def test_windows_are_the_complete_ones_before_until() -> None:
    until = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    assert windows(until, "hour", 2) == [
        (datetime(2026, 3, 2, 8, tzinfo=UTC), datetime(2026, 3, 2, 9, tzinfo=UTC)),
        (datetime(2026, 3, 2, 9, tzinfo=UTC), datetime(2026, 3, 2, 10, tzinfo=UTC)),
    ]
    assert windows(until, "day", 1) == [
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    ]


def test_a_pools_files_are_dealt_out_one_share_a_worker() -> None:
    # given a pool of three workers (no processes needed to deal) and seven files
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as executor:
        pool = Pool(executor, 3)
        files = list(range(7))
        # when they are dealt out
        shares = pool.shares(files)  # type: ignore[arg-type]
    # then every file is in exactly one share, and no worker gets an empty one
    assert sorted(f for share in shares for f in share) == files
    assert [len(share) for share in shares] == [3, 2, 2]
    with ThreadPoolExecutor(1) as executor:
        assert Pool(executor, 3).shares([1]) == [[1]]  # type: ignore[list-item]
