"""Window reports kept between looks: reused only while every input of the window is the same,
and a look with the cache gives what a look without it gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from flywheel import logformat
from flywheel.config import Settings
from flywheel.monitoring.cache import WindowCache, reference_fingerprint, window_key
from flywheel.monitoring.monitor import MonitorResult, monitor
from flywheel.monitoring.window import VersionReference, WindowReport
from flywheel.registry import PRODUCTION, Registry, stamped_by
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from harness.traffic import monitored_in, parquet_traffic

# Two hour windows; the traffic is in the second, labels may come a day after it.
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
UNTIL = HOUR + timedelta(hours=1)


def _settings(registered: Settings, store: LocalStore, **monitoring: object) -> Settings:
    return monitored_in(
        registered, store, window="hour", windows=2, label_delay_days=1, **monitoring
    )


def _feedback(store: LocalStore, ids: list[str], at: datetime, label: int, name: str) -> None:
    """A feedback file written at `at`, labelling each of `ids` (one-row requests) `label`."""
    table = logformat.feedback_table(
        [{"request_id": rid, "time": at.timestamp(), "labels": [label]} for rid in ids]
    )
    store.write(
        f"feedback/loan-default/v1/{at:%Y-%m-%d}/{at:%H%M%S%f}-{name}-000001.parquet",
        logformat.to_parquet(table, {"model": "loan-default", "version": "v1"}),
    )


class Looks:
    """Looks at the store's windows at later and later times, each with the cache and without
    it (nothing recorded: both read the same store)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = WindowCache()
        self.now = HOUR + timedelta(hours=2)

    def look(self, settings: Settings | None = None) -> tuple[MonitorResult, int, int]:
        """A look a minute after the last; its reports, and the windows served from the
        cache and analysed."""
        settings = settings or self.settings
        self.now += timedelta(minutes=1)
        stores = Stores(settings)
        hits, misses = self.cache.hits, self.cache.misses
        cached = monitor(
            settings,
            stores.registry,
            stores.source,
            until=UNTIL,
            now=self.now,
            record=False,
            cache=self.cache,
        )
        fresh = monitor(
            settings, stores.registry, stores.source, until=UNTIL, now=self.now, record=False
        )
        assert _dumped(cached.reports) == _dumped(fresh.reports)
        return cached, self.cache.hits - hits, self.cache.misses - misses


def _dumped(reports: tuple[WindowReport, ...]) -> list[dict[str, object]]:
    return [r.model_dump(mode="json") for r in reports]


def _window(result: MonitorResult, version: str = "v1") -> WindowReport:
    (report,) = [r for r in result.reports if r.version == version and r.start == HOUR]
    return report


def test_a_window_is_analysed_again_when_and_only_when_one_of_its_inputs_changed(
    registered: Settings, store: LocalStore
) -> None:
    # given v1 in production, and traffic in the second window, none of it labelled yet
    _, ids = parquet_traffic(store, "v1", 300, HOUR + timedelta(minutes=5), seed=1)
    looks = Looks(_settings(registered, store))
    # when it is looked at, then looked at again with nothing changed
    first, hits, misses = looks.look()
    assert (hits, misses) == (0, 1)
    again, hits, misses = looks.look()
    # then its report comes from the cache, as computed at the second look (and, as every look
    # below, equals the report of a look without the cache)
    assert (hits, misses) == (1, 0)
    assert _window(again).computed_at == looks.now
    assert _window(again).model_dump(exclude={"computed_at"}) == _window(first).model_dump(
        exclude={"computed_at"}
    )
    # when a new log file of the window is written
    parquet_traffic(store, "v1", 100, HOUR + timedelta(minutes=20), seed=2)
    grown, hits, misses = looks.look()
    # then the window is analysed again, with its rows
    assert (hits, misses) == (0, 1)
    assert _window(grown).health.rows == 400
    # when labels of its requests come back after that look
    _feedback(store, ids[:50], looks.now + timedelta(seconds=30), 1, "late")
    labelled, hits, misses = looks.look()
    # then they count: the window is analysed again with them
    assert (hits, misses) == (0, 1)
    assert _window(grown).performance.labelled == 0
    assert _window(labelled).performance.labelled == 50
    # when feedback of requests the window never served arrives
    _feedback(store, ["never-served"], looks.now + timedelta(seconds=30), 0, "stray")
    _, hits, misses = looks.look()
    # then the window's labels are the same: its report is reused
    assert (hits, misses) == (1, 0)
    # when a label the window holds is corrected by newer feedback
    _feedback(store, ids[:1], looks.now + timedelta(seconds=30), 0, "corrected")
    _, hits, misses = looks.look()
    # then it is analysed again
    assert (hits, misses) == (0, 1)
    # when a setting the analysis reads changes
    stricter = _settings(registered, store, p_value=0.01)
    _, hits, misses = looks.look(stricter)
    # then it is analysed again, and once more on the way back (both are kept)
    assert (hits, misses) == (0, 1)
    _, hits, misses = looks.look()
    assert (hits, misses) == (1, 0)


def test_a_window_whose_role_changed_with_the_alias_history_is_analysed_again(
    registered: Settings, store: LocalStore
) -> None:
    # given traffic to v1 in the second window, looked at once
    parquet_traffic(store, "v1", 300, HOUR + timedelta(minutes=5), seed=1)
    looks = Looks(_settings(registered, store))
    first, _, _ = looks.look()
    assert _window(first).role == "production"
    # when v2 is registered and the alias's history says it served that window (a promotion
    # stamped at the window's start)
    registry = Registry(store, "loan-default")
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    registry.register(files, run_id="r2", fingerprint="a second version")
    with stamped_by(lambda: HOUR):
        registry.move_alias(PRODUCTION, "v2", expected="v1", reason="promoted", actor="test")
    moved, hits, misses = looks.look()
    # then v1's window is analysed again, as a canary's
    assert _window(moved).role == "canary"
    assert misses >= 1 and hits == 0


def test_a_reference_fingerprint_follows_its_files_and_its_rows() -> None:
    rows = pd.DataFrame({"income": [1.0, 2.0], "region": ["north", "south"]})
    base = reference_fingerprint("v1", [b"contract", b"evaluation", b"model"], [rows, None])
    assert base == reference_fingerprint("v1", [b"contract", b"evaluation", b"model"], [rows, None])
    others = [
        reference_fingerprint("v2", [b"contract", b"evaluation", b"model"], [rows, None]),
        reference_fingerprint("v1", [b"contract", b"evaluation 2", b"model"], [rows, None]),
        reference_fingerprint("v1", [b"contract", None, b"model"], [rows, None]),
        reference_fingerprint("v1", [b"contract", b"evaluation", b"model"], [None, None]),
        reference_fingerprint(
            "v1", [b"contract", b"evaluation", b"model"], [rows.assign(income=[1.0, 3.0]), None]
        ),
        reference_fingerprint("v1", [b"contract", b"evaluation", b"model"], [rows, rows]),
    ]
    assert len({base, *others}) == 1 + len(others)


def test_a_reference_without_a_fingerprint_is_never_served_from_the_cache(
    reference: VersionReference, registered: Settings
) -> None:
    from dataclasses import replace

    assert reference.fingerprint  # load_reference takes one
    key = window_key(
        None,
        [],
        {},
        replace(reference, fingerprint=""),
        registered.monitoring,
        None,
        model="loan-default",
        role="production",
        start=HOUR,
        end=UNTIL,
        skipped={},
    )
    cache = WindowCache()
    assert key is None and cache.get(key, HOUR) is None and cache.misses == 1


def test_the_cache_keeps_the_most_recently_used_reports(report: WindowReport) -> None:
    cache = WindowCache(size=2)
    for key in ("a", "b"):
        cache.put(key, report)
    assert cache.get("a", UNTIL) is not None  # "b" is now the least recently used
    cache.put("c", report)
    assert len(cache) == 2
    assert cache.get("b", UNTIL) is None
    assert cache.get("a", UNTIL) is not None and cache.get("c", UNTIL) is not None
    with pytest.raises(ValueError, match="at least one report"):
        WindowCache(size=0)
