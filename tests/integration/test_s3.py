"""The S3 backend against a real SeaweedFS server on loopback, and the pipeline with S3 as its store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel import batches
from flywheel.config import Settings, StorageSettings, load_settings
from flywheel.predictor import load_model
from flywheel.registry import AliasConflict, Registry
from flywheel.storage import (
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    S3Store,
    StoreError,
    StoreUnavailable,
    open_store,
)
from harness.proxy import LossyProxy
from harness.servers import S3Server, free_ports, seaweedfs

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(s3_env: Callable[[str], list[str]]) -> S3Store:
    settings = load_settings(None, env={}, overrides=s3_env("store"))
    s3 = open_store(settings.storage.uri, settings.storage)
    assert isinstance(s3, S3Store)
    return s3


def test_objects_round_trip_under_a_prefix(store: S3Store) -> None:
    store.write("a/b.json", b"1")
    store.write("a/c/d.json", b"2")
    assert store.read("a/b.json") == b"1"
    assert store.list("a") == ["a/b.json", "a/c/d.json"]
    assert set(store.listing("")) == {"a/b.json", "a/c/d.json"}
    store.write("a/e/f/g.json", b"3")
    assert store.children("a") == ["c", "e"] and store.children("a/e/") == ["f"]
    assert store.children("") == ["a"] and store.children("nothing") == []
    store.write("a/b.json", b"changed")
    assert store.read("a/b.json") == b"changed"
    store.delete("a/b.json")
    with pytest.raises(ObjectNotFound):
        store.read("a/b.json")
    assert store.read_optional("a/b.json") is None and not store.exists("a/b.json")
    assert store.read_optional("a/c/d.json") == b"2" and store.exists("a/c/d.json")
    assert store.location("x") == f"{store.uri}/x"


def test_files_are_uploaded_and_downloaded_whole(store: S3Store, tmp_path: Path) -> None:
    # given a file larger than one multipart part
    source = tmp_path / "day.parquet"
    source.write_bytes(os.urandom(6 * 1024 * 1024) * 2)
    # when uploaded, and downloaded again
    store.upload("logs/day.parquet", source)
    store.download("logs/day.parquet", tmp_path / "back")
    # then the bytes are the same, and a missing object is ObjectNotFound
    assert (tmp_path / "back").read_bytes() == source.read_bytes()
    with pytest.raises(ObjectNotFound):
        store.download("logs/none.parquet", tmp_path / "none")


def test_create_only_writes_are_enforced_by_the_server(store: S3Store) -> None:
    store.write("claim", b"first", create_only=True)
    with pytest.raises(ObjectExists):
        store.write("claim", b"second", create_only=True)
    assert store.read("claim") == b"first"


def test_of_concurrent_alias_moves_on_s3_exactly_one_wins(store: S3Store) -> None:
    registry = Registry(store, "m")
    for i in range(3):
        registry.register({"model.joblib": bytes([i])}, run_id=f"r{i}")
    registry.move_alias("production", "v1", expected=None, reason="first", actor="test")
    barrier = threading.Barrier(6)
    won: list[int] = []

    def promote(i: int) -> None:
        mine = Registry(
            open_store(store.uri, StorageSettings(endpoint=store.endpoint, secure=False)), "m"
        )
        barrier.wait()
        try:
            mine.move_alias(
                "production", f"v{2 + i % 2}", expected="v1", reason=f"writer {i}", actor="test"
            )
            won.append(i)
        except AliasConflict:
            pass

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert [h.reason for h in registry.history("production")] == ["first", f"writer {won[0]}"]


@pytest.fixture
def lossy(s3_server: S3Server) -> Iterator[LossyProxy]:
    """A proxy between the client and the S3 server that can lose a response."""
    with LossyProxy(s3_server.endpoint) as proxy:
        yield proxy


def _through(proxy: LossyProxy, store: S3Store) -> S3Store:
    flaky = open_store(store.uri, StorageSettings(endpoint=proxy.endpoint, secure=False))
    assert isinstance(flaky, S3Store)
    return flaky


def _create_only_put(head: bytes) -> bool:
    return head.startswith(b"PUT ") and b"\r\nif-none-match: *\r\n" in head.lower()


def test_a_create_only_write_whose_response_is_lost_is_reported_as_written(
    store: S3Store, lossy: LossyProxy
) -> None:
    # given a network that loses the server's answer to the next create-only PUT
    flaky = _through(lossy, store)
    lossy.lose_response(_create_only_put)
    # when a create-only write goes through it
    flaky.write("claim", b"mine", create_only=True)
    # then the server took the PUT, the client sent it again and was refused (the
    # object existed), and the write still counts as done
    assert len(lossy.lost) == 1
    assert len([head for head in lossy.heads if _create_only_put(head)]) == 2
    assert store.read("claim") == b"mine"


def test_a_large_create_only_write_is_one_conditional_put(
    store: S3Store, lossy: LossyProxy
) -> None:
    # given more bytes than the SDK would otherwise send as a multipart upload
    data = bytes(6 * 1024 * 1024)
    # when written create-only
    _through(lossy, store).write("model.joblib", data, create_only=True)
    # then it went as one PUT carrying the condition
    (head,) = [head for head in lossy.heads if b"model.joblib" in head]
    assert _create_only_put(head)
    assert store.read("model.joblib") == data


def test_an_alias_move_whose_response_is_lost_happens_exactly_once(
    store: S3Store, lossy: LossyProxy
) -> None:
    # given production on v1, and a promoter whose network will lose one answer
    registry = Registry(store, "m")
    for i in range(2):
        registry.register({"model.joblib": bytes([i])}, run_id=f"r{i}")
    registry.move_alias("production", "v1", expected=None, reason="first", actor="test")
    promoter = Registry(_through(lossy, store), "m")
    lossy.lose_response(_create_only_put)
    # when it promotes v2 and the answer to the alias write is lost
    state = promoter.move_alias("production", "v2", expected="v1", reason="promote", actor="test")
    # then the move is reported done, and it happened once
    assert len(lossy.lost) == 1
    assert (state.version, state.revision) == ("v2", 2)
    assert [(h.version, h.reason) for h in registry.history("production")] == [
        ("v1", "first"),
        ("v2", "promote"),
    ]


def test_another_writers_object_is_a_conflict_even_when_the_answer_is_lost(
    store: S3Store, lossy: LossyProxy
) -> None:
    # given an object another writer created, with the very bytes this writer sends
    store.write("claim", b"same", create_only=True)
    flaky = _through(lossy, store)
    lossy.lose_response(_create_only_put)
    # when this writer's create-only write is refused and the refusal is lost too
    with pytest.raises(ObjectExists):
        flaky.write("claim", b"same", create_only=True)
    # then it was refused twice (the retry) and still reported as the conflict it is
    assert len(lossy.lost) == 1
    assert len([head for head in lossy.heads if _create_only_put(head)]) == 2


def test_a_rival_alias_move_is_a_conflict_even_when_the_answer_is_lost(
    store: S3Store, lossy: LossyProxy
) -> None:
    # given production on v1, and a rival that moves it to v3 while our PUT is in flight
    registry = Registry(store, "m")
    for i in range(3):
        registry.register({"model.joblib": bytes([i])}, run_id=f"r{i}")
    registry.move_alias("production", "v1", expected=None, reason="first", actor="test")
    promoter = Registry(_through(lossy, store), "m")

    def rival() -> None:
        registry.move_alias("production", "v3", expected="v1", reason="rival", actor="test")

    lossy.lose_response(_create_only_put, before=rival)
    # when our move of the same revision is refused and the refusal is lost
    with pytest.raises(AliasConflict, match="at the same moment"):
        promoter.move_alias("production", "v2", expected="v1", reason="promote", actor="test")
    # then only the rival's move stands
    assert len(lossy.lost) == 1
    assert [h.reason for h in registry.history("production")] == ["first", "rival"]


def test_an_unreachable_endpoint_is_named_quickly() -> None:
    (port,) = free_ports(1)
    dead = open_store("s3://bucket/x", StorageSettings(endpoint=f"127.0.0.1:{port}", secure=False))
    with pytest.raises(StoreUnavailable, match=f"cannot reach the S3 endpoint 127.0.0.1:{port}"):
        dead.check()
    # an optional object is not taken for absent when the store is down
    with pytest.raises(StoreUnavailable):
        dead.read_optional("x")


def test_wrong_keys_and_missing_buckets_are_named(
    s3_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = s3_server.endpoint  # type: ignore[attr-defined]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StoreError, match="access denied"):
        open_store("s3://bucket/x", StorageSettings(endpoint=endpoint, secure=False)).check()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)  # type: ignore[attr-defined]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        open_store(
            "s3://no-such-bucket/x", StorageSettings(endpoint=endpoint, secure=False)
        ).check()


def _documented_ui_identity() -> dict[str, Any]:
    """The SeaweedFS identity docs/deploying.md gives the chart's UI: its first json block."""
    section = (REPO / "docs" / "deploying.md").read_text().split("## The read-only web UI")[1]
    identity: dict[str, Any] = json.loads(section.split("```json\n")[1].split("```")[0])
    return identity


def test_the_uis_documented_seaweedfs_key_reads_its_bucket_and_writes_nothing() -> None:
    # given SeaweedFS with the UI's identity as documented, its keys filled in
    identity = _documented_ui_identity()
    identity["credentials"] = [{"accessKey": "ui-reader", "secretKey": "ui-reader-secret"}]
    with seaweedfs([identity]) as server:

        def store(uri: str, access_key: str, secret_key: str) -> S3Store:
            return S3Store(
                uri, endpoint=server.endpoint, access_key=access_key, secret_key=secret_key,
                secure=False,
            )  # fmt: skip

        # and a registry, and another bucket, written with the admin key
        for uri in ("s3://flywheel/registry", "s3://other/registry"):
            admin = store(uri, server.access_key, server.secret_key)
            admin.ensure_bucket()
            admin.write("models/m/versions/v1/manifest.json", b"{}")
        reader = store("s3://flywheel/registry", "ui-reader", "ui-reader-secret")
        # then the UI's key opens, lists and reads the registry
        reader.check()
        assert reader.list("models") == ["models/m/versions/v1/manifest.json"]
        assert reader.read("models/m/versions/v1/manifest.json") == b"{}"
        # and cannot write, create, delete, nor read another bucket
        for attempt in (
            lambda: reader.write("models/m/aliases/production.json", b"{}"),
            lambda: reader.write("models/m/aliases/staging.json", b"{}", create_only=True),
            lambda: reader.delete("models/m/versions/v1/manifest.json"),
            lambda: store("s3://other/registry", "ui-reader", "ui-reader-secret").list(""),
        ):
            with pytest.raises(StoreError, match="access denied"):
                attempt()
        assert reader.list("models") == ["models/m/versions/v1/manifest.json"]


def _flywheel(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flywheel.cli", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_the_pipeline_runs_with_s3_as_store_and_source(
    s3_env: Callable[[str], list[str]], tmp_path: Path
) -> None:
    # given data and registry both in a bucket on the S3 server
    overrides = s3_env("pipeline")
    bucket_uri = overrides[-1].split("=", 1)[1].rsplit("/", 1)[0]
    config = {
        "data": {
            "source": f"{bucket_uri}/batches",
            "window_days": 4,
            "generator": {"rows_per_day": 500},
        },
        "model": {"params": {"max_iter": 40}, "search": {"enabled": False}},
        "promotion": {"min_metric": 0.65},
        "storage": {
            "uri": f"{bucket_uri}/flywheel",
            "endpoint": overrides[0].split("=", 1)[1],
            "secure": False,
        },
        "pipeline": {"root": str(tmp_path / "root")},
    }
    (tmp_path / "flywheel.yaml").write_text(yaml.safe_dump(config))
    generated = _flywheel(tmp_path, "data", "generate", "--days", "4")
    assert generated.returncode == 0, generated.stderr
    # when the pipeline runs
    result = _flywheel(tmp_path, "run")
    # then the model lands in the bucket as production, with its files readable there
    assert result.returncode == 0, result.stdout[-3000:]
    assert (
        f"Registered loan-default v1 at {bucket_uri}/flywheel/models/loan-default/versions/v1"
        in result.stdout
    )
    settings: Settings = load_settings(tmp_path / "flywheel.yaml", env={})
    registry = Registry(open_store(settings.storage.uri, settings.storage), "loan-default")
    assert registry.resolve("production") == "v1"
    assert hasattr(load_model(registry.read("v1", "model.joblib")), "predict_proba")
    source = batches.BatchSource(open_store(settings.data.source, settings.storage))
    assert len(source.available()) == 4
    # and when the endpoint is unreachable, the run stops with its name and changes nothing
    (port,) = free_ports(1)
    down = _flywheel(tmp_path, "--set", f"storage.endpoint=127.0.0.1:{port}", "run")
    assert down.returncode == 1
    assert f"cannot reach the S3 endpoint 127.0.0.1:{port}" in down.stderr
    assert [m.version for m in registry.versions()] == ["v1"]
    assert registry.resolve("production") == "v1"


def _write_then_fail(store: ObjectStore, data: bytes) -> None:
    """Write `data` to logs/day.parquet through a writer whose block then raises."""
    with store.writer("logs/day.parquet") as out:
        out.write(data)
        raise RuntimeError("the source broke")


def _uploads(store: S3Store) -> list[str]:
    """The multipart uploads begun and neither completed nor aborted (the SDK's own call)."""
    found = store.client._list_multipart_uploads(store.bucket)
    return [u.object_name for u in found.uploads]


def test_a_streamed_write_appears_whole_after_its_last_part_and_reads_back_by_ranges(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given parts of S3's least size, and more than two parts of bytes
    from flywheel import storage

    monkeypatch.setattr(storage, "STREAM_PART", 5 * 1024 * 1024)
    data = os.urandom(12 * 1024 * 1024 + 17)
    # when written through a writer, a megabyte at a time
    with store.writer("logs/day.parquet") as out:
        for start in range(0, len(data), 1024 * 1024):
            out.write(data[start : start + 1024 * 1024])
        # then nothing is there until the block ends
        assert not store.exists("logs/day.parquet")
    assert store.read("logs/day.parquet") == data
    # and a reader reads any range of it, seeking from either end
    with store.reader("logs/day.parquet") as opened:
        opened.seek(-100, os.SEEK_END)
        assert opened.read() == data[-100:]
        opened.seek(6 * 1024 * 1024 - 3)
        assert opened.read(10) == data[6 * 1024 * 1024 - 3 : 6 * 1024 * 1024 + 7]
        assert opened.read(0) == b""
    with pytest.raises(ObjectNotFound):
        store.reader("logs/none.parquet")
    # and a reader of an object replaced since it was opened fails, never mixing versions
    with store.reader("logs/day.parquet") as opened:
        assert opened.read(10) == data[:10]
        store.write("logs/day.parquet", os.urandom(len(data)))
        opened.seek(8 * 1024 * 1024)
        with pytest.raises(StoreError, match="changed while it was read"):
            opened.read(10)


def test_a_streamed_write_that_raises_or_discards_leaves_the_old_object_and_no_upload(
    store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an object, and parts of S3's least size
    from flywheel import storage

    monkeypatch.setattr(storage, "STREAM_PART", 5 * 1024 * 1024)
    store.write("logs/day.parquet", b"old")
    # when a writer's block raises after two parts went up, and another discards
    with pytest.raises(RuntimeError, match="the source broke"):
        _write_then_fail(store, os.urandom(11 * 1024 * 1024))
    with store.writer("logs/day.parquet") as out:
        out.write(os.urandom(11 * 1024 * 1024))
        out.discard()
    # then the old object is there, unchanged, and no upload was left begun
    assert store.read("logs/day.parquet") == b"old"
    assert _uploads(store) == []


def test_a_streamed_write_to_a_store_that_is_down_is_one_store_error() -> None:
    (port,) = free_ports(1)
    down = open_store(
        "s3://flywheel/store", StorageSettings(endpoint=f"127.0.0.1:{port}", secure=False)
    )
    with (
        pytest.raises(StoreUnavailable, match="cannot reach the S3 endpoint"),
        down.writer("logs/day.parquet") as out,
    ):
        out.write(b"rows")
