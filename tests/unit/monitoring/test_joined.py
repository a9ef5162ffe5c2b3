"""Delayed labels joined to every served row (`monitoring.label_join: every`): the sample's
figures where the sample holds the window, every labelled row's above it, the same however
the join is partitioned, and the sample's rules for repeats, corrections and partial labels."""

from __future__ import annotations

import math
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flywheel import synthetic
from flywheel.config import MONITORED_METRICS, Settings
from flywheel.monitoring import joined
from flywheel.monitoring.monitor import MonitorResult, monitor
from flywheel.monitoring.prometheus import exposition
from flywheel.monitoring.window import VersionReference, WindowReport
from flywheel.registry import Registry
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from harness.monitored import Monitored
from harness.traffic import (
    feedback_file,
    log_traffic,
    monitored_in,
    production_report,
    read_back,
    wrong_typed,
)


def _result(
    settings: Settings, until: datetime, now: datetime | None = None, **options: Any
) -> MonitorResult:
    """A look up to `until`, at `now` (default: then), recording nothing (`options`:
    `monitor`'s)."""
    stores = Stores(settings)
    return monitor(
        settings,
        stores.registry,
        stores.source,
        until=until,
        now=now or until,
        record=False,
        **options,
    )


def _look(settings: Settings, until: datetime, **options: Any) -> list[WindowReport]:
    """The labelled windows of a look up to `until`."""
    return [r for r in _result(settings, until, **options).reports if r.performance.labelled]


def _log(registered: Settings, store: LocalStore, days: int = 1, **options: Any) -> None:
    """`days` days of the generator's traffic logged by v1 now, as one stream."""
    generator = registered.data.generator
    frames = [
        synthetic.generate_day(generator.start_date + timedelta(days=6 + d), generator)
        for d in range(days)
    ]
    log_traffic(store, "loan-default", "v1", pd.concat(frames, ignore_index=True), **options)


def _close(a: Any, b: Any) -> None:
    """Two intervals equal up to rounding (sums against arrays)."""
    assert a is not None and b is not None
    for bound in ("value", "low", "high"):
        assert getattr(a, bound) == pytest.approx(getattr(b, bound), rel=1e-9, abs=1e-12)


def test_every_label_gives_the_samples_figures_where_the_sample_holds_the_window(
    registered: Settings, store: LocalStore
) -> None:
    # given a day of traffic, 60% of its requests labelled, in an hour window that the
    # sample holds whole
    _log(registered, store, labelled=0.6)
    settings = monitored_in(registered, store, window="hour", windows=2, label_join="every")
    # when monitored with every label joined
    (report,) = _look(settings, datetime.now(UTC) + timedelta(hours=1))
    # then every labelled row's figures are the sample's
    sampled, every = report.performance, report.performance.every_label
    assert report.sampled_rows is None and every is not None
    assert every.labelled == sampled.labelled > 0
    assert every.accuracy == sampled.accuracy
    _close(every.log_loss, sampled.log_loss)
    assert every.confusion is not None and sum(map(sum, every.confusion)) == every.labelled
    # and its ROC AUC, of scores counted on 4,096 bins, within a bin's ties of the rows'
    assert every.roc_auc is not None and sampled.roc_auc is not None
    for bound in ("value", "low", "high"):
        assert getattr(every.roc_auc, bound) == pytest.approx(
            getattr(sampled.roc_auc, bound), abs=2e-3
        )
    right = np.trace(np.array(every.confusion)) / every.labelled
    assert sampled.accuracy is not None and math.isclose(right, sampled.accuracy.value)


@pytest.mark.parametrize("dataset", ["wine", "diabetes"])
def test_every_label_gives_the_samples_figures_for_each_task(
    dataset: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # given a multiclass or a regression version's traffic, a third of it labelled
    served: Monitored = request.getfixturevalue(dataset)
    shutil.copytree(served.store.root, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    log_traffic(store, served.name, served.version, served.unseen, labelled=0.34)
    task = "regression" if dataset == "diabetes" else "multiclass"
    settings = Settings.model_validate(
        {
            "model_name": served.name,
            "features": served.features.model_dump(),
            "model": {"task": task},
            "storage": {"uri": str(store.root)},
            "monitoring": {
                "window": "hour",
                "windows": 2,
                "label_delay_days": 1,
                "label_join": "every",
            },
        }
    )
    end = datetime.now(UTC) + timedelta(hours=1)
    # when monitored with every label joined
    result = monitor(settings, Registry(store, served.name), served.source, until=end, now=end)
    (report,) = [r for r in result.reports if r.performance.labelled]
    # then every labelled row's figures are the sample's
    sampled, every = report.performance, report.performance.every_label
    assert every is not None and every.labelled == sampled.labelled > 0
    if task == "multiclass":
        assert every.accuracy == sampled.accuracy
        _close(every.log_loss, sampled.log_loss)
        # and the per-class figures and macro F1 too, each AUC within its 4,096 bins' ties
        _same_classes(every, sampled, auc_within=2e-3)
        # and the intervals of macro F1 and AUC from the counts alike the rows' bootstrap
        # (the AUC's wider: it assumes the classes' errors move together)
        _alike(every.macro_f1, sampled.macro_f1)
        assert every.roc_auc and sampled.roc_auc
        assert every.roc_auc.value == pytest.approx(sampled.roc_auc.value, abs=2e-3)
        assert every.roc_auc.low <= sampled.roc_auc.low + 2e-3
        assert every.roc_auc.high >= sampled.roc_auc.high - 2e-3
        assert report.performance.classes == every.per_class
    else:
        for metric in ("rmse", "mae", "mape", "r2"):
            _close(getattr(every, metric), getattr(sampled, metric))
        assert every.mean_label == pytest.approx(sampled.mean_label)
        assert every.mean_prediction == pytest.approx(sampled.mean_prediction)
    # and what judges the window is every labelled row's: no figure is left on the sample
    for metric in MONITORED_METRICS[task]:
        assert report.performance.get(metric) is getattr(every, metric)
        assert report.performance.labelled_for(metric) == every.labelled


def _same_classes(every: Any, rows: Any, auc_within: float) -> None:
    """The join's macro F1 and per-class figures are the rows' own, each class's AUC within
    `auc_within` (its scores' bins tie)."""
    assert every.macro_f1 and rows.macro_f1
    assert every.macro_f1.value == pytest.approx(rows.macro_f1.value, rel=1e-12)
    assert every.per_class.keys() == rows.per_class.keys()
    for name, one in every.per_class.items():
        theirs = rows.per_class[name]
        assert (one.support, one.recall, one.precision) == (
            theirs.support,
            theirs.recall,
            theirs.precision,
        )
        assert one.roc_auc and theirs.roc_auc
        assert one.roc_auc.value == pytest.approx(theirs.roc_auc.value, abs=auc_within)


def _alike(a: Any, b: Any) -> None:
    """Two intervals of one value by two methods: each holds it, and is at least half as
    wide as the other."""
    assert a.low < a.value < a.high and b.low < b.value < b.high
    width_a, width_b = a.high - a.low, b.high - b.low
    assert 0.5 <= width_a / width_b <= 2.0, (a, b)


def test_above_the_sample_every_labelled_row_is_measured(
    registered: Settings, store: LocalStore, reference: VersionReference
) -> None:
    # given 2,400 rows in an hour window that keeps a sample of 1,000, 60% labelled
    _log(registered, store, days=4, labelled=0.6)
    settings = monitored_in(
        registered, store, window="hour", windows=2, sample_rows=1000, label_join="every"
    )
    until = datetime.now(UTC) + timedelta(hours=1)
    # when monitored with every label joined
    (report,) = _look(settings, until)
    # then the sample measured fewer labels, the join all of them: as the rows read one by
    # one measure them
    direct = production_report(*read_back(store), reference).performance
    every = report.performance.every_label
    assert report.sampled_rows is not None and report.performance.labelled < 1000
    assert every is not None and every.labelled == direct.labelled == 1440
    assert every.accuracy == direct.accuracy
    _close(every.log_loss, direct.log_loss)
    assert every.roc_auc and direct.roc_auc
    assert every.roc_auc.value == pytest.approx(direct.roc_auc.value, abs=1e-3)
    # and the headline metric, and what judges it, are every labelled row's
    assert report.performance.get("accuracy") == every.accuracy
    assert report.performance.labelled_for("accuracy") == 1440
    assert report.performance.labelled_for("roc_auc") == 1440
    assert report.performance.labelled_for("macro_f1") == report.performance.labelled
    published = exposition([report])
    assert re.search(r"^flywheel_monitor_labelled_rows\{[^}]*\} 1440(\.0)?$", published, re.M)


def test_the_join_is_the_same_in_one_partition_as_in_many_and_in_worker_processes(
    registered: Settings, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given labelled traffic in several files of each log
    for _ in range(3):
        _log(registered, store, rows_per_request=3, labelled=0.5)
    settings = monitored_in(
        registered, store, window="hour", windows=2, sample_rows=1000, label_join="every"
    )
    until = datetime.now(UTC) + timedelta(hours=1)
    # when joined in 64 partitions, by two worker processes, and in one partition,
    # spilled a few rows at a time
    many = _look(settings, until)
    workers = _look(settings, until, workers=2)
    monkeypatch.setattr(joined, "_BUCKET_BITS", 0)
    monkeypatch.setattr(joined, "BUCKETS", 1)
    monkeypatch.setattr(joined, "_BUFFER_ROWS", 7)
    one = _look(settings, until)
    # then the counts are the same, and the sums up to their order of addition
    assert len(many) == len(one) == len(workers) > 0
    for a, b in [*zip(many, one, strict=True), *zip(many, workers, strict=True)]:
        x, y = a.performance.every_label, b.performance.every_label
        assert x is not None and y is not None and x.labelled > 0
        assert (x.labelled, x.confusion, x.accuracy) == (y.labelled, y.confusion, y.accuracy)
        _close(x.log_loss, y.log_loss)


def _served(*rows: tuple[int, int, int, float], version: int = 0) -> np.ndarray:
    """Served rows (key, row, slot, score) of one version, each in a file of its own and a
    second later than the one before."""
    out = np.zeros(len(rows), dtype=joined._answers_dtype(2))
    for i, (key, row, slot, score) in enumerate(rows):
        out[i] = (key, row, i, version, float(i), slot, (1 - score, score))
    return out


def _labels(*rows: tuple[int, int, float, float]) -> np.ndarray:
    """Feedback rows (key, row, time, label as a number), each in a file of its own."""
    out = np.zeros(len(rows), dtype=joined._LABELS)
    for i, (key, row, time, label) in enumerate(rows):
        out[i] = (key, row, i, 0, time, label, -1)
    return out


def test_a_bucket_joins_as_the_samples_join_does() -> None:
    # given served rows: a request logged twice (key 1), a two-row request (key 2), a
    # request never labelled (key 3), one outside every window (key 5)
    outside = int(joined._OUTSIDE)
    served = _served(
        (1, 0, 0, 0.9),
        (2, 0, 0, 0.2),
        (2, 1, 0, 0.7),
        (3, 0, 1, 0.4),
        (1, 0, 1, 0.1),
        (5, 0, outside, 0.5),
    )
    # and feedback: key 1 labelled, then corrected; key 2 labelled on one row only; key 4
    # never logged; key 5 outside the windows
    labels = _labels(
        (1, 0, 10.0, 0.0), (1, 0, 20.0, 1.0), (2, 0, 5.0, 0.0), (4, 0, 1.0, 1.0), (5, 0, 1.0, 0.0)
    )
    # when joined
    pairs, copies, strays = joined._join_bucket(served, labels)
    # then only key 1 joins: its first copy (slot 0, 0.9) with its newest label
    assert len(pairs) == 1
    assert (pairs["slot"][0], pairs["out"][0][1], pairs["number"][0]) == (0, 0.9, 1.0)
    # and its second copy is counted in its own slot, and key 4's feedback has no request
    assert copies.tolist() == [1]
    assert strays["key"].tolist() == [4]
    # and with key 2's second row labelled in the same feedback, key 2 joins whole
    labels = _labels((2, 0, 5.0, 0.0), (2, 1, 5.0, 1.0), (2, 1, 5.0, 0.0))
    pairs, _, _ = joined._join_bucket(served, labels)
    assert sorted(zip(pairs["out"][:, 1], pairs["number"], strict=True)) == [
        (0.2, 0.0),
        (0.7, 0.0),  # a row labelled twice in one feedback: its last label
    ]
    # and newer feedback of one row replaces the request's whole earlier feedback: no longer
    # whole, the request does not join
    labels = _labels((2, 0, 1.0, 0.0), (2, 1, 1.0, 1.0), (2, 0, 9.0, 1.0))
    assert len(joined._join_bucket(served, labels)[0]) == 0


def test_a_request_served_by_two_versions_is_labelled_in_both() -> None:
    # given one request served by production (slot 0) and by a shadow (slot 2), and its label
    served = np.concatenate([_served((7, 0, 0, 0.9)), _served((7, 0, 2, 0.4), version=1)])
    # when joined
    pairs, copies, strays = joined._join_bucket(served, _labels((7, 0, 5.0, 1.0)))
    # then each version's row has the label, and neither is a copy of the other
    assert sorted(pairs["slot"].tolist()) == [0, 2]
    assert len(copies) == 0 and len(strays) == 0


def test_a_rows_earliest_copy_is_the_one_labelled_as_the_summaries_keep_it() -> None:
    # given a row logged at 5 s in one file, and again at 1 s in a later one
    served = _served((3, 0, 1, 0.8), (3, 0, 0, 0.3))
    served["time"] = [5.0, 1.0]
    # when joined to its label
    pairs, copies, _ = joined._join_bucket(served, _labels((3, 0, 9.0, 0.0)))
    # then the earlier copy (window 0, 0.3) is labelled, and the later counted in its window
    assert (pairs["slot"].tolist(), pairs["out"][:, 1].tolist()) == ([0], [0.3])
    assert copies.tolist() == [1]


def test_a_label_beyond_the_sample_is_a_new_analysis_of_its_window(
    registered: Settings, store: LocalStore
) -> None:
    # given 2,400 rows in a window sampled to 1,000, half of the requests labelled, looked at
    # by a process that keeps its reports
    from flywheel.logformat import request_key
    from flywheel.monitoring.cache import WindowCache
    from flywheel.serving.feedbacklog import FeedbackLogger

    generator = registered.data.generator
    frame = synthetic.generate_day(generator.start_date + timedelta(days=6), generator)
    frame = pd.concat([frame] * 4, ignore_index=True)
    ids = log_traffic(store, "loan-default", "v1", frame, labelled=0.5)
    settings = monitored_in(
        registered, store, window="hour", windows=2, sample_rows=1000, label_join="every"
    )
    cache = WindowCache()
    until = datetime.now(UTC) + timedelta(hours=1)

    def look() -> WindowReport:
        (report,) = _look(settings, until, cache=cache)
        return report

    before = look()
    # when the labels of an unlabelled request the sample left out come back
    outside = max(ids[len(ids) // 2 :], key=request_key)
    feedback = FeedbackLogger(store, "loan-default", "v1", flush_seconds=3600)
    labels = frame["defaulted"].iloc[ids.index(outside) * 20 :][:20].astype(int).tolist()
    feedback.record(
        {
            "request_id": outside,
            "model": "loan-default",
            "version": "v1",
            "time": datetime.now(UTC).timestamp(),
            "labels": labels,
        }
    )
    feedback.flush()
    feedback.close()
    after = look()
    # then the sample's labels are the same, and every label's are 20 more: analysed again
    assert after.performance.labelled == before.performance.labelled
    assert before.performance.every_label is not None and after.performance.every_label
    assert after.performance.every_label.labelled == before.performance.every_label.labelled + 20
    assert cache.misses == 2 and cache.hits == 0


def test_above_the_sample_rows_logged_again_and_feedback_never_logged_are_all_counted(
    registered: Settings, store: LocalStore
) -> None:
    # given 2,400 rows in a window sampled to 1,000, their log file written twice, and
    # feedback for 50 requests that were never logged
    from flywheel import logformat
    from flywheel.monitoring import logs

    _log(registered, store, days=4, labelled=0.6)
    for written in store.list("predictions/"):
        folder, name = written.rsplit("/", 1)
        store.write(f"{folder}/{name[:12]}-again{name[12:]}", store.read(written))
    now = datetime.now(UTC)
    ghosts = logformat.feedback_table(
        [{"request_id": f"ghost-{i}", "time": now.timestamp(), "labels": [1]} for i in range(50)]
    )
    store.write(
        f"feedback/loan-default/v1/{now:%Y-%m-%d}/{now:%H%M%S}000000-7-000001.parquet",
        logformat.to_parquet(ghosts, {"model": "loan-default", "version": "v1"}),
    )

    def look(label_join: str) -> tuple[dict[str, int], WindowReport]:
        settings = monitored_in(
            registered,
            store,
            window="hour",
            windows=2,
            sample_rows=1000,
            label_delay_days=0,
            label_join=label_join,
        )
        until = now + timedelta(hours=1)
        result = _result(settings, until, until + timedelta(hours=2))
        (report,) = [r for r in result.reports if r.health.rows]
        return result.skipped, report

    # when looked at with the sample's join, and with every label's
    sampled, _ = look("sample")
    every, report = look("every")
    # then the join counts every copy and every stray label, the sample only its share
    assert every == {logs.DUPLICATE: 2400, logs.NEVER_LOGGED: 50}
    assert sampled[logs.DUPLICATE] < 2400 and sampled.get(logs.NEVER_LOGGED, 0) < 50
    assert report.health.skipped_lines == every
    assert report.performance.every_label and report.performance.every_label.labelled == 1440


def test_a_compacted_file_of_the_wrong_type_is_left_out_of_the_join_as_of_the_summaries(
    registered: Settings, store: LocalStore
) -> None:
    # given a good file, and a day's compacted file of the same rows whose income column
    # holds text, and labels for ten of the requests
    import pyarrow.parquet as pq

    from flywheel import logformat
    from flywheel.monitoring import logs, tables
    from harness.traffic import parquet_traffic

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    good, ids = parquet_traffic(store, "v1", 100, hour + timedelta(minutes=5), seed=1)
    table = wrong_typed(pq.read_table(store.root / good))
    compacted = f"predictions/loan-default/v1/{tables.compacted_name(hour.date())}"
    store.write(compacted, logformat.to_parquet(table, {"model": "loan-default", "version": "v1"}))
    labelled_at = (hour + timedelta(minutes=30)).timestamp()
    feedback_file(
        store, hour, [{"request_id": i, "time": labelled_at, "labels": [1]} for i in ids[:10]]
    )
    settings = monitored_in(
        registered, store, window="hour", windows=1, label_delay_days=0, label_join="every"
    )
    # when every label is joined
    result = _result(settings, hour + timedelta(hours=1), hour + timedelta(hours=3))
    # then the compacted file is of the wrong type, not a copy of the good one's rows
    assert result.skipped == {logs.WRONG_TYPE: 100}
    (report,) = result.reports
    assert report.performance.every_label and report.performance.every_label.labelled == 10


def test_feedback_is_not_certain_to_be_unlogged_within_a_files_grace_of_the_days_read(
    registered: Settings, store: LocalStore
) -> None:
    # given two day-windows with labels two days late, so that a look reads four days of
    # files; a window's traffic, and requests served 30 s before the fourth day ends whose
    # file was written after midnight, into the fifth day's folder, which is not read
    from flywheel.monitoring import logs
    from harness.traffic import parquet_traffic

    first = (datetime.now(UTC) - timedelta(days=20)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    parquet_traffic(store, "v1", 10, first + timedelta(hours=10), seed=1)
    late = first + timedelta(days=4) - timedelta(seconds=30)
    key, ids = parquet_traffic(store, "v1", 5, late, seed=2)
    store.write(
        f"predictions/loan-default/v1/{late + timedelta(days=1):%Y-%m-%d}/"
        f"000030000000-2-000001.parquet",
        store.read(key),
    )
    store.delete(key)
    # and their labels, 20 s after them
    labelled = late.timestamp() + 20
    feedback_file(store, late, [{"request_id": i, "time": labelled, "labels": [1]} for i in ids])
    settings = monitored_in(
        registered, store, window="day", windows=2, label_delay_days=2, label_join="every"
    )
    # when every label is joined, long after
    result = _result(settings, first + timedelta(days=2), first + timedelta(days=10))
    # then the feedback is not counted as for requests never logged: they may be, and were
    assert logs.NEVER_LOGGED not in result.skipped


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_sums_added_bucket_by_bucket_give_each_windows_figures_from_its_rows(task: str) -> None:
    # given two windows of rows, labels far from zero for the regression, added to the sums
    # in three parts as three buckets would add them
    from flywheel.monitoring import performance
    from flywheel.problem import Problem

    rng = np.random.default_rng(17)
    n = 3000
    window = rng.integers(0, 2, n)
    if task == "regression":
        problem = Problem(task="regression", label="y")
        truth = rng.normal(1e4, 5.0, n)
        outputs = (truth + rng.normal(0.0, 3.0, n))[:, None]
    else:
        problem = Problem(task="multiclass", label="y", classes=("a", "b", "c"))
        truth = rng.integers(0, 3, n).astype(float)
        logits = rng.normal(0.0, 1.0, (n, 3))
        logits[np.arange(n), truth.astype(int)] += 1.0
        outputs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sums = joined._Sums.of(problem, 2)
    for part in np.array_split(np.arange(n), 3):
        joined._add(sums, window[part], outputs[part], truth[part], problem)
    for at in (0, 1):
        # when a window's figures are taken from the sums
        every = joined._joined(sums, at, problem, 0.95)
        mine = window == at
        direct = performance.measure(
            task, truth[mine], outputs[mine], 0.95, classes=problem.output_names
        )
        # then they are its rows' own
        assert every.labelled == direct.labelled == mine.sum()
        if task == "regression":
            _close(every.r2, direct.r2)
        else:
            _same_classes(every, direct, auc_within=1e-3)
