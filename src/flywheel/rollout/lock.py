"""One controller acts on a model's rollout at a time: it holds a lock that expires.

Two controllers that both ticked one rollout would both measure, both record a
decision and both move traffic before one of them lost the create-only write of
the next state. So a controller acts only while it holds the model's lock: here
a create-only object in the store, or on a cluster a coordination.k8s.io Lease
(`flywheel.rollout.lease`). The holder renews it from a background thread.

Another controller takes a lock over only once it is expired: released, held by
a process of this host that no longer exists, or left unrenewed for its whole
duration as the contender watched it. The last rule is client-go's: it times
the lock on the contender's own clock, so clocks that disagree cannot end a
lock early.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from flywheel.errors import FlywheelError
from flywheel.rollout.processes import identity
from flywheel.storage import ObjectExists, ObjectNotFound, ObjectStore, StoreError

log = logging.getLogger(__name__)

# Renewed every third of this; a holder stops acting after two thirds without a renewal.
LOCK_SECONDS = 15.0
_SAFE_SHARE = 2 / 3


class ControllerBusy(FlywheelError, RuntimeError):
    """Another controller holds the rollout's lock; nothing was changed."""


@dataclass(frozen=True)
class Holding:
    """Who holds a lock, since when, and for how long after each renewal."""

    holder: str  # "" once released
    renewed: float  # epoch seconds, by the holder's clock: for people, not for expiry
    seconds: float
    acquired: float = 0.0
    transitions: int = 0
    # The holding process, where the backend can keep it (the store lock).
    host: str = ""
    pid: int = 0
    started: str = ""


def holder_name() -> str:
    """This process on this host, plus a token: one per lock object."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Lock(ABC):
    """A lock that expires unless renewed, over a backend that can compare and swap."""

    def __init__(
        self,
        name: str,
        *,
        seconds: float = LOCK_SECONDS,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        renew_in_background: bool = True,
    ) -> None:
        self.name = name
        self.seconds = seconds
        self.holder = holder or holder_name()
        self.clock = clock
        self.sleep = sleep
        self.renew_in_background = renew_in_background
        self._mutex = threading.RLock()
        self._valid_until = -1.0
        self._seen: tuple[str | None, float] | None = None
        self._last: Holding | None = None
        self._stop: threading.Event | None = None

    # --- the backend ----------------------------------------------------------------

    @abstractmethod
    def _read(self) -> tuple[Holding | None, str | None]:
        """The current holding (None: never taken) and its version."""

    @abstractmethod
    def _write(self, holding: Holding, version: str | None) -> bool:
        """Write `holding` if the lock is still at `version`; False if another writer was first."""

    def _gone(self, holding: Holding) -> bool:
        """Whether the holder is known to be dead (a backend that can tell says so)."""
        return False

    def _mine(self, holding: Holding) -> Holding:
        return holding

    # --- holding --------------------------------------------------------------------

    def held(self) -> bool:
        """Whether this holder may act: its last renewal is recent enough."""
        with self._mutex:
            return self.clock() < self._valid_until

    def try_acquire(self) -> bool:
        """Take the lock, or renew it if this holder has it; False if another holder has it."""
        with self._mutex:
            started = self.clock()
            current, version = self._read()
            self._last = current
            mine = current is not None and current.holder == self.holder
            if current is not None and current.holder and not mine:
                if not self._expired(current, version, started):
                    self._valid_until = -1.0
                    return False
                log.warning(
                    "%s: taking over from %s, whose lock expired", self.name, current.holder
                )
            now = time.time()
            holding = self._mine(
                Holding(
                    holder=self.holder,
                    renewed=now,
                    seconds=self.seconds,
                    acquired=current.acquired if mine and current else now,
                    transitions=(current.transitions if current else 0) + (0 if mine else 1),
                )
            )
            if not self._write(holding, version):
                self._valid_until = -1.0
                return False
            self._seen = None
            self._last = holding
            # Timed from before the read: the holder stops acting before anyone may take over.
            self._valid_until = started + self.seconds * _SAFE_SHARE
            return True

    def _expired(self, current: Holding, version: str | None, now: float) -> bool:
        if self._gone(current):
            return True
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, now)
            return False
        return now - self._seen[1] >= current.seconds

    def acquire(self, wait: float = 0.0) -> None:
        """Hold the lock, waiting up to `wait` seconds for it, and renew it until released."""
        deadline = self.clock() + wait
        while not self.try_acquire():
            left = deadline - self.clock()
            if left <= 0:
                raise ControllerBusy(self.busy_message())
            self.sleep(min(left, max(self.seconds / 10, 0.05)))
        if self.renew_in_background and self._stop is None:
            self._stop = threading.Event()
            threading.Thread(
                target=self._renew, args=(self._stop,), name=f"renew {self.name}", daemon=True
            ).start()

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(self.seconds / 3):
            try:
                if not self.try_acquire():
                    log.error("%s: lost the lock to %s", self.name, self.owner())
                    return
            except Exception as error:  # a renewal that failed is retried; held() tells the actor
                log.warning("%s: could not renew the lock: %s", self.name, error)

    def release(self) -> None:
        """Let the lock go (best effort: an unreachable backend lets it expire instead)."""
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        with self._mutex:
            if self._valid_until < 0:
                return
            self._valid_until = -1.0
            try:
                current, version = self._read()
                if current is not None and current.holder == self.holder:
                    self._write(Holding(holder="", renewed=time.time(), seconds=0), version)
            except (FlywheelError, OSError) as error:
                log.warning("%s: could not release the lock, it will expire: %s", self.name, error)

    @contextlib.contextmanager
    def holding(self, wait: float = 0.0) -> Iterator[None]:
        """Hold the lock for a block (no-op if this holder holds it already)."""
        if self.held():
            yield
            return
        self.acquire(wait)
        try:
            yield
        finally:
            self.release()

    def owner(self) -> str:
        """Who holds the lock, as last read."""
        last = self._last
        return last.holder if last is not None and last.holder else "nobody"

    def busy_message(self) -> str:
        """Why this holder may not act, naming the one that may."""
        last = self._last
        if last is None or not last.holder:
            return f"{self.name}: could not take the lock; nothing was changed"
        ago = max(0.0, time.time() - last.renewed)
        return (
            f"{self.name} is held by {last.holder} (renewed {ago:.0f}s ago, for {last.seconds:.0f}s); "
            "nothing was changed: stop that controller or wait for its lock to expire"
        )


class StoreLock(Lock):
    """A lock kept as create-only revisions in the object store, like the rollout state.

    The newest revision is the lock; each renewal writes the next one, so two
    writers can never both win, and old revisions are pruned.
    """

    def __init__(self, store: ObjectStore, prefix: str, name: str, **options: object) -> None:
        super().__init__(name, **options)  # type: ignore[arg-type]
        self.store = store
        self.prefix = prefix.strip("/")
        self.host = socket.gethostname()
        me = identity(os.getpid())
        self.started = me.started if me else ""

    @classmethod
    def for_rollout(cls, store: ObjectStore, model_name: str, **options: object) -> StoreLock:
        """The lock of one model's rollout."""
        return cls(store, f"locks/rollout-{model_name}", f"the rollout of {model_name}", **options)

    def _key(self, revision: int) -> str:
        return f"{self.prefix}/{revision:08d}.json"

    def _read(self) -> tuple[Holding | None, str | None]:
        for _ in range(5):
            keys = self.store.list(self.prefix)
            if not keys:
                return None, None
            try:
                raw = json.loads(self.store.read(keys[-1]))
            except ObjectNotFound:  # pruned between the listing and the read
                continue
            return Holding(**raw), keys[-1].rsplit("/", 1)[-1].removesuffix(".json")
        raise StoreError(f"{self.store.location(self.prefix)}: the lock kept changing")

    def _write(self, holding: Holding, version: str | None) -> bool:
        revision = int(version or 0) + 1
        key = self._key(revision)
        try:
            self.store.write(key, json.dumps(asdict(holding)).encode(), create_only=True)
        except ObjectExists:
            return False
        keys = self.store.list(self.prefix)
        if keys[-1] != key:
            # Written over a revision read so long ago that it was pruned since: not the lock.
            self.store.delete(key)
            return False
        for old in keys[:-2]:
            with contextlib.suppress(StoreError):
                self.store.delete(old)
        return True

    def _mine(self, holding: Holding) -> Holding:
        return Holding(
            **{**asdict(holding), "host": self.host, "pid": os.getpid(), "started": self.started}
        )

    def _gone(self, holding: Holding) -> bool:
        if holding.host != self.host or not holding.pid or not holding.started:
            return False
        now = identity(holding.pid)
        return now is None or now.started != holding.started
