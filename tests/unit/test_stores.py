"""The stores one process reaches: each opened at its first use, once, and shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel import stores as stores_module
from flywheel.config import StorageSettings, load_settings
from flywheel.storage import ObjectStore, open_store
from flywheel.stores import Stores


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URIs the stores module opens, in order."""
    uris: list[str] = []

    def counting(uri: str, settings: StorageSettings | None = None) -> ObjectStore:
        uris.append(uri)
        return open_store(uri, settings)

    monkeypatch.setattr(stores_module, "open_store", counting)
    return uris


def test_each_store_is_opened_at_its_first_use_and_then_kept(
    tmp_path: Path, opened: list[str]
) -> None:
    # given the stores of a project whose batches are CSV files beside its store
    settings = load_settings(
        None,
        env={},
        overrides=[
            f"storage.uri={tmp_path / 'store'}",
            f"data.source={tmp_path / 'batches'}",
            "data.format=csv",
            "model_name=churn",
        ],
    )
    stores = Stores(settings)
    # then nothing is opened until it is used
    assert opened == []
    # when the registry, the engine's books and the batches are asked for, twice each
    registry, ledger, source = stores.registry, stores.ledger, stores.source
    assert (stores.registry, stores.ledger, stores.source) == (registry, ledger, source)
    # then each store was opened once, and the registry and the books share theirs
    assert opened == [str(tmp_path / "store"), str(tmp_path / "batches")]
    assert registry.store is ledger.store is stores.models
    assert (registry.model_name, ledger.prefix) == ("churn", "triggers/churn")
    assert source.store.uri == str(tmp_path / "batches") and source.fmt == "csv"


def test_batches_in_the_models_store_share_it(tmp_path: Path, opened: list[str]) -> None:
    settings = load_settings(
        None, env={}, overrides=[f"storage.uri={tmp_path}", f"data.source={tmp_path}"]
    )
    stores = Stores(settings)
    assert stores.source.store is stores.registry.store
    assert opened == [str(tmp_path)]
