"""Object storage: a local directory (the embedded default) or any S3-compatible server.

Both backends offer the same small interface, including a create-only write
that fails when the key exists. The registry builds immutable versions and
compare-and-swap aliases on that one primitive.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import logging
import os
import queue
import shutil
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast
from urllib.parse import urlparse

from flywheel.config import StorageSettings
from flywheel.errors import FlywheelError

if TYPE_CHECKING:
    import urllib3

T = TypeVar("T")
log = logging.getLogger(__name__)


# Keys of the Kubernetes Secret that holds S3 credentials, and the variables they become.
S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}


class StoreError(FlywheelError, RuntimeError):
    """The object store failed; the message says which store and why."""


class StoreUnavailable(StoreError):
    """The object store cannot be reached."""


class ObjectNotFound(StoreError, KeyError):
    """No object at that key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "object not found"


class ObjectExists(StoreError):
    """A create-only write found the key taken."""


class Sink(io.RawIOBase):
    """A file an object is being written into (`ObjectStore.writer`): what is written goes
    to `send`; `discard()` leaves no object. Closing it (pyarrow closes the file its writer
    wrote) does not finish the object: the writer's block does."""

    def __init__(self, send: Callable[[bytes], object]) -> None:
        super().__init__()
        self._send = send
        self._position = 0
        self.discarded = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed or self.discarded:
            raise ValueError("write to a closed or discarded object")
        chunk = bytes(data)
        self._send(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def discard(self) -> None:
        """Leave no object when the writer's block ends."""
        self.discarded = True


class ObjectStore(ABC):
    """Keys are '/'-separated paths below the store's root."""

    uri: str

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound."""

    @abstractmethod
    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        """Store `data` at `key` atomically; with create_only, raise ObjectExists if another
        write took the key (a retried request of this same write is no conflict)."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key below `prefix`, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object if it exists."""

    @abstractmethod
    def children(self, prefix: str) -> builtins.list[str]:
        """The names of the folders right below `prefix`, sorted: `models/m/versions` gives
        ["v1", "v2", ...], without listing what is inside them (one request on S3 for a
        thousand folders, where listing every key below them takes one per thousand keys)."""

    @abstractmethod
    def listing(self, prefix: str) -> dict[str, str]:
        """Every key below `prefix` with a tag that changes whenever the object does."""

    def upload(self, key: str, path: Path) -> None:
        """Store the file at `path` at `key` (a store that can, streams it, not holding it whole
        in memory)."""
        self.write(key, Path(path).read_bytes())

    def download(self, key: str, path: Path) -> None:
        """Copy the object at `key` into the file `path` (streamed where the store can);
        raises ObjectNotFound."""
        Path(path).write_bytes(self.read(key))

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[Sink]:
        """A file to write the object at `key` into, streamed where the store can (held
        whole neither in memory nor on local disk): the object appears whole when the block
        ends, or not at all when the block raises or discards it."""
        with tempfile.TemporaryDirectory(prefix="flywheel-write-") as scratch:
            path = Path(scratch) / "object"
            with path.open("wb") as handle:
                sink = Sink(handle.write)
                yield sink
            if not sink.discarded:
                self.upload(key, path)

    def reader(self, key: str) -> BinaryIO:
        """A seekable file of the object at `key`, read by ranges where the store can (never
        held whole); raises ObjectNotFound."""
        return io.BytesIO(self.read(key))

    def read_optional(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none (a store that is down still
        raises)."""
        try:
            return self.read(key)
        except ObjectNotFound:
            return None

    def exists(self, key: str) -> bool:
        """Whether an object is stored at `key`."""
        return self.read_optional(key) is not None

    def location(self, key: str) -> str:
        """A URI a person can paste to find the object."""
        return f"{self.uri.rstrip('/')}/{key}"

    def check(self, *, create: bool = False) -> None:
        """Fail fast with StoreUnavailable when the store cannot be used.

        A local directory that does not exist is an error unless `create`: a
        mistyped data directory must not be silently created empty.
        """
        self.list("__flywheel_probe__/")


def _clean(key: str) -> str:
    parts = [p for p in key.split("/") if p]
    if not parts or any(p in {".", ".."} for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return "/".join(parts)


class LocalStore(ObjectStore):
    """A local directory; writes are atomic renames."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _clean(key)

    def read(self, key: str) -> bytes:
        with self.reader(key) as handle:
            return handle.read()

    def _temporary(self, key: str) -> tuple[Path, int, str]:
        """The object's path, and a new hidden file beside it (its descriptor and name) that
        it is written in before it is renamed into place."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as error:
            raise StoreError(f"cannot write {self.location(key)}: {error}") from error
        return path, fd, tmp

    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        path, fd, tmp = self._temporary(key)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if create_only:
                # link() refuses an existing target atomically, unlike rename().
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists(f"{self.location(key)} already exists") from None
            else:
                os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def upload(self, key: str, path: Path) -> None:
        target = self._path(key)
        tmp = ""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            os.close(fd)
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except OSError as error:
            raise StoreError(f"cannot write {self.location(key)}: {error}") from error
        finally:
            if tmp:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[Sink]:
        path, fd, tmp = self._temporary(key)

        def send(data: bytes) -> None:
            try:
                handle.write(data)
            except OSError as error:
                raise StoreError(f"cannot write {self.location(key)}: {error}") from error

        try:
            with os.fdopen(fd, "wb") as handle:
                sink = Sink(send)
                yield sink
                if sink.discarded:
                    return
                try:
                    handle.flush()
                    os.fsync(handle.fileno())
                    os.replace(tmp, path)
                except OSError as error:
                    raise StoreError(f"cannot write {self.location(key)}: {error}") from error
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def reader(self, key: str) -> BinaryIO:
        try:
            # Strings, not Paths: pathlib's parsing was half of reading a small log file.
            return open(os.path.join(self.uri, _clean(key)), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"{self.location(key)}: no such object") from None

    def download(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as error:
            raise StoreError(f"cannot read {self.location(key)}: {error}") from error

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if not base.exists():
            return []
        if base.is_file():
            return [prefix.strip("/")]
        keys: builtins.list[str] = []
        for folder, _, files in os.walk(base):
            below = os.path.relpath(folder, self.root).replace(os.sep, "/")
            keys.extend(
                name if below == "." else f"{below}/{name}"
                for name in files
                if not name.startswith(".tmp-")
            )
        return sorted(keys)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def children(self, prefix: str) -> builtins.list[str]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        try:
            with os.scandir(base) as entries:
                return sorted(e.name for e in entries if e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def listing(self, prefix: str) -> dict[str, str]:
        out = {}
        for key in self.list(prefix):
            stat = (self.root / key).stat()
            out[key] = f"{stat.st_size}-{stat.st_mtime_ns}-{stat.st_ino}"
        return out

    def check(self, *, create: bool = False) -> None:
        if self.root.is_dir():
            return
        if self.root.exists():
            raise StoreUnavailable(f"{self.root} is a file, not a directory")
        if not create:
            raise StoreUnavailable(f"{self.root}: no such directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(f"cannot use {self.root} as the store: {error}") from error


# User metadata naming the create-only write that made an object (see S3Store.write).
WRITE_TOKEN = "flywheel-write"


def _create_only_pool(**options: Any) -> urllib3.PoolManager:
    """A urllib3 pool whose PUTs carry If-None-Match: *, so the server never overwrites.

    put_object() cannot send that header, and the SDK's own PUT is private, so
    the header is added here, below the SDK: it still signs the request, finds
    the bucket's region and parses the answer. Standard headers need no signature.
    """
    import urllib3

    class CreateOnlyPool(urllib3.PoolManager):
        def urlopen(  # type: ignore[override]  # PoolManager's own signature, as urllib3 has it
            self, method: str, url: str, redirect: bool = True, **kw: Any
        ) -> urllib3.BaseHTTPResponse:
            if method == "PUT":
                headers = urllib3.HTTPHeaderDict(kw.get("headers") or {})
                headers["If-None-Match"] = "*"
                kw["headers"] = headers
            return super().urlopen(method, url, redirect, **kw)

    return CreateOnlyPool(**options)


class S3Store(ObjectStore):
    """A bucket (and optional prefix) on an S3-compatible server, through the minio SDK."""

    def __init__(
        self,
        uri: str,
        *,
        endpoint: str | None,
        access_key: str | None,
        secret_key: str | None,
        secure: bool = True,
        region: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        import urllib3
        from minio import Minio

        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"{uri!r} is not an s3://bucket[/prefix] URI")
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint = endpoint or "s3.amazonaws.com"
        # urllib3 resends a PUT whose response was lost; write() allows for it.
        pool_options: dict[str, Any] = {
            "timeout": urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            "maxsize": 16,
            "retries": urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        }
        connect = functools.partial(
            Minio,
            self.endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
        )
        self.client = connect(http_client=urllib3.PoolManager(**pool_options))
        self._create_client = connect(http_client=_create_only_pool(**pool_options))

    def _key(self, key: str) -> str:
        key = _clean(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, action: str, request: Callable[[], T]) -> T:
        """Run one SDK request, turning its failures into StoreErrors that say what failed."""
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            return request()
        except S3Error as error:
            if error.code in {"NoSuchKey", "NoSuchObject"}:
                raise ObjectNotFound(f"{action}: no such object") from None
            if error.code in {"PreconditionFailed", "ConditionalRequestConflict"}:
                raise ObjectExists(f"{action}: the object already exists") from None
            if error.code == "NoSuchBucket":
                raise StoreError(f"{action}: bucket {self.bucket!r} does not exist") from None
            if error.code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                raise StoreError(
                    f"{action}: access denied ({error.code}); check the S3 keys"
                ) from None
            raise StoreError(f"{action}: {error.code}: {error.message}") from None
        except HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise StoreUnavailable(
                f"{action}: cannot reach the S3 endpoint {self.endpoint}: {reason}"
            ) from None

    def read(self, key: str) -> bytes:
        return self._range(key)

    def _range(self, key: str, offset: int = 0, length: int = 0, etag: str = "") -> bytes:
        """The object's bytes from `offset`, `length` of them (0: to its end); with `etag`,
        only from that version of the object."""
        action = f"read {self.location(key)}"

        def get() -> bytes:
            response = self.client.get_object(
                self.bucket,
                self._key(key),
                offset=offset,
                length=length,
                request_headers={"If-Match": f'"{etag}"'} if etag else None,
            )
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        try:
            return self._call(action, get)
        except ObjectExists:  # If-Match refused: replaced since it was opened
            raise StoreError(f"{action}: the object changed while it was read") from None

    def write(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        action = f"write {self.location(key)}"
        if not create_only:
            self._call(
                action,
                lambda: self.client.put_object(
                    self.bucket, self._key(key), io.BytesIO(data), len(data)
                ),
            )
            return
        from minio.helpers import MIN_PART_SIZE

        token = uuid.uuid4().hex
        try:
            self._call(
                action,
                lambda: self._create_client.put_object(
                    self.bucket,
                    self._key(key),
                    io.BytesIO(data),
                    len(data),
                    metadata={WRITE_TOKEN: token},
                    # One PUT, never a multipart upload: the condition covers the whole object.
                    part_size=max(len(data), MIN_PART_SIZE),
                ),
            )
        except ObjectExists:
            if not self._written_by(key, token):
                raise
            log.info("%s: the server had already taken this write (a retried request)", action)

    def upload(self, key: str, path: Path) -> None:
        # A multipart upload from the file: the object appears whole, or not at all.
        self._call(
            f"write {self.location(key)}",
            lambda: self.client.fput_object(self.bucket, self._key(key), str(path)),
        )

    def download(self, key: str, path: Path) -> None:
        self._call(
            f"read {self.location(key)}",
            lambda: self.client.fget_object(self.bucket, self._key(key), str(path)),
        )

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[Sink]:
        # A multipart upload fed from this thread: the object appears when the upload
        # completes, after the last part; a block that raises or discards makes the
        # upload's read raise, and the SDK then aborts it, so no object appears.
        action = f"write {self.location(key)}"
        parts: queue.Queue[bytes | _Abort | None] = queue.Queue(maxsize=_QUEUED_WRITES)
        failed: list[BaseException] = []

        def upload() -> None:
            source = _Fed(parts)
            try:
                self._call(
                    action,
                    lambda: self.client.put_object(
                        self.bucket,
                        self._key(key),
                        cast(BinaryIO, source),
                        length=-1,
                        part_size=STREAM_PART,
                    ),
                )
            except BaseException as error:
                failed.append(error)
            finally:
                source.drain()

        thread = threading.Thread(target=upload, name="flywheel-upload", daemon=True)
        thread.start()

        def send(item: bytes | _Abort | None) -> None:
            while True:
                if failed:
                    raise failed[0]
                if not thread.is_alive():
                    raise StoreError(f"{action}: the upload stopped")
                with contextlib.suppress(queue.Full):
                    parts.put(item, timeout=0.2)
                    return

        sink = Sink(send)
        ended = False
        try:
            yield sink
            if not sink.discarded:
                send(None)
                ended = True
        finally:
            if not ended:
                with contextlib.suppress(BaseException):
                    send(_Abort())
            thread.join()
        if ended and failed:
            raise failed[0]

    def reader(self, key: str) -> BinaryIO:
        stat = self._call(
            f"read {self.location(key)}",
            lambda: self.client.stat_object(self.bucket, self._key(key)),
        )
        return cast(BinaryIO, _Ranged(self, key, int(stat.size or 0), stat.etag or ""))

    def _written_by(self, key: str, token: str) -> bool:
        """Whether the object at `key` was made by the create-only write carrying `token`.

        urllib3 resends a PUT whose response was lost. If the first attempt went
        through, the resent one is refused because the object exists: the token
        tells that apart from another writer's object, even one with the same bytes.
        """
        action = f"check {self.location(key)}"
        try:
            stat = self._call(action, lambda: self.client.stat_object(self.bucket, self._key(key)))
        except ObjectNotFound:
            return False
        return bool((stat.metadata or {}).get(f"x-amz-meta-{WRITE_TOKEN}") == token)

    def list(self, prefix: str) -> list[str]:
        return sorted(self.listing(prefix))

    def listing(self, prefix: str) -> dict[str, str]:
        stem = prefix.strip("/")
        full = f"{self._key(stem)}/" if stem else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0

        def tags() -> dict[str, str]:
            objects = self.client.list_objects(self.bucket, prefix=full, recursive=True)
            return {
                o.object_name[strip:]: f"{o.size}-{o.etag}"
                for o in objects
                if o.object_name is not None
            }

        return self._call(f"list {self.location(prefix)}", tags)

    def delete(self, key: str) -> None:
        self._call(
            f"delete {self.location(key)}",
            lambda: self.client.remove_object(self.bucket, self._key(key)),
        )

    def children(self, prefix: str) -> builtins.list[str]:
        stem = prefix.strip("/")
        full = f"{self._key(stem)}/" if stem else (f"{self.prefix}/" if self.prefix else "")

        def folders() -> builtins.list[str]:
            listed = self.client.list_objects(self.bucket, prefix=full, recursive=False)
            return sorted(
                o.object_name[len(full) :].rstrip("/")
                for o in listed
                if o.object_name is not None and o.is_dir
            )

        return self._call(f"list {self.location(prefix)}", folders)

    def check(self, *, create: bool = False) -> None:
        if not self._call(f"open {self.uri}", lambda: self.client.bucket_exists(self.bucket)):
            raise StoreError(f"open {self.uri}: bucket {self.bucket!r} does not exist")

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""
        action = f"create bucket {self.bucket}"
        if not self._call(action, lambda: self.client.bucket_exists(self.bucket)):
            self._call(action, lambda: self.client.make_bucket(self.bucket))


# A streamed upload's part (S3's least is 5 MiB), and the writes queued ahead of it.
STREAM_PART = 16 * 1024 * 1024
_QUEUED_WRITES = 16
# A ranged read asks for at least this much, and keeps it for the reads that follow.
_READ_AHEAD = 4 * 1024 * 1024


class _Abort:
    """What a writer's block sends its upload when it raises or discards the object."""


class _Fed(io.RawIOBase):
    """The stream a streamed upload reads: the writer's bytes, from a queue; a read raises
    when the writer aborts, so that the SDK aborts the upload."""

    def __init__(self, parts: queue.Queue[bytes | _Abort | None]) -> None:
        super().__init__()
        self._parts = parts
        self._held = bytearray()
        self._ended = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or len(self._held) < size):
            item = self._parts.get()
            if isinstance(item, _Abort):
                self._ended = True
                raise StoreError("the object's writer stopped: upload aborted")
            if item is None:
                self._ended = True
            else:
                self._held.extend(item)
        taken = len(self._held) if size < 0 else min(size, len(self._held))
        out = bytes(self._held[:taken])
        del self._held[:taken]
        return out

    def drain(self) -> None:
        """Take whatever the writer still sends, so that it never waits on a full queue."""
        while True:
            try:
                self._parts.get_nowait()
            except queue.Empty:
                return


class _Ranged(io.RawIOBase):
    """An object on S3 as a seekable file, read by ranged GETs of at least _READ_AHEAD, each
    of the version opened (its ETag): one replaced meanwhile fails the read, never mixes."""

    def __init__(self, store: S3Store, key: str, size: int, etag: str) -> None:
        super().__init__()
        self._store, self._key, self._size, self._etag = store, key, size, etag
        self._position = 0
        self._start, self._held = 0, b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def read(self, size: int = -1) -> bytes:
        end = self._size if size < 0 else min(self._position + size, self._size)
        if end <= self._position:
            return b""
        inside = self._start <= self._position and end <= self._start + len(self._held)
        if not inside:
            length = max(end - self._position, _READ_AHEAD)
            held = self._store._range(self._key, self._position, length, self._etag)
            self._start, self._held = self._position, held
        out = self._held[self._position - self._start : end - self._start]
        self._position += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_store(uri: str, settings: StorageSettings | None = None) -> ObjectStore:
    """The store behind `uri`: s3://bucket[/prefix] or a directory path."""
    settings = settings or StorageSettings()
    if uri.startswith("s3://"):
        return S3Store(
            uri,
            endpoint=settings.endpoint,
            access_key=os.environ.get(settings.access_key_env),
            secret_key=os.environ.get(settings.secret_key_env),
            secure=settings.secure,
            region=settings.region,
        )
    if "://" in uri:
        raise StoreError(f"unsupported store URI {uri!r}: use a directory or s3://bucket/prefix")
    return LocalStore(uri)
