"""The registry: immutable versions, compare-and-swap aliases, kept history, crash recovery."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from flywheel.registry import AliasConflict, Registry, RegistryError, VersionNotFound
from flywheel.storage import LocalStore, ObjectExists


def _files(tag: str) -> dict[str, bytes]:
    return {"model.joblib": f"model {tag}".encode(), "contract.json": b"{}"}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(LocalStore(tmp_path), "m")


def test_versions_are_numbered_and_readable(registry: Registry) -> None:
    v1 = registry.register(_files("a"), run_id="r1", summary={"auc": 0.8})
    v2 = registry.register(_files("b"), run_id="r2")
    assert (v1.version, v2.version) == ("v1", "v2")
    assert [m.version for m in registry.versions()] == ["v1", "v2"]
    assert registry.read("v1", "model.joblib") == b"model a"
    assert registry.manifest("2").run_id == "r2"
    assert registry.manifest("v1").summary == {"auc": 0.8}


def test_the_same_model_is_not_registered_twice(registry: Registry) -> None:
    first = registry.register(_files("a"), run_id="r1")
    again = registry.register(_files("a"), run_id="r2")
    assert again.version == first.version and len(registry.versions()) == 1


def test_versions_are_immutable(registry: Registry) -> None:
    registry.register(_files("a"), run_id="r1")
    with pytest.raises(ObjectExists):
        registry.store.write("models/m/versions/v1/model.joblib", b"tampered", create_only=True)
    # A file changed behind the registry's back is detected on read.
    path = Path(registry.store.uri) / "models/m/versions/v1/model.joblib"
    path.write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="does not match the digest"):
        registry.read("v1", "model.joblib")


def test_unknown_versions_and_files_are_clear_errors(registry: Registry) -> None:
    with pytest.raises(VersionNotFound, match="m has no version v9"):
        registry.manifest("v9")
    registry.register(_files("a"), run_id="r1")
    with pytest.raises(RegistryError, match="has no file 'nope'"):
        registry.read("v1", "nope")
    with pytest.raises(RegistryError, match="not a version name"):
        registry.manifest("latest")
    with pytest.raises(RegistryError, match="cannot be a version file name"):
        registry.register({"../x": b""}, run_id="r")


def test_aliases_move_with_compare_and_swap_and_keep_history(registry: Registry) -> None:
    registry.register(_files("a"), run_id="r1")
    registry.register(_files("b"), run_id="r2")
    registry.move_alias("production", "v1", expected=None, reason="first", actor="test")
    registry.move_alias("production", "v2", expected="v1", reason="better", actor="test")
    with pytest.raises(AliasConflict, match="points at v2, not v1"):
        registry.move_alias("production", "v1", expected="v1", reason="stale", actor="test")
    assert registry.resolve("production") == "v2"
    history = registry.history("production")
    assert [(h.previous, h.version, h.reason) for h in history] == [
        (None, "v1", "first"),
        ("v1", "v2", "better"),
    ]
    with pytest.raises(VersionNotFound):
        registry.move_alias("production", "v7", expected="v2", reason="missing", actor="test")


def test_each_alias_revision_records_who_moved_it_and_why(registry: Registry) -> None:
    # given two versions
    registry.register(_files("a"), run_id="r1")
    registry.register(_files("b"), run_id="r2")
    # when a run sets the candidate, and a rollout then moves production
    assert registry.set_alias("candidate", "v1", reason="blessed by the gate", actor="run r1")
    assert not registry.set_alias("candidate", "v1", reason="again", actor="run r1")
    registry.move_alias("production", "v1", expected=None, reason="first", actor="run r1")
    registry.move_alias(
        "production", "v2", expected="v1", reason="rollout: every step passed", actor="rollout v2-1"
    )
    # then each revision names its actor and reason (setting the alias again wrote nothing)
    assert [(h.actor, h.reason) for h in registry.history("candidate")] == [
        ("run r1", "blessed by the gate")
    ]
    assert [(h.version, h.actor, h.reason) for h in registry.history("production")] == [
        ("v1", "run r1", "first"),
        ("v2", "rollout v2-1", "rollout: every step passed"),
    ]


def test_an_alias_is_never_moved_without_an_actor(registry: Registry) -> None:
    registry.register(_files("a"), run_id="r1")
    with pytest.raises(TypeError, match="actor"):
        registry.move_alias("production", "v1", expected=None, reason="first")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="actor"):
        registry.set_alias("production", "v1", reason="first")  # type: ignore[call-arg]
    assert registry.resolve("production") is None


def test_a_revision_written_before_actors_were_recorded_still_loads(
    registry: Registry, tmp_path: Path
) -> None:
    # given a revision as the registry wrote it before: every actor was "flywheel"
    registry.register(_files("a"), run_id="r1")
    old = {
        "alias": "production",
        "version": "v1",
        "revision": 1,
        "previous": None,
        "at": "2026-01-01T00:00:00.000+00:00",
        "actor": "flywheel",
        "reason": "first model: nothing was in production",
    }
    registry.store.write("models/m/aliases/production/00000001.json", json.dumps(old).encode())
    # when read, and moved on from, then the old revision loads and the new one has its actor
    assert registry.alias("production").actor == "flywheel"  # type: ignore[union-attr]
    registry.move_alias(
        "production", "v1", expected="v1", reason="again", actor="ada (flywheel promote)"
    )
    assert [h.actor for h in registry.history("production")] == [
        "flywheel",
        "ada (flywheel promote)",
    ]


def _promote(root: str, barrier: object, results: object, i: int) -> None:
    reg = Registry(LocalStore(root), "m")
    barrier.wait()  # type: ignore[attr-defined]
    try:
        reg.move_alias(
            "production", f"v{2 + i % 2}", expected="v1", reason=f"writer {i}", actor="test"
        )
        results.put(("won", i))  # type: ignore[attr-defined]
    except AliasConflict:
        results.put(("lost", i))  # type: ignore[attr-defined]


def test_of_concurrent_promotions_exactly_one_wins(tmp_path: Path) -> None:
    # given production at v1 and eight processes that all read v1 and promote at once
    registry = Registry(LocalStore(tmp_path), "m")
    for tag in "abc":
        registry.register(_files(tag), run_id="r")
    registry.move_alias("production", "v1", expected=None, reason="first", actor="test")
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    workers = [
        ctx.Process(target=_promote, args=(str(tmp_path), barrier, results, i)) for i in range(8)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    outcomes = [results.get(timeout=5) for _ in workers]
    # then one promotion took effect and the history has exactly one more revision
    winners = [i for what, i in outcomes if what == "won"]
    assert len(winners) == 1
    assert len(registry.history("production")) == 2
    assert registry.alias("production").reason == f"writer {winners[0]}"  # type: ignore[union-attr]


def test_a_crashed_registration_does_not_block_the_next(registry: Registry) -> None:
    # given a run that claimed v1 and died before writing its manifest
    registry.store.write("models/m/versions/v1/claim.json", b"{}", create_only=True)
    registry.store.write("models/m/versions/v1/model.joblib", b"half", create_only=True)
    # when the next run registers
    manifest = registry.register(_files("a"), run_id="r2")
    # then it gets the next number, and the incomplete one is ignored but visible
    assert manifest.version == "v2"
    assert [m.version for m in registry.versions()] == ["v2"]
    assert registry.incomplete() == ["v1"]


def test_a_failed_write_cleans_up_its_claim(tmp_path: Path) -> None:
    class FailingStore(LocalStore):
        def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
            if key.endswith("contract.json"):
                raise OSError("disk full")
            super().write(key, data, create_only=create_only)

    registry = Registry(FailingStore(tmp_path), "m")
    with pytest.raises(OSError, match="disk full"):
        registry.register(_files("a"), run_id="r1")
    assert registry.versions() == [] and registry.incomplete() == []
    assert registry.store.list("") == []


def test_records_attach_to_a_version_without_changing_it(registry: Registry) -> None:
    registry.register(_files("a"), run_id="r1")
    registry.add_record("v1", "rollout", {"decision": "rolled back", "reason": "p99"})
    assert registry.records("v1")[0]["decision"] == "rolled back"
    assert registry.read("v1", "model.joblib") == b"model a"


def test_records_of_one_kind_are_read_alone(registry: Registry) -> None:
    # given a version with records of several kinds, one kind's name ending another's
    registry.register(_files("a"), run_id="r1")
    registry.add_record("v1", "rollout-look", {"look": 1})
    registry.add_record("v1", "rollout-step", {"step": 1})
    registry.add_record("v1", "step", {"other": True})
    registry.add_record("v1", "rollout-look", {"look": 2})
    # then asking for one kind returns those alone, oldest first
    assert registry.records("v1", "rollout-look") == [{"look": 1}, {"look": 2}]
    assert registry.records("v1", "step") == [{"other": True}]
    assert len(registry.records("v1")) == 4
