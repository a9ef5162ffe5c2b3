"""What the UI reads from the store, kept so that a page reads only what is new.

Every object the loop writes is create-only (versions, alias revisions, rollout records,
window records, trigger decisions, run records): once read, an object never changes, so the
catalog keeps what it read, up to a bound. Listings do change; the catalog keeps each one
for `ttl` seconds, and past that serves the one it has while a background thread lists
again, so a warm page never waits on a listing (stale by at most one refresh). A listing
that takes long (tens of thousands of keys on S3) is listed again at most every ten times
as long as it took, so refreshing never takes more than a tenth of the server's time. A
page reads its objects in parallel, and only those of the page it shows.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flywheel.storage import ObjectStore

LIST, CHILDREN = "list", "children"


class Catalog:
    """Cached listings and reads of one store."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        ttl: float = 2.0,
        workers: int = 16,
        max_objects: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self.max_objects = max_objects
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="catalog")
        self._lock = threading.Lock()
        # (LIST or CHILDREN, prefix) -> (listed at, how long it took, keys or folders)
        self._listings: dict[tuple[str, str], tuple[float, float, list[str]]] = {}
        self._refreshing: set[tuple[str, str]] = set()
        self._objects: OrderedDict[str, Any] = OrderedDict()

    def close(self) -> None:
        """Stop the reader threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- listings ---------------------------------------------------------------

    def keys(self, prefix: str) -> list[str]:
        """Every key below `prefix`, sorted: listed now on first use; after that the kept
        listing, listed again in the background once older than `ttl`."""
        return self._listed((LIST, prefix))

    def children(self, prefix: str) -> list[str]:
        """The folders right below `prefix` (ObjectStore.children), kept as `keys` are."""
        return self._listed((CHILDREN, prefix))

    def keys_of(self, prefixes: Iterable[str]) -> list[list[str]]:
        """`keys` of several prefixes, those never listed listed in parallel."""
        return list(self._pool.map(self.keys, prefixes))

    def fresh_keys(self, prefix: str) -> list[str]:
        """Every key below `prefix` listed now (a page that must not lag, such as a live
        rollout's, lists its small prefix every time)."""
        return self._list((LIST, prefix))

    def _listed(self, what: tuple[str, str]) -> list[str]:
        with self._lock:
            kept = self._listings.get(what)
            stale = kept is not None and self.clock() - kept[0] > max(self.ttl, 10 * kept[1])
            if stale and what not in self._refreshing:
                self._refreshing.add(what)
                self._pool.submit(self._refresh, what)
        if kept is None:
            return self._list(what)
        return kept[2]

    def _list(self, what: tuple[str, str]) -> list[str]:
        started = self.clock()
        kind, prefix = what
        keys = self.store.list(prefix) if kind == LIST else self.store.children(prefix)
        with self._lock:
            self._listings[what] = (started, self.clock() - started, keys)
        return keys

    def _refresh(self, what: tuple[str, str]) -> None:
        try:
            self._list(what)
        except Exception:  # the next page lists again, and shows the error if it persists
            with self._lock:
                self._listings.pop(what, None)
        finally:
            with self._lock:
                self._refreshing.discard(what)

    # --- objects ----------------------------------------------------------------

    def json(self, key: str) -> Any:
        """A JSON object, parsed once."""
        return self.many([key])[0]

    def many(self, keys: Iterable[str], *, missing_ok: bool = False) -> list[Any]:
        """JSON objects, in the order of `keys`: those not kept yet read in parallel. With
        `missing_ok`, None for an object not there (and not kept: it may be written yet)."""
        wanted = list(keys)
        found: dict[str, Any] = {}
        with self._lock:
            for key in wanted:
                if key in self._objects:
                    self._objects.move_to_end(key)
                    found[key] = self._objects[key]
        missing = [k for k in dict.fromkeys(wanted) if k not in found]
        if missing:
            reader = self._read_optional if missing_ok else self._read_json
            read = list(self._pool.map(reader, missing))
            found.update(zip(missing, read, strict=True))
            with self._lock:
                for key, value in zip(missing, read, strict=True):
                    if value is not None:
                        self._keep(key, value)
        return [found[key] for key in wanted]

    def raw(self, key: str) -> bytes:
        """An object's bytes (a report), kept like the rest."""
        with self._lock:
            if key in self._objects:
                self._objects.move_to_end(key)
                return bytes(self._objects[key])
        value = self.store.read(key)
        with self._lock:
            self._keep(key, value)
        return value

    def _read_json(self, key: str) -> Any:
        return json.loads(self.store.read(key))

    def _read_optional(self, key: str) -> Any:
        raw = self.store.read_optional(key)
        return json.loads(raw) if raw is not None else None

    def _keep(self, key: str, value: Any) -> None:
        self._objects[key] = value
        self._objects.move_to_end(key)
        while len(self._objects) > self.max_objects:
            self._objects.popitem(last=False)
