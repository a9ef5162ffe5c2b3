"""Dated batch sources: listing, windows, formats, corrupt files and content hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from flywheel.batches import BatchError, BatchSource, PrivacyError, Scrub, collect, load, parse
from flywheel.config import Settings
from flywheel.storage import LocalStore


def test_window_ends_at_the_newest_batch_or_as_of(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    make_batches(settings, 6)
    source = BatchSource(LocalStore(settings.data.source))
    assert [b.day.day for b in source.window(3)] == [4, 5, 6]
    assert [b.day.day for b in source.window(3, date(2026, 1, 2))] == [1, 2]


def test_csv_and_parquet_read_back_the_same_rows(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    make_batches(settings, 1, fmt="csv")
    make_batches(settings, 1, start=date(2026, 1, 2))
    window = tmp_path / "w"
    manifest = collect(BatchSource(LocalStore(settings.data.source)), 5, None, window)
    loaded = load(window)
    assert [b["file"] for b in manifest["batches"]] == ["2026-01-01.csv", "2026-01-02.parquet"]
    assert [len(f) for _, f in loaded.batches] == [600, 600]
    assert loaded.content_hash == manifest["content_hash"]


def test_the_content_hash_changes_with_any_byte(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    make_batches(settings, 2)
    source = BatchSource(LocalStore(settings.data.source))
    first = collect(source, 5, None, tmp_path / "a")["content_hash"]
    assert collect(source, 5, None, tmp_path / "b")["content_hash"] == first
    (tmp_path / "a" / "2026-01-02.parquet").write_bytes(b"changed")
    with pytest.raises(BatchError, match="changed after ingestion"):
        load(tmp_path / "a")


def test_problems_with_the_source_are_named(tmp_path: Path) -> None:
    source = BatchSource(LocalStore(tmp_path))
    with pytest.raises(BatchError, match="no batches in"):
        source.window(5)
    (tmp_path / "2026-01-01.csv").write_text("a,b\n1,2\n")
    with pytest.raises(BatchError, match="holds 1 batch"):
        source.window(5)
    (tmp_path / "2026-01-01.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(BatchError, match="two batches for 2026-01-01"):
        source.available()


def test_a_corrupt_batch_is_named(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "src")
    store.write("2026-01-01.parquet", b"this is not parquet")
    store.write("2026-01-02.parquet", b"nor this")
    collect(BatchSource(store), 5, None, tmp_path / "w")
    # the error names where the batch came from, so it can be found and fixed
    where = re.escape(str(tmp_path / "src" / "2026-01-01.parquet"))
    with pytest.raises(BatchError, match=f"batch {where} is not readable Parquet"):
        load(tmp_path / "w")


def test_batches_are_never_overwritten(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]]
) -> None:
    settings = small_settings()
    make_batches(settings, 1)
    with pytest.raises(BatchError, match="already exists"):
        make_batches(settings, 1)


def _with_ssn(source: BatchSource, fmt: str) -> list[str]:
    """Two small batches carrying a person's number, one with a null."""
    numbers = ["900-12-3456", None, "900-65-4321"]
    for day in (date(2026, 1, 1), date(2026, 1, 2)):
        frame = pd.DataFrame({"income": [1.0, 2.0, 3.0], "ssn": numbers})
        source.write(day, frame, fmt)
    return [n for n in numbers if n]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_ingest_drops_pii_columns_before_it_writes_the_window(fmt: str, tmp_path: Path) -> None:
    # given batches carrying a person's number
    source = BatchSource(LocalStore(tmp_path / "src"))
    numbers = _with_ssn(source, fmt)
    # when the window is collected with ssn to drop
    manifest = collect(source, 5, None, tmp_path / "w", Scrub(("ssn",)))
    # then no written file holds a number, the rows are kept and the hashes match the files
    for path in (tmp_path / "w").iterdir():
        assert not any(n.encode() in path.read_bytes() for n in numbers), path
    loaded = load(tmp_path / "w")
    assert [list(frame.columns) for _, frame in loaded.batches] == [["income"], ["income"]]
    assert loaded.content_hash == manifest["content_hash"]
    # and the manifest names the columns as delivered and what was dropped, never a value
    entry = manifest["batches"][0]
    assert entry["columns"] == ["income", "ssn"]
    assert entry["pii"] == {"mode": "drop", "columns": ["ssn"]}
    assert entry["source_sha256"] != entry["sha256"]


def test_ingest_can_hash_pii_with_a_salt_instead(tmp_path: Path) -> None:
    # given batches carrying a person's number, and a salt
    source = BatchSource(LocalStore(tmp_path / "src"))
    numbers = _with_ssn(source, "parquet")
    scrub = Scrub(("ssn",), "hash", b"salt")
    # when the window is collected with ssn to hash
    collect(source, 5, None, tmp_path / "w", scrub)
    # then each number is its salted HMAC-SHA256, equal numbers stay equal and nulls null
    (_, first), (_, second) = load(tmp_path / "w").batches
    digest = [hmac.new(b"salt", n.encode(), hashlib.sha256).hexdigest() for n in numbers]
    assert first["ssn"].fillna("null").tolist() == [digest[0], "null", digest[1]]
    assert second["ssn"].equals(first["ssn"])
    assert Scrub(("ssn",), "hash", b"other").digest(numbers[0]) != digest[0]
    # and a hash without a salt is refused at once
    with pytest.raises(PrivacyError, match="needs a salt"):
        Scrub(("ssn",), "hash", b"")


def test_a_hashed_numeric_id_keeps_its_blanks_and_hashes_alike_with_or_without_them() -> None:
    # given an ID column read as float64 on a day with a blank, and as int64 on a day without
    scrub = Scrub(("id",), "hash", b"salt")
    with_blank = pd.DataFrame({"id": [123.0, float("nan"), 7.0, float("nan")]})
    without = pd.DataFrame({"id": [123, 7]})
    # when each is hashed
    hashed, found = scrub.apply(with_blank)
    plain, _ = scrub.apply(without)
    # then the blanks stay missing and each ID hashes as its integer's text, on both days
    assert found == ["id"]
    assert hashed["id"].isna().tolist() == [False, True, False, True]
    digest = [hmac.new(b"salt", n.encode(), hashlib.sha256).hexdigest() for n in ("123", "7")]
    assert hashed["id"].dropna().tolist() == digest == plain["id"].tolist()
    # and a fraction keeps its digits
    assert scrub.digest(1.5) == scrub.digest("1.5") != scrub.digest(1)


def test_the_salt_is_not_in_a_scrubs_repr() -> None:
    scrub = Scrub(("ssn",), "hash", b"s3cret-salt")
    assert "s3cret" not in repr(scrub) and "salt=" not in repr(scrub)
    assert "ssn" in repr(scrub) and "hash" in repr(scrub)


def test_batches_without_the_pii_column_are_copied_unchanged(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    make_batches(settings, 2)
    source = BatchSource(LocalStore(settings.data.source))
    collect(source, 5, None, tmp_path / "w", Scrub(("ssn",)))
    for name in ("2026-01-01.parquet", "2026-01-02.parquet"):
        assert (tmp_path / "w" / name).read_bytes() == source.store.read(name)
    assert len(parse(name, (tmp_path / "w" / name).read_bytes())) == 600
