"""Rows a skew check re-scored, kept from look to look: a re-look finds them and loads no model."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from flywheel.config import Settings
from flywheel.monitoring import reference
from flywheel.monitoring.monitor import monitor
from flywheel.monitoring.rescored import Rescored, read_rescored, rescored_key
from flywheel.registry import Registry
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from harness.monitored import Monitored
from harness.traffic import monitored_in, parquet_traffic

ROWS = [(7, 0, 11), (7, 1, 12), (3, 0, 13)]


def test_only_rows_not_known_are_scored_and_only_used_rows_are_kept() -> None:
    # given rows an earlier look kept: one asked for again, one no longer used, and one of
    # another width than the model's (not its answer)
    kept = Rescored(known={ROWS[0]: (0.25, 0.75), (9, 0, 1): (0.5, 0.5), ROWS[1]: (0.3,)})
    asked: list[list[int]] = []

    def score(missing: list[int]) -> npt.NDArray[np.float64]:
        asked.append(missing)
        return np.array([[0.1, 0.9]] * len(missing))

    # when three rows are asked for
    found = kept.outputs(ROWS, 2, score)
    # then only the unknown row and the one of another width were scored, and the kept one
    # answered as kept
    assert asked == [[1, 2]] and kept.scored == 2 and kept.changed
    np.testing.assert_array_equal(found, [[0.25, 0.75], [0.1, 0.9], [0.1, 0.9]])
    # and what is kept is this look's rows, read back exactly
    again = Rescored.from_bytes(kept.to_bytes())
    assert again.known == {ROWS[0]: (0.25, 0.75), ROWS[1]: (0.1, 0.9), ROWS[2]: (0.1, 0.9)}
    # and asking again scores nothing and changes nothing
    assert (again.outputs(ROWS, 2, score) == found).all() and len(asked) == 1
    assert not again.changed


def test_a_damaged_file_is_scored_again_with_a_warning(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(str(tmp_path))
    assert read_rescored(store, "m", "v1").known == {}  # none yet
    store.write(rescored_key("m", "v1"), b"PAR1 half an upload")
    with caplog.at_level(logging.WARNING):
        assert read_rescored(store, "m", "v1").known == {}
    assert "not a file of re-scored rows" in caplog.text and "scored again" in caplog.text


def test_a_re_look_at_the_same_rows_loads_no_model(
    registered: Settings, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a look at an hour of v1's traffic
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(minutes=30)
    parquet_traffic(store, "v1", 300, now - timedelta(minutes=20), seed=0)
    settings = monitored_in(registered, store, window="hour", windows=2)
    stores = Stores(settings)

    def look(at: datetime) -> list[object]:
        until = now + timedelta(hours=1)
        found = monitor(settings, stores.registry, stores.source, until=until, now=at)
        return [r.skew for r in found.reports if r.skew is not None]

    first = look(now)
    kept = read_rescored(store, "loan-default", "v1").known
    assert first and len(kept) == sum(s.sampled for s in first)  # type: ignore[attr-defined]

    # when it looks again with the model unloadable
    def refused(raw: bytes) -> object:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(reference, "load_model", refused)
    # then its skew checks are the first's, answered from the kept rows
    assert look(now + timedelta(minutes=1)) == first


@pytest.mark.parametrize("task", ["wine", "diabetes"])
def test_a_multiclass_or_regression_versions_newest_answers_are_kept_too(
    task: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a version whose reference needs its model's answers on its evaluation's newest
    # batch, in a store of this test's own
    version: Monitored = request.getfixturevalue(task)
    shutil.copytree(version.store.root, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    registry = Registry(store, version.name)
    # when a first look loads its reference, and keeps the rows it scored as a look does
    first = reference.load_reference(registry, version.source, version.version)
    assert first.newest_outputs is not None and first.rescored.changed
    store.write(rescored_key(version.name, version.version), first.rescored.to_bytes())

    # then a re-look loads no model for them, and has the same answers
    def refused(raw: bytes) -> object:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(reference, "load_model", refused)
    again = reference.load_reference(registry, version.source, version.version)
    assert again.newest_outputs is not None and not again.rescored.changed
    np.testing.assert_array_equal(again.newest_outputs, first.newest_outputs)
    assert again.fingerprint == first.fingerprint
