"""Deliberately faulty versions: each is registered, and each is bad in the way it says."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from flywheel import synthetic
from flywheel.compiled import COMPILED_FILE
from flywheel.config import Settings
from flywheel.evaluation import score
from flywheel.predictor import Predictor
from flywheel.registry import MODEL_FILE, Registry
from flywheel.rollout.faults import SLOW_SECONDS, burn_cpu, register_faulty
from flywheel.rollout.state import RolloutError
from flywheel.stores import Stores


@pytest.fixture(scope="module")
def drill(registered: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the shared store with production v1, and a faulty version of each kind."""
    root = tmp_path_factory.mktemp("drill")
    shutil.copytree(registered.storage.uri, root / "store")
    shutil.copytree(registered.data.source, root / "batches")
    settings = registered.model_copy(
        update={
            "storage": registered.storage.model_copy(update={"uri": str(root / "store")}),
            "data": registered.data.model_copy(update={"source": str(root / "batches")}),
        }
    )
    stores = Stores(settings)
    for kind in ("errors", "slow", "shuffled"):
        register_faulty(settings, stores.registry, stores.source, kind)  # type: ignore[arg-type]
    return settings


@pytest.fixture(scope="module")
def unseen_day(registered: Settings) -> pd.DataFrame:
    """A day after the window, which no model was trained on."""
    gen = registered.data.generator
    return synthetic.generate_day(gen.start_date + timedelta(days=10), gen)


def _predictor(settings: Settings, version: str) -> Predictor:
    raw = Registry.from_settings(settings).read(version, MODEL_FILE)
    return Predictor.from_bytes(raw, settings.features)


def test_an_empty_registry_is_refused(small_settings: Callable[..., Settings]) -> None:
    # given a project with nothing registered, when a faulty version is asked for
    settings = small_settings()
    stores = Stores(settings)
    with pytest.raises(RolloutError, match="loan-default has nothing in production"):
        register_faulty(settings, stores.registry, stores.source, "errors")
    # then nothing was registered
    assert Registry.from_settings(settings).versions() == []


def test_faulty_versions_are_registered_with_a_note_and_production_is_untouched(
    drill: Settings,
) -> None:
    registry = Registry.from_settings(drill)
    assert [m.version for m in registry.versions()] == ["v1", "v2", "v3", "v4"]
    assert registry.resolve("production") == "v1"
    for version, kind in (("v2", "errors"), ("v3", "slow"), ("v4", "shuffled")):
        manifest = registry.manifest(version)
        assert manifest.run_id == f"faulty-{kind}"
        note = json.loads(registry.read(version, "lineage.json"))["note"]
        assert note == manifest.summary["note"]
        assert note.startswith(f"deliberately faulty ({kind})") and "never passed the gate" in note
        # the contract is production's, so serving checks requests exactly as for v1
        assert registry.read(version, "contract.json") == registry.read("v1", "contract.json")


def test_the_errors_fault_refuses_the_rarest_category_only(
    drill: Settings, unseen_day: pd.DataFrame
) -> None:
    # given the rarest value of the first categorical feature in production's contract
    contract = json.loads(Registry.from_settings(drill).read("v1", "contract.json"))
    column, profile = next(iter(contract["categorical"].items()))
    rarest = min(profile["fractions"], key=profile["fractions"].__getitem__)
    faulty = _predictor(drill, "v2")
    carrying = unseen_day[unseen_day[column] == rarest]
    others = unseen_day[unseen_day[column] != rarest]
    assert len(carrying) > 0
    # then rows without it score, and a row with it fails as serving would (a server error)
    assert faulty.predict_proba(others).shape == (len(others), 2)
    with pytest.raises(ValueError, match="unknown categor"):
        faulty.predict_proba(carrying.head(1))
    # while production scores the same row
    assert _predictor(drill, "v1").predict_proba(carrying.head(1)).shape == (1, 2)


def test_the_slow_fault_gives_productions_answers_late(
    drill: Settings, unseen_day: pd.DataFrame
) -> None:
    rows = unseen_day.head(20)
    slow, production = _predictor(drill, "v3"), _predictor(drill, "v1")
    started = time.perf_counter()
    answers = slow.predict_proba(rows)
    assert time.perf_counter() - started >= SLOW_SECONDS
    np.testing.assert_array_equal(answers, production.predict_proba(rows))


def test_the_shuffled_fault_has_learnt_nothing(drill: Settings, unseen_day: pd.DataFrame) -> None:
    label = unseen_day[drill.features.label]
    shuffled = score(label, _predictor(drill, "v4").predict_proba(unseen_day)[:, 1])
    production = score(label, _predictor(drill, "v1").predict_proba(unseen_day)[:, 1])
    assert production.roc_auc > 0.75
    assert abs(shuffled.roc_auc - 0.5) < 0.1


def test_the_shuffled_fault_is_served_as_production_is_through_its_compiled_scorer(
    drill: Settings,
) -> None:
    # a slower scorer would be a second fault, which the canary's latency check could
    # catch before the scores' divergence that the drill is meant to show
    reg = Registry.from_settings(drill)
    for version in ("v1", "v4"):
        assert reg.read_optional(version, COMPILED_FILE) is not None, version
    assert json.loads(reg.read("v4", "lineage.json"))["scorer"]["scorer"].startswith("compiled")


def test_burn_cpu_returns_its_input_after_the_delay() -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    started = time.perf_counter()
    assert burn_cpu(frame) is frame
    assert time.perf_counter() - started >= SLOW_SECONDS
