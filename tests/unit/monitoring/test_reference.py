"""A version's reference: its model loaded in this process or in a scoring process of its
own, and a model that will not load."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from flywheel import synthetic
from flywheel.config import Settings
from flywheel.monitoring.monitor import monitor
from flywheel.monitoring.records import PREFIX
from flywheel.monitoring.reference import Remote, load_reference
from flywheel.predictor import ModelLoadError, Predictor
from flywheel.registry import Registry
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from harness.traffic import monitored_in, parquet_traffic


def _settings(registered: Settings, store: LocalStore) -> Settings:
    return monitored_in(registered, store, window="hour", windows=2)


@pytest.mark.timeout(120)  # OpenMP on more threads in the fork: it hangs
def test_a_model_in_a_scoring_process_answers_as_one_loaded_here(registered: Settings) -> None:
    # given v1 loaded here, and a day's rows scored here first: OpenMP's threads are started
    # in this process, as in one that trained models (a test's, `flywheel simulate`)
    stores = Stores(registered)
    here = load_reference(stores.registry, stores.source, "v1")
    assert isinstance(here.predictor, Predictor)
    frame = synthetic.generate_day(
        registered.data.generator.start_date + timedelta(days=3), registered.data.generator
    ).head(50)
    expected = here.predictor.outputs(frame)
    # when v1 is loaded in a scoring process forked from it, as a look forks it, and scores
    # the same rows there (where OpenMP would hang on more than one thread)
    with ProcessPoolExecutor(max_workers=1) as process:
        there = load_reference(stores.registry, stores.source, "v1", process)
        assert isinstance(there.predictor, Remote)
        found = there.predictor.outputs(frame)
    # then its answers, the columns it takes and the reference are the same
    np.testing.assert_array_equal(found, expected)
    assert there.predictor.columns == here.predictor.columns
    assert there.fingerprint == here.fingerprint


@pytest.mark.parametrize("workers", [1, 2])
def test_a_model_that_will_not_load_stops_the_look_naming_it(
    registered: Settings, store: LocalStore, workers: int
) -> None:
    # given traffic of a v2 registered with a model file that is not a model
    registry = Registry(store, "loan-default")
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    registry.register({**files, "model.joblib": b"not a model"}, run_id="r2")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(minutes=30)
    parquet_traffic(store, "v2", 100, now - timedelta(minutes=20), seed=0)
    settings = _settings(registered, store)
    stores = Stores(settings)
    # when a look loads it, in this process or in the scoring process beside the workers
    with pytest.raises(ModelLoadError, match="model") as raised:
        monitor(
            settings,
            stores.registry,
            stores.source,
            until=now + timedelta(hours=1),
            now=now,
            workers=workers,
        )
    # then its error says so in one line, and nothing was recorded
    assert "\n" not in str(raised.value)
    assert not list(store.list(PREFIX))
