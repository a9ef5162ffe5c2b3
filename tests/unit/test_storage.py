"""The local object store: atomic writes, create-only writes, listing and bad keys."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flywheel.storage import (
    LocalStore,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
    open_store,
)


def test_write_read_list_delete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.write("a/b/c.json", b"1")
    store.write("a/d.json", b"2")
    assert store.read("a/b/c.json") == b"1"
    assert store.list("a") == ["a/b/c.json", "a/d.json"]
    assert store.list("") == ["a/b/c.json", "a/d.json"]
    assert store.list("nothing") == []
    # the folders right below a prefix, as S3 gives them with a delimiter
    assert store.children("a") == ["b"] and store.children("") == ["a"]
    assert store.children("nothing") == [] and store.children("a/d.json") == []
    store.delete("a/d.json")
    store.delete("a/d.json")  # deleting twice is fine
    assert not store.exists("a/d.json") and store.exists("a/b/c.json")
    assert store.read_optional("a/d.json") is None and store.read_optional("a/b/c.json") == b"1"
    with pytest.raises(ObjectNotFound, match="no such object"):
        store.read("a/d.json")


def test_create_only_refuses_an_existing_key_and_keeps_the_first_value(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write("k", b"first", create_only=True)
    with pytest.raises(ObjectExists):
        store.write("k", b"second", create_only=True)
    assert store.read("k") == b"first"
    assert store.list("") == ["k"]  # no temporary file left behind


def test_create_only_refuses_another_write_of_the_same_bytes(tmp_path: Path) -> None:
    # S3Store must agree: only a retried request of the same write is no conflict.
    store = LocalStore(tmp_path)
    store.write("k", b"same", create_only=True)
    with pytest.raises(ObjectExists):
        store.write("k", b"same", create_only=True)


def test_only_one_of_many_concurrent_create_only_writers_wins(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    wins: list[int] = []

    def attempt(i: int) -> None:
        try:
            store.write("claim", str(i).encode(), create_only=True)
            wins.append(i)
        except ObjectExists:
            pass

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.read("claim") == str(wins[0]).encode()


@pytest.mark.parametrize("key", ["", "../escape", "a/../../b", "/"])
def test_keys_cannot_escape_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        LocalStore(tmp_path).write(key, b"x")


def test_open_store_picks_the_backend_and_rejects_unknown_schemes(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    with pytest.raises(StoreError, match="unsupported store URI 'gs://bucket/x'"):
        open_store("gs://bucket/x")


def test_an_unusable_local_root_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="cannot use"):
        LocalStore(blocker / "store").check(create=True)
    with pytest.raises(StoreUnavailable, match="is a file, not a directory"):
        LocalStore(blocker).check()


def test_a_missing_directory_is_an_error_unless_asked_to_create_it(tmp_path: Path) -> None:
    # given a mistyped directory
    store = LocalStore(tmp_path / "dta")
    # when checked, then it is named and not created
    with pytest.raises(StoreUnavailable, match=r"dta: no such directory"):
        store.check()
    assert not (tmp_path / "dta").exists()
    # when a command that creates stores (data generate, a run's registry) checks it
    store.check(create=True)
    assert (tmp_path / "dta").is_dir()


def test_a_written_object_appears_whole_when_its_block_ends(tmp_path: Path) -> None:
    # given a key that holds an object
    store = LocalStore(tmp_path)
    store.write("day.parquet", b"old")
    # when a writer writes it anew, then the old object stays until the block ends
    with store.writer("day.parquet") as out:
        out.write(b"new ")
        out.write(bytearray(b"bytes"))
        assert store.read("day.parquet") == b"old" and out.tell() == 9
    # and the new one replaces it whole, with nothing else left in its folder
    assert store.read("day.parquet") == b"new bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.parquet"]
    with store.reader("day.parquet") as opened:
        opened.seek(4)
        assert opened.read() == b"bytes"
    with pytest.raises(ObjectNotFound):
        store.reader("none.parquet")


def test_a_writer_that_raises_or_discards_leaves_the_old_object_and_nothing_else(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    store.write("day.parquet", b"old")
    # when a writer's block raises halfway, or discards what it wrote
    with pytest.raises(RuntimeError, match="the source broke"):
        _write_then_fail(store)
    with store.writer("day.parquet") as out:
        out.write(b"nothing to gain")
        out.discard()
    with store.writer("other.parquet") as out:
        out.discard()
    # then the old object is there, unchanged, and no other file is
    assert store.read("day.parquet") == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.parquet"]


def _write_then_fail(store: LocalStore) -> None:
    """Write half an object through a writer whose block then raises."""
    with store.writer("day.parquet") as out:
        out.write(b"half")
        raise RuntimeError("the source broke")
