"""A short simulation of the whole loop (issue 11): concept drift from day 3, labels one day
late, the default trigger policy, on a small configuration (400 rows a day, runs reading 5
days, no hyper-parameter search). Then the same simulation interrupted after day 2 and
resumed, which must decide, run and roll out the same; and the same simulation served by
seldon-core microservices behind the gateway (`servers=True`), which must serve the same."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import Settings, load_settings
from flywheel.monitoring.logs import Skipped, read_predictions
from flywheel.registry import Registry
from flywheel.simulation.loop import DayRecord, Timeline, simulate
from harness.projects import SMALL

pytestmark = pytest.mark.integration

DAYS, CHANGE_DAY, LABEL_DELAY, ROWS = 6, 3, 1, 400


def small() -> Settings:
    return load_settings(
        None,
        env={},
        overrides=[
            *SMALL,
            f"data.generator.rows_per_day={ROWS}",
            f"data.generator.change_day={CHANGE_DAY}",
            "model.params.max_iter=40",
        ],
    )


def play(root: Path, **options: Any) -> Timeline:
    return simulate(
        small(),
        root=root,
        days=DAYS,
        scenario="concept_drift",
        seed=0,
        label_delay=LABEL_DELAY,
        traffic=ROWS,
        **options,
    )


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Timeline]:
    root = tmp_path_factory.mktemp("simulation")
    return root, play(root)


def test_concept_drift_is_detected_retrained_on_and_promoted_in_that_order(
    played: tuple[Path, Timeline],
) -> None:
    root, timeline = played
    records = timeline.records
    assert [r.index for r in records] == list(range(DAYS))
    # and every answered row was judged, production and the oracle on the same rows
    assert [r.judged for r in records] == [r.rows for r in records]
    assert all(r.oracle is not None for r in records)
    # given v1 from the warm-up, serving until the change
    assert {r.production for r in records[:CHANGE_DAY]} == {"v1"}
    assert not any(r.decision and r.decision["fired"] for r in records[:CHANGE_DAY])
    # then the first firing is the performance trigger, once the changed day's labels are back
    fired = [r for r in records if r.decision and r.decision["fired"]]
    assert fired, [r.decision for r in records]
    first = fired[0]
    assert first.index == CHANGE_DAY + LABEL_DELAY, first.decision
    assert first.decision is not None
    assert first.decision["reason"].startswith("performance drop: accuracy ")
    # and the accuracy production served had fallen on the changed days
    before = [r.performance or 0 for r in records[:CHANGE_DAY]]
    after = [r.performance or 0 for r in records[CHANGE_DAY : first.index + 1]]
    assert min(before) - max(after) > 0.05, (before, after)
    # and that day a run on the decision's reason registered a blessed candidate
    assert first.run is not None and first.run["blessed"], first.run
    version = first.run["registered"]
    assert first.run["reason"] == first.decision["reason"] and version == "v2"
    # and the canary on that day's traffic promoted it: production is v2 from that day on
    assert first.rollout == {"version": version, "phase": "promoted", "reason": "every step passed"}
    assert [r.production for r in records[first.index :]] == [version] * (DAYS - first.index)
    assert first.model_age_days == 0.0
    assert records[first.index - 1].model_age_days == float(first.index)  # v1: end of day -1
    # and the store holds it as production does: the reason in the lineage, the simulated time
    settings = Settings.from_json((root / "settings.json").read_text())
    registry = Registry.from_settings(settings)
    manifest = registry.manifest(version)
    assert manifest.created_at.startswith(f"{first.day.replace(day=first.day.day + 1)}T00:00:00")
    lineage = registry.read(version, "lineage.json").decode()
    assert first.decision["reason"] in lineage and first.decision["record"] in lineage
    kinds = [r["kind"] for r in registry.records(version)]
    assert kinds[0] == "rollout-start" and kinds[-1] == "rollout-promoted", kinds
    # and the timeline on disk is the one returned
    assert Timeline.model_validate_json((root / "timeline.json").read_text()).records == records


class Stop(Exception):
    """What interrupts the simulation after a day (as Ctrl-C would between two days)."""


def test_an_interrupted_simulation_resumes_where_it_stopped_and_decides_the_same(
    played: tuple[Path, Timeline], tmp_path: Path
) -> None:
    _, whole = played

    def stop_after_day_2(record: DayRecord) -> None:
        if record.index == 2:
            raise Stop

    # given the same simulation interrupted once day 2 was complete
    with pytest.raises(Stop):
        play(tmp_path, on_day=stop_after_day_2)
    saved = Timeline.model_validate_json((tmp_path / "timeline.json").read_text())
    assert [r.index for r in saved.records] == [0, 1, 2]
    # when it is resumed
    resumed = play(tmp_path, resume=True)

    # then it played the remaining days only, and every day decided, ran and rolled out the same
    def what(r: DayRecord) -> tuple[Any, ...]:
        decision = r.decision or {}
        run = r.run or {}
        return (
            r.production,
            r.performance,
            r.rows,
            decision.get("fired"),
            decision.get("reason"),
            run.get("registered"),
            run.get("blessed"),
            r.rollout,
            r.model_age_days,
        )

    assert [what(r) for r in resumed.records] == [what(r) for r in whole.records]
    assert resumed.wall_seconds >= saved.wall_seconds


def _microservices() -> dict[int, str]:
    """The seldon-core microservices this test process started (PID -> the version served),
    found from /proc: their parent is this process."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        served = re.search(r'"model_version", "type": "STRING", "value": "(v\d+)"', command)
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and served:
            found[int(stat.parent.name)] = served.group(1)
    return found


def test_served_by_microservices_the_days_are_stamped_labelled_and_decided_as_in_process(
    played: tuple[Path, Timeline], tmp_path: Path
) -> None:
    _, in_process = played
    running: list[dict[int, str]] = []

    def seen(record: DayRecord) -> None:
        running.append(_microservices())

    # given the same simulation, when its traffic goes through the gateway to seldon-core
    timeline = play(tmp_path, servers=True, on_day=seen)

    # then every day served, decided, ran and rolled out as the in-process run did: the same
    # rows and accuracy (the same scores), so the same triggers, and the promotion of v2
    def what(r: DayRecord) -> tuple[Any, ...]:
        decision, run = r.decision or {}, r.run or {}
        fired = (decision.get("fired"), decision.get("reason"), decision.get("blocked_by"))
        return (r.production, r.performance, r.rows, r.refused, fired, run.get("registered"))

    assert [what(r) for r in timeline.records] == [what(r) for r in in_process.records]
    promoted = next(r.index for r in timeline.records if r.rollout)
    assert timeline.records[promoted].rollout == {
        "version": "v2",
        "phase": "promoted",
        "reason": "every step passed",
    }
    # and one microservice served production each day: v1's until the promotion, then v2's
    assert [sorted(r.values()) for r in running] == [["v1"]] * (promoted + 1) + [["v2"]] * (
        DAYS - promoted - 1
    )
    # and nothing it started is left running, nor recorded as running
    assert _microservices() == {}
    assert not (tmp_path / "serve" / "processes.json").exists()
    # and the prediction log holds each day's rows stamped inside that simulated day, in that
    # day's folder, and the labels of the day before came back as feedback at its end
    settings = Settings.from_json((tmp_path / "settings.json").read_text())
    registry = Registry.from_settings(settings)
    for record in timeline.records:
        midnight = datetime.combine(record.day, datetime.min.time(), tzinfo=UTC)
        end = midnight + timedelta(days=1)
        logged = read_predictions(
            registry.store, settings.model_name, {"v1", "v2"}, midnight, end, Skipped()
        )
        assert sum(len(p.scores) for p in logged) == record.rows == ROWS
        serving = "v1" if record.index <= promoted else "v2"
        folder = f"predictions/{settings.model_name}/{serving}/{record.day}/"
        in_folder = [
            row
            for key in registry.store.list(folder)
            for row in _rows(registry.store.read(key))
            if row["_row"] == 0
        ]
        assert len(in_folder) == len(logged)
        assert all(midnight.timestamp() <= r["_time"] < end.timestamp() for r in in_folder)
        feedback = [
            row
            for key in registry.store.list(folder.replace("predictions/", "feedback/", 1))
            for row in _rows(registry.store.read(key))
        ]
        labelled = record.day - timedelta(days=LABEL_DELAY)
        assert {f["_time"] for f in feedback} <= {end.timestamp() - 1}
        assert {f["_request_id"][: len("sim-2026-01-01")] for f in feedback} <= {f"sim-{labelled}"}
        expected = 0 if record.index < LABEL_DELAY else ROWS
        assert len(feedback) == expected, record.day


def _rows(data: bytes) -> list[dict[str, Any]]:
    """A Parquet log file's rows (one per served or labelled row)."""
    import io

    import pyarrow.parquet as pq

    return list(pq.read_table(io.BytesIO(data)).to_pylist())
