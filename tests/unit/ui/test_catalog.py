"""The catalog: an object is read once; a listing is kept, then refreshed in the background."""

from __future__ import annotations

import time
from pathlib import Path

from flywheel.storage import LocalStore
from flywheel.ui.catalog import Catalog


class Counting(LocalStore):
    """A local store that counts its reads and listings."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0
        self.lists = 0

    def read(self, key: str) -> bytes:
        self.reads += 1
        return super().read(key)

    def list(self, prefix: str) -> list[str]:
        self.lists += 1
        return super().list(prefix)


def test_an_object_is_read_once_and_many_keeps_the_order(tmp_path: Path) -> None:
    store = Counting(tmp_path)
    for n in range(20):
        store.write(f"a/{n:02d}.json", f'{{"n": {n}}}'.encode())
    catalog = Catalog(store)
    keys = [f"a/{n:02d}.json" for n in reversed(range(20))]
    assert [o["n"] for o in catalog.many(keys)] == list(reversed(range(20)))
    assert catalog.json("a/03.json") == {"n": 3}
    assert store.reads == 20


def test_a_listing_is_served_stale_while_it_is_listed_again(tmp_path: Path) -> None:
    # given a listing kept, then a new object, with the listing past its ttl
    store = Counting(tmp_path)
    store.write("a/1.json", b"{}")
    now = [0.0]
    catalog = Catalog(store, ttl=2.0, clock=lambda: now[0])
    assert catalog.keys("a/") == ["a/1.json"]
    store.write("a/2.json", b"{}")
    assert catalog.keys("a/") == ["a/1.json"] and store.lists == 1  # within ttl: not listed
    now[0] = 5.0
    # when asked past the ttl, then the kept listing answers at once, and is listed again
    assert catalog.keys("a/") == ["a/1.json"]
    deadline = time.monotonic() + 5
    while catalog.keys("a/") != ["a/1.json", "a/2.json"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert catalog.keys("a/") == ["a/1.json", "a/2.json"]
    # and a fresh listing never waits for the ttl
    store.write("a/3.json", b"{}")
    assert catalog.fresh_keys("a/")[-1] == "a/3.json"


def test_the_kept_objects_are_bounded(tmp_path: Path) -> None:
    store = Counting(tmp_path)
    for n in range(10):
        store.write(f"a/{n}.json", b"1")
    catalog = Catalog(store, max_objects=4)
    catalog.many(f"a/{n}.json" for n in range(10))
    catalog.json("a/0.json")  # dropped first, so read again
    assert store.reads == 11


def test_a_slow_listing_is_listed_again_at_most_every_ten_times_its_time(tmp_path: Path) -> None:
    # given a listing that takes a second (on the catalog's clock)
    now = [0.0]

    class Slow(Counting):
        def list(self, prefix: str) -> list[str]:
            now[0] += 1.0
            return super().list(prefix)

    store = Slow(tmp_path)
    catalog = Catalog(store, ttl=2.0, clock=lambda: now[0])
    catalog.keys("a/")
    # when asked again past the ttl but within ten times the listing's time, then not listed
    now[0] = 8.0
    catalog.keys("a/")
    assert store.lists == 1
    # and past it, listed again (in the background)
    now[0] = 12.0
    catalog.keys("a/")
    deadline = time.monotonic() + 5
    while store.lists < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.lists == 2
