"""Dated batches: one CSV or Parquet file per day, in a directory or under an s3:// prefix.

A batch is named after its day (`2026-01-14.parquet`) and is never rewritten:
runs are cached on the window's dates, so a day's file is treated as immutable.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flywheel.errors import FlywheelError
from flywheel.storage import ObjectStore

if TYPE_CHECKING:
    import pandas as pd

_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|parquet)$")
MANIFEST = "manifest.json"


class BatchError(FlywheelError, ValueError):
    """A batch is missing, ambiguous or unreadable; the message names the file."""


class PrivacyError(FlywheelError, ValueError):
    """PII cannot be handled as the contract requires (a hash without its salt)."""


@dataclass(frozen=True)
class Scrub:
    """What happens to the columns tagged pii before a window is written: dropped, or each
    value replaced by its HMAC-SHA256 under a secret salt (equal values stay equal, so a
    hashed column still joins and counts, but cannot be read back without the salt)."""

    columns: tuple[str, ...]
    mode: Literal["drop", "hash"] = "drop"
    salt: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.mode == "hash" and not self.salt:
            raise PrivacyError("hashing pii columns needs a salt, and it is empty")

    def digest(self, value: object) -> str:
        """The salted HMAC-SHA256 of a value's text, in hex; an integral float is hashed as
        its integer, so an ID hashes alike on a day with blanks (123.0) and without (123)."""
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            number = float(value)
            if number.is_integer():
                value = int(number)
        return hmac.new(self.salt, str(value).encode(), hashlib.sha256).hexdigest()

    def _digests(self, values: pd.Series) -> list[str | None]:
        import pandas as pd

        # Once per distinct value: a pii category repeats, an identifier does not. Missing
        # stays missing (and is no key: each NaN is a distinct one).
        done = {v: self.digest(v) for v in pd.unique(values.dropna())}
        return [None if pd.isna(v) else done[v] for v in values]

    def apply(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        """The frame without raw pii, and the pii columns it carried."""
        found = [c for c in self.columns if c in frame.columns]
        if not found:
            return frame, found
        if self.mode == "drop":
            return frame.drop(columns=found), found
        frame = frame.copy()
        for name in found:
            frame[name] = self._digests(frame[name])
        return frame, found


@dataclass(frozen=True)
class Batch:
    """One day's file in the source."""

    day: date
    key: str

    @property
    def format(self) -> str:
        """csv or parquet, from the file name."""
        return self.key.rsplit(".", 1)[1]

    @property
    def name(self) -> str:
        """The file name, e.g. 2026-01-14.parquet."""
        return self.key.rsplit("/", 1)[-1]


def parse(name: str, raw: bytes) -> pd.DataFrame:
    """Read a batch file's bytes; `name` picks the format and appears in errors."""
    import pandas as pd

    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(raw))
        return pd.read_csv(io.BytesIO(raw))
    except Exception as error:  # each reader raises its own family of errors
        kind = "Parquet" if name.endswith(".parquet") else "CSV"
        raise BatchError(f"batch {name} is not readable {kind}: {error}") from None


def columns(name: str, raw: bytes) -> list[str]:
    """A batch file's column names, from its Parquet schema or CSV header alone."""
    import csv

    try:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return [
                str(c) for c in pq.read_schema(io.BytesIO(raw)).names if c != "__index_level_0__"
            ]
        header = raw.split(b"\n", 1)[0].decode().rstrip("\r")
        return next(csv.reader([header]), [])
    except Exception:  # the full read names the problem
        return list(map(str, parse(name, raw).columns))


def serialise(frame: pd.DataFrame, fmt: str) -> bytes:
    """A batch file's bytes in csv or parquet."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


class BatchSource:
    """The dated batches below one store."""

    def __init__(self, store: ObjectStore, fmt: str = "auto") -> None:
        self.store = store
        self.fmt = fmt

    def available(self) -> list[Batch]:
        """Every batch, oldest first; two files for one day is an error."""
        found: dict[date, Batch] = {}
        for key in self.store.list(""):
            match = _NAME.match(key.rsplit("/", 1)[-1])
            if not match or "/" in key or (self.fmt != "auto" and match.group(2) != self.fmt):
                continue
            try:
                day = date.fromisoformat(match.group(1))
            except ValueError:
                continue
            if day in found:
                raise BatchError(
                    f"two batches for {day} in {self.store.uri}: {found[day].key}, {key}"
                )
            found[day] = Batch(day, key)
        return [found[d] for d in sorted(found)]

    def window(self, days: int, as_of: date | None = None) -> list[Batch]:
        """The batches of the `days` days ending at `as_of` (default: the newest batch)."""
        batches = self.available()
        if not batches:
            raise BatchError(
                f"no batches in {self.store.uri} (expected files like 2026-01-14.parquet)"
            )
        end = as_of or batches[-1].day
        start = end - timedelta(days=days - 1)
        chosen = [b for b in batches if start <= b.day <= end]
        if len(chosen) < 2:
            raise BatchError(
                f"the window {start}..{end} of {self.store.uri} holds {len(chosen)} batch(es); "
                "a run needs at least 2: older ones to train on and the newest to test on"
            )
        return chosen

    def fingerprint(self, chosen: Sequence[Batch]) -> str:
        """A cheap digest of the files' names and change tags (ETag, or size and mtime)."""
        tags = self.store.listing("")
        digest = hashlib.sha256()
        for batch in chosen:
            digest.update(f"{batch.key}\0{tags.get(batch.key, '')}\n".encode())
        return digest.hexdigest()

    def write(self, day: date, frame: pd.DataFrame, fmt: str = "parquet") -> str:
        """Write one day's batch; refuses to replace a day that already exists."""
        if any(b.day == day for b in self.available()):
            raise BatchError(f"a batch for {day} already exists in {self.store.uri}")
        key = f"{day.isoformat()}.{fmt}"
        self.store.write(key, serialise(frame, fmt), create_only=True)
        return self.store.location(key)


def window_hash(files: Sequence[tuple[str, bytes]]) -> str:
    """Content hash of a window: sha256 over each file's name and sha256."""
    outer = hashlib.sha256()
    for name, raw in sorted(files):
        outer.update(f"{name}\0{hashlib.sha256(raw).hexdigest()}\n".encode())
    return outer.hexdigest()


@dataclass(frozen=True)
class Window:
    """The batches one run reads: all but the newest train, the newest tests."""

    batches: list[tuple[str, pd.DataFrame]]
    content_hash: str

    @property
    def history(self) -> list[tuple[str, pd.DataFrame]]:
        """The older batches, for training."""
        return self.batches[:-1]

    @property
    def newest(self) -> tuple[str, pd.DataFrame]:
        """The newest batch, unseen in training."""
        return self.batches[-1]


def collect(
    source: BatchSource,
    days: int,
    as_of: date | None,
    out: Path,
    scrub: Scrub | None = None,
) -> dict[str, Any]:
    """Copy a window's files into `out` with a manifest; return the manifest.

    Files are copied unchanged, except that a file carrying a column `scrub` names is
    rewritten without its raw values first: nothing after ingest sees them.
    """
    out.mkdir(parents=True, exist_ok=True)
    files = []
    entries = []
    for batch in source.window(days, as_of):
        raw = source.store.read(batch.key)
        entry: dict[str, Any] = {"day": batch.day.isoformat(), "file": batch.name}
        if scrub is not None and scrub.columns:
            where = source.store.location(batch.key)
            # Column names only: what the source check at validate needs, never a value.
            entry["columns"] = columns(where, raw)
            if set(scrub.columns) & set(entry["columns"]):
                cleaned, found = scrub.apply(parse(where, raw))
                entry["pii"] = {"mode": scrub.mode, "columns": found}
                entry["source_sha256"] = hashlib.sha256(raw).hexdigest()
                raw = serialise(cleaned, batch.format)
        (out / batch.name).write_bytes(raw)
        files.append((batch.name, raw))
        entries.append({**entry, "sha256": hashlib.sha256(raw).hexdigest()})
    manifest: dict[str, Any] = {
        "source": source.store.uri,
        "batches": entries,
        "content_hash": window_hash(files),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def load(path: Path) -> Window:
    """Read a window written by `collect`, checking each file against its recorded hash."""
    manifest = json.loads((path / MANIFEST).read_text())
    batches = []
    files = []
    for entry in manifest["batches"]:
        raw = (path / entry["file"]).read_bytes()
        if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            raise BatchError(f"batch {entry['file']} changed after ingestion (sha256 mismatch)")
        files.append((entry["file"], raw))
        batches.append((entry["day"], parse(f"{manifest['source']}/{entry['file']}", raw)))
    return Window(batches=batches, content_hash=window_hash(files))


# scikit-learn's own tables, for `flywheel data split sklearn:<name>`: the examples' data.
SKLEARN_TABLES = {
    "breast_cancer": "load_breast_cancer",
    "wine": "load_wine",
    "diabetes": "load_diabetes",
    "iris": "load_iris",
}


def read_table(spec: str) -> pd.DataFrame:
    """A whole table to split into batches: `sklearn:<name>` (its features and a `target`
    column), or a CSV or Parquet file. Column names become identifiers (letters, digits
    and underscores), as the configuration names them."""

    if spec.startswith("sklearn:"):
        name = spec.removeprefix("sklearn:")
        loader = SKLEARN_TABLES.get(name)
        if loader is None:
            raise BatchError(
                f"{spec}: not one of scikit-learn's tables here ({', '.join(SKLEARN_TABLES)})"
            )
        import sklearn.datasets

        frame: pd.DataFrame = getattr(sklearn.datasets, loader)(as_frame=True).frame
    else:
        path = Path(spec)
        if not path.is_file():
            raise BatchError(f"{spec}: no such file")
        frame = parse(path.name, path.read_bytes())
    names = [re.sub(r"\W+", "_", str(c)).strip("_") or "column" for c in frame.columns]
    names = [f"_{n}" if n[0].isdigit() else n for n in names]
    if len(set(names)) != len(names):
        raise BatchError(f"{spec}: two columns have the same name once made identifiers")
    return frame.set_axis(names, axis=1)


def split_days(
    frame: pd.DataFrame,
    start: date,
    rows_per_day: int,
    time_column: str,
    seed: int | None = 0,
) -> list[tuple[date, pd.DataFrame]]:
    """A table as consecutive daily batches of `rows_per_day` rows (the last may be
    shorter), shuffled with `seed` first (None: in file order), each row stamped with a
    time in its day unless the table has `time_column` already."""
    import numpy as np
    import pandas as pd

    if seed is not None:
        frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    out = []
    for i, first in enumerate(range(0, len(frame), rows_per_day)):
        day = start + timedelta(days=i)
        part = frame.iloc[first : first + rows_per_day].copy()
        if time_column not in part.columns:
            seconds = np.linspace(0, 86_399, num=len(part)).astype(int)
            part[time_column] = pd.Timestamp(day) + pd.to_timedelta(seconds, unit="s")
        out.append((day, part.reset_index(drop=True)))
    return out
