"""Fixtures shared by every test tier: small real projects, real batches, a real S3 server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import Settings, load_settings
from harness.deployments import on_cluster
from harness.projects import SMALL, train_and_register, write_batches
from harness.schedule import slowest_first
from harness.steps import Evaluated, Ingested, Trained


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Known-slow modules first, so that xdist never starts a long one last."""
    items[:] = slowest_first(items)


@pytest.fixture
def small_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a throwaway project under tmp_path; extra `key=value` overrides win."""

    def make(*overrides: str) -> Settings:
        return load_settings(
            None,
            env={},
            overrides=[
                f"data.source={tmp_path / 'batches'}",
                f"storage.uri={tmp_path / 'store'}",
                f"pipeline.root={tmp_path / 'pipeline-root'}",
                *SMALL,
                *overrides,
            ],
        )

    return make


@pytest.fixture
def make_batches() -> Callable[..., list[str]]:
    """`make_batches(settings, days, start=None, fmt="parquet", **generator_overrides)`."""
    return write_batches


@pytest.fixture(scope="session")
def s3_server() -> Iterator[object]:
    """A SeaweedFS S3 server on loopback for the whole session."""
    from harness.servers import seaweedfs

    with seaweedfs() as server:
        yield server


@pytest.fixture(scope="session")
def kube() -> Iterator[Any]:
    """A real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok
    with two fake nodes) on loopback for the whole session, CRDs installed."""
    from harness.kube import control_plane

    with control_plane() as plane:
        yield plane


@pytest.fixture
def namespace(kube: Any) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security Standard, deleted after."""
    name = f"fw-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    kube.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def s3_env(s3_server: object, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[str]]:
    """Point credentials at the test server; returns overrides for a fresh bucket."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)  # type: ignore[attr-defined]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)  # type: ignore[attr-defined]

    def overrides(purpose: str) -> list[str]:
        bucket = f"{purpose}-{uuid.uuid4().hex[:8]}"
        from flywheel.config import StorageSettings
        from flywheel.storage import S3Store

        storage = StorageSettings(endpoint=s3_server.endpoint, secure=False)  # type: ignore[attr-defined]
        S3Store(
            f"s3://{bucket}",
            endpoint=storage.endpoint,
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            secure=False,
        ).ensure_bucket()
        return [
            f"storage.endpoint={s3_server.endpoint}",  # type: ignore[attr-defined]
            "storage.secure=false",
            f"storage.uri=s3://{bucket}/flywheel",
        ]

    return overrides


@pytest.fixture
def run_component(tmp_path: Path) -> Callable[..., Path]:
    """Run one component under kfp.local's SubprocessRunner; return its task folder.

    `artifacts` maps each input artifact to `(artifact class, path)` or to an
    artifact made by `artifact()`. kfp.local refuses input artifacts for a lone
    task, so the component runs inside a one-step pipeline whose inputs come
    from dsl.importer. With raise_on_error the failure raises a RuntimeError
    naming only the task: the step's own log, with its traceback, goes to this
    process's stdout and stderr (read it with pytest's `capfd`).
    """
    import kfp.local
    from kfp import dsl

    root = tmp_path / "kfp-root"

    def run(component: Any, artifacts: Mapping[str, Any] | None = None, **params: Any) -> Path:
        kfp.local.init(
            runner=kfp.local.SubprocessRunner(use_venv=False),
            pipeline_root=str(root),
            raise_on_error=True,
        )
        imports = {
            name: value if isinstance(value, tuple) else (type(value), value.uri)
            for name, value in (artifacts or {}).items()
        }

        @dsl.pipeline(name="component-test")
        def one_step():  # type: ignore[no-untyped-def]  # KFP reads annotations: none here
            inputs = {
                name: dsl.importer(artifact_uri=str(path), artifact_class=cls).output
                for name, (cls, path) in imports.items()
            }
            component(**inputs, **params)

        before = set(root.glob("*")) if root.exists() else set()
        one_step()
        (run_dir,) = set(root.glob("*")) - before
        task_dirs = [
            d for d in run_dir.iterdir() if d.is_dir() and not d.name.startswith("importer")
        ]
        assert len(task_dirs) == 1, task_dirs
        return task_dirs[0]

    return run


@pytest.fixture
def make_window(small_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Ingested]:
    """`make_window(*overrides, days=3, **generator_overrides)`: write `days` batches for
    small settings and ingest them into a window folder. Once per test: the batches
    folder is the test's."""

    def make(*overrides: str, days: int = 3, **generator: object) -> Ingested:
        from flywheel import tasks

        settings = small_settings(*overrides)
        write_batches(settings, days, **generator)
        path = tmp_path / "inputs" / "window"
        tasks.ingest(settings.to_json(), "", path)
        return Ingested(settings, path)

    return make


@pytest.fixture
def window(make_window: Callable[..., Ingested]) -> Ingested:
    """Small settings and a window of 3 daily batches of 600 rows, ingested."""
    return make_window()


@pytest.fixture
def trained(window: Ingested) -> Trained:
    """The window, a model trained on its 2 older batches, and the holdout split from them."""
    from flywheel import tasks

    model, holdout = window.path.parent / "model", window.path.parent / "holdout"
    baselines = window.path.parent / "baselines"
    tasks.train(window.config, window.path, model, holdout, baselines)
    return Trained(window, model, holdout, baselines)


@pytest.fixture
def evaluated(trained: Trained) -> Evaluated:
    """The trained model evaluated with no production model to compare with."""
    from flywheel import tasks

    folder = trained.model.parent
    evaluation, report = folder / "evaluation", folder / "evaluation.html"
    tasks.evaluate(
        trained.config,
        trained.model,
        trained.holdout,
        trained.window.path,
        "",
        evaluation,
        report,
        trained.baselines,
    )
    return Evaluated(trained, evaluation, report)


@pytest.fixture(scope="session")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A store holding one registered, production model (v1) of the small configuration."""
    root = tmp_path_factory.mktemp("registered")
    settings = load_settings(
        None,
        env={},
        overrides=[f"data.source={root / 'batches'}", f"storage.uri={root / 'store'}", *SMALL],
    )
    write_batches(settings, 5)
    assert train_and_register(settings, root / "work") == "v1"
    return settings


@pytest.fixture
def two_versions(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    namespace: str,
    tmp_path: Path,
) -> Settings:
    """v1 in production and v2 registered as candidate, with the rollout on the cluster."""
    settings = on_cluster(small_settings(), namespace, steps=(10, 50, 100), accuracy="off")
    make_batches(settings, 5)
    assert train_and_register(settings, tmp_path / "w1", "r1") == "v1"
    make_batches(settings, 2, start=settings.data.generator.start_date + timedelta(days=5))
    assert train_and_register(settings, tmp_path / "w2", "r2") == "v2"
    return settings
