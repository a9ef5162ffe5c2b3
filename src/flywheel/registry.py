"""The model registry: immutable versions and compare-and-swap aliases on an object store.

Layout below `models/<name>/`:

    versions/v<n>/claim.json      create-only: whoever writes it owns number n
    versions/v<n>/<file>          the model, contract, metrics, lineage, reports
    versions/v<n>/manifest.json   create-only and written last: the version is complete
    versions/v<n>/records/...     decisions taken about the version later (rollouts)
    aliases/<alias>/<rev>.json    create-only: revision rev of the alias

Every write that matters is create-only, so two writers can never both win:
a version number has one owner, and an alias revision has one author. The
newest revision of an alias is its current value and the older ones are its
history.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field

from flywheel.errors import FlywheelError
from flywheel.records import Record
from flywheel.storage import ObjectExists, ObjectNotFound, ObjectStore, StoreError, open_store

if TYPE_CHECKING:
    from flywheel.config import Settings

log = logging.getLogger(__name__)

# The serialised model inside every version; serving loads exactly this file.
MODEL_FILE = "model.joblib"
CANDIDATE = "candidate"
PRODUCTION = "production"
_VERSION = re.compile(r"^v([1-9][0-9]*)$")
_ALIAS = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RESERVED = {"claim.json", "manifest.json"}


class RegistryError(FlywheelError, RuntimeError):
    """A registry operation was refused; the message says why."""


class VersionNotFound(RegistryError, KeyError):
    """No complete version with that name."""

    def __str__(self) -> str:
        return str(self.args[0])


class AliasConflict(RegistryError):
    """The alias moved since it was read; nothing was changed."""


class Manifest(Record):
    """A complete version: its files with their digests, and where it came from."""

    model_name: str
    version: str
    created_at: str
    run_id: str
    fingerprint: str
    files: dict[str, str]
    summary: dict[str, Any] = Field(default={})


class AliasState(Record):
    """One revision of an alias."""

    alias: str
    version: str
    revision: int
    previous: str | None
    at: str
    # Who moved it: `run <run id>` (a registration), `rollout <rollout id>` (the controller's
    # own decision) or a person and their command (`ada (flywheel promote)`); revisions
    # written before actors were recorded say `flywheel`.
    actor: str
    reason: str


def version_number(version: str) -> int:
    """3 for 'v3'; also accepts '3'."""
    match = _VERSION.match(version if version.startswith("v") else f"v{version}")
    if not match:
        raise RegistryError(f"{version!r} is not a version name like v3")
    return int(match.group(1))


# What stamps versions (created_at, claims) and alias moves: the wall clock, unless a
# simulation runs the registry on its simulated time (`stamped_by`).
_clock: ContextVar[Callable[[], datetime] | None] = ContextVar("registry_clock", default=None)


@contextmanager
def stamped_by(clock: Callable[[], datetime]) -> Iterator[None]:
    """Stamp versions and alias moves made in this block (this thread) with `clock`'s time."""
    token = _clock.set(clock)
    try:
        yield
    finally:
        _clock.reset(token)


def _now() -> str:
    clock = _clock.get()
    now = clock() if clock is not None else datetime.now(UTC)
    return now.astimezone(UTC).isoformat(timespec="milliseconds")


class Registry:
    """The versions and aliases of one model."""

    def __init__(self, store: ObjectStore, model_name: str) -> None:
        self.store = store
        self.model_name = model_name
        self.prefix = f"models/{model_name}"

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """The registry of the configured model in the configured store."""
        return cls(open_store(settings.storage.uri, settings.storage), settings.model_name)

    def lookup(self, name: str) -> str:
        """The complete version that `name` (v3, 3 or an alias) stands for."""
        if name.lstrip("v").isdigit():
            return self.manifest(name).version
        version = self.resolve(name)
        if version is None:
            raise VersionNotFound(f"alias {name!r} of {self.model_name} is not set")
        return version

    # --- versions ---------------------------------------------------------------

    def _version_key(self, version: str, name: str = "") -> str:
        key = f"{self.prefix}/versions/v{version_number(version)}"
        return f"{key}/{name}" if name else key

    def _claimed(self) -> dict[int, set[str]]:
        numbers: dict[int, set[str]] = {}
        for key in self.store.list(f"{self.prefix}/versions"):
            parts = key[len(self.prefix) + 1 :].split("/")
            match = _VERSION.match(parts[1]) if len(parts) >= 3 else None
            if match:
                numbers.setdefault(int(match.group(1)), set()).add("/".join(parts[2:]))
        return numbers

    def versions(self) -> list[Manifest]:
        """Every complete version, oldest first."""
        return [
            self.manifest(f"v{n}")
            for n, files in sorted(self._claimed().items())
            if "manifest.json" in files
        ]

    def incomplete(self) -> list[str]:
        """Claimed version numbers whose writer never finished (a crashed run)."""
        return [
            f"v{n}" for n, files in sorted(self._claimed().items()) if "manifest.json" not in files
        ]

    def manifest(self, version: str) -> Manifest:
        """The manifest of a complete version."""
        try:
            raw = self.store.read(self._version_key(version, "manifest.json"))
        except ObjectNotFound:
            raise VersionNotFound(f"{self.model_name} has no version {version}") from None
        return Manifest.model_validate_json(raw)

    def read(self, version: str, name: str) -> bytes:
        """A file of a version, checked against the digest in its manifest."""
        manifest = self.manifest(version)
        if name not in manifest.files:
            raise RegistryError(f"{self.model_name} {manifest.version} has no file {name!r}")
        raw = self.store.read(self._version_key(version, name))
        if hashlib.sha256(raw).hexdigest() != manifest.files[name]:
            raise RegistryError(
                f"{self.store.location(self._version_key(version, name))} does not match the "
                "digest in its manifest: the file was changed or damaged"
            )
        return raw

    def read_optional(self, version: str, name: str) -> bytes | None:
        """A file some versions have (the compiled scorer), digest-checked; None if absent."""
        if name not in self.manifest(version).files:
            return None
        return self.read(version, name)

    def location(self, version: str) -> str:
        """Where a version's files live."""
        return self.store.location(self._version_key(version))

    def find(self, fingerprint: str) -> Manifest | None:
        """The complete version with this fingerprint, if any."""
        return next((m for m in self.versions() if m.fingerprint == fingerprint), None)

    def register(
        self,
        files: Mapping[str, bytes],
        *,
        run_id: str,
        summary: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> Manifest:
        """Write a new immutable version and return its manifest.

        A version with the same fingerprint (by default the model file's digest)
        is returned as it is, so a re-run does not register a duplicate.
        """
        for name in files:
            if not _FILE.match(name) or name in _RESERVED:
                raise RegistryError(f"{name!r} cannot be a version file name")
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        fingerprint = fingerprint or digests.get(MODEL_FILE) or _digest_of(digests)
        existing = self.find(fingerprint)
        if existing is not None:
            log.info(
                "%s %s already holds this model; not registering it again",
                self.model_name,
                existing.version,
            )
            return existing
        number = max(self._claimed(), default=0) + 1
        while True:
            version = f"v{number}"
            claim = json.dumps({"run_id": run_id, "at": _now()}).encode()
            try:
                self.store.write(self._version_key(version, "claim.json"), claim, create_only=True)
                break
            except ObjectExists:
                number += 1
        written: list[str] = [self._version_key(version, "claim.json")]
        try:
            for name, data in files.items():
                key = self._version_key(version, name)
                self.store.write(key, data, create_only=True)
                written.append(key)
            manifest = Manifest(
                model_name=self.model_name,
                version=version,
                created_at=_now(),
                run_id=run_id,
                fingerprint=fingerprint,
                files=digests,
                summary=dict(summary or {}),
            )
            self.store.write(
                self._version_key(version, "manifest.json"),
                manifest.model_dump_json(indent=2).encode(),
                create_only=True,
            )
        except BaseException:
            self._discard(written)
            raise
        log.info("registered %s %s at %s", self.model_name, version, self.location(version))
        return manifest

    def _discard(self, keys: list[str]) -> None:
        # Best effort: if the store is down, the version stays incomplete and is ignored.
        for key in reversed(keys):
            try:
                self.store.delete(key)
            except StoreError as error:
                log.warning("could not remove %s after a failed registration: %s", key, error)
                return

    def add_record(self, version: str, kind: str, record: Mapping[str, Any]) -> str:
        """Attach a decision record to a version (versions stay immutable: records only add)."""
        self.manifest(version)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        key = self._version_key(version, f"records/{stamp}-{kind}.json")
        self.store.write(
            key, json.dumps(dict(record), indent=2, default=str).encode(), create_only=True
        )
        return self.store.location(key)

    def records(self, version: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The decision records of a version, oldest first; only those of `kind` when given
        (read by their key, so a rollout's many look records cost nothing to skip)."""
        prefix = self._version_key(version, "records")
        keys = self.store.list(prefix)
        if kind is not None:
            # A record's key is <stamp>-<kind>.json, and a stamp has no dash.
            keys = [
                key for key in keys if key.rsplit("/", 1)[-1].split("-", 1)[-1] == f"{kind}.json"
            ]
        return [json.loads(self.store.read(key)) for key in keys]

    # --- aliases ----------------------------------------------------------------

    def _alias_prefix(self, alias: str) -> str:
        if not _ALIAS.match(alias):
            raise RegistryError(f"{alias!r} is not an alias name")
        return f"{self.prefix}/aliases/{alias}"

    def history(self, alias: str, since: datetime | None = None) -> list[AliasState]:
        """Every revision of an alias, oldest first; with `since`, only those in force from
        then on (the one current at `since`, and every later one)."""
        found: list[AliasState] = []
        for key in reversed(self.store.list(self._alias_prefix(alias))):
            state = AliasState.model_validate_json(self.store.read(key))
            found.append(state)
            if since is not None and datetime.fromisoformat(state.at) <= since:
                break
        return found[::-1]

    def alias(self, alias: str) -> AliasState | None:
        """The current revision of an alias, or None if it was never set."""
        keys = self.store.list(self._alias_prefix(alias))
        return AliasState.model_validate_json(self.store.read(keys[-1])) if keys else None

    def resolve(self, alias: str) -> str | None:
        """The version an alias points at."""
        state = self.alias(alias)
        return state.version if state else None

    def move_alias(
        self,
        alias: str,
        version: str,
        *,
        expected: str | None,
        reason: str,
        actor: str,
    ) -> AliasState:
        """Point `alias` at `version` if it still points at `expected` (None: unset), recording
        who moved it (`actor`) and why.

        Raises AliasConflict, changing nothing, when the alias points elsewhere
        or another writer moves it at the same moment.
        """
        self.manifest(version)
        current = self.alias(alias)
        found = current.version if current else None
        if found != expected:
            raise AliasConflict(
                f"{self.model_name} {alias} points at {found or 'nothing'}, "
                f"not {expected or 'nothing'}: it was moved by someone else"
            )
        state = AliasState(
            alias=alias,
            version=f"v{version_number(version)}",
            revision=(current.revision if current else 0) + 1,
            previous=found,
            at=_now(),
            actor=actor,
            reason=reason,
        )
        key = f"{self._alias_prefix(alias)}/{state.revision:08d}.json"
        try:
            self.store.write(key, state.model_dump_json(indent=2).encode(), create_only=True)
        except ObjectExists:
            raise AliasConflict(
                f"{self.model_name} {alias} was moved by another writer at the same moment"
            ) from None
        log.info("%s %s -> %s by %s (%s)", self.model_name, alias, state.version, actor, reason)
        return state

    def set_alias(
        self, alias: str, version: str, *, reason: str, actor: str, attempts: int = 5
    ) -> bool:
        """Point `alias` at `version` whatever it pointed at, retrying when another writer
        races; False if it already pointed there."""
        for _ in range(attempts):
            current = self.resolve(alias)
            if current == version:
                return False
            try:
                self.move_alias(alias, version, expected=current, reason=reason, actor=actor)
                return True
            except AliasConflict:
                continue
        raise AliasConflict(f"could not move {alias} to {version}: it kept changing")


def _digest_of(digests: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(digests.items()))).encode()).hexdigest()
