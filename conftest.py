"""Fixtures shared by every test tier: small real projects, real batches, a real S3 server."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flywheel import batches, synthetic
from flywheel.config import RolloutSettings, Settings, load_settings
from flywheel.storage import open_store
from flywheel.usage import Usage

# A small, fast configuration: 5 days of 600 rows, no hyper-parameter search.
SMALL = [
    "data.window_days=5",
    "data.generator.rows_per_day=600",
    "data.generator.change_day=3",
    "model.search.enabled=false",
    "model.params.max_iter=60",
    "promotion.min_metric=0.7",
    "contract.min_rows=50",
]


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


def write_batches(
    settings: Settings,
    days: int,
    start: date | None = None,
    fmt: str = "parquet",
    **generator: object,
) -> list[str]:
    """Generate `days` daily batches into the settings' data source."""
    gen = settings.data.generator.model_copy(update=generator)
    source = batches.BatchSource(open_store(settings.data.source, settings.storage))
    first = start or gen.start_date
    return [
        source.write(day, synthetic.generate_day(day, gen), fmt)
        for day in synthetic.days(first, days)
    ]


@pytest.fixture
def make_batches() -> Callable[..., list[str]]:
    """`make_batches(settings, days, start=None, fmt="parquet", **generator_overrides)`."""
    return write_batches


@pytest.fixture(scope="session")
def s3_server() -> Iterator[object]:
    """A SeaweedFS S3 server on loopback for the whole session."""
    from tests.harness.servers import seaweedfs

    with seaweedfs() as server:
        yield server


@pytest.fixture(scope="session")
def kube() -> Iterator[Any]:
    """A real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok
    with two fake nodes) on loopback for the whole session, CRDs installed."""
    from tests.harness.kube import control_plane

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


A = TypeVar("A")


def artifact(cls: type[A], path: Path) -> A:
    """A KFP artifact of class `cls` (dsl.Dataset, dsl.Model, ...) at a local path.

    For a component's `python_func` (inputs and outputs) and for `run_component`'s inputs.
    """
    return cls(name=path.name, uri=str(path), metadata={})  # type: ignore[call-arg]


@dataclass(frozen=True)
class StepOutputs:
    """What a step run by `run_component` returned: its parameters and its artifacts' metadata."""

    parameters: dict[str, Any]
    metadata: dict[str, dict[str, Any]]


def step_outputs(task_dir: Path) -> StepOutputs:
    """Read the executor_output.json that kfp.local's executor wrote into a task folder."""
    raw = json.loads((task_dir / "executor_output.json").read_text())
    return StepOutputs(
        parameters=raw.get("parameterValues", {}),
        metadata={
            name: output["artifacts"][0].get("metadata", {})
            for name, output in raw.get("artifacts", {}).items()
        },
    )


def assert_used(task_dir: Path) -> Usage:
    """The step run by `run_component` recorded its time, CPU seconds and peak memory in its
    `usage` Metrics (as the KFP UI shows them), and in the artifact's file."""
    recorded = step_outputs(task_dir).metadata["usage"]
    assert set(recorded) == {"seconds", "cpu_seconds", "peak_rss_mib"}
    used = Usage.from_metrics(recorded)
    assert used is not None and used == Usage.read(task_dir / "usage")
    assert used.seconds >= 0 and used.cpu_seconds >= 0
    # A Python process holds tens of MiB at least; KiB or bytes would be far off.
    assert 15 < used.peak_rss_mib < 4096
    return used


@dataclass(frozen=True)
class Ingested:
    """A small project's settings and a window folder as the ingest step writes it."""

    settings: Settings
    path: Path

    @property
    def config(self) -> str:
        """The settings as components take them."""
        return self.settings.to_json()


@dataclass(frozen=True)
class Trained:
    """An ingested window, the model trained on its older batches, the held-out rows, and the
    folder of baseline models (empty unless the settings set promotion.baseline)."""

    window: Ingested
    model: Path
    holdout: Path
    baselines: Path

    @property
    def settings(self) -> Settings:
        return self.window.settings

    @property
    def config(self) -> str:
        return self.window.config


@dataclass(frozen=True)
class Evaluated:
    """A trained model and its evaluation (JSON and HTML report), with nothing in production."""

    trained: Trained
    evaluation: Path
    report: Path

    @property
    def settings(self) -> Settings:
        return self.trained.settings

    @property
    def config(self) -> str:
        return self.trained.config


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


def train_and_register(settings: Settings, work: Path, run_id: str = "r1") -> str:
    """Run every pipeline step in this process; return the registered version ('' if not blessed)."""
    from flywheel import runs

    return runs.run_in_process(settings, work, run_id=run_id, git_commit="abc123").version


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


def on_cluster(settings: Settings, namespace: str, **rollout: Any) -> Settings:
    """The settings with serving in `namespace` and the Kubernetes rollout driver."""
    return settings.model_copy(
        update={
            "serving": settings.serving.model_copy(update={"namespace": namespace}),
            # Validated, not copied: a step given as a number becomes a TrafficStep.
            "rollout": RolloutSettings.model_validate_json(
                json.dumps(
                    {**settings.rollout.model_dump(mode="json"), "driver": "kubernetes", **rollout}
                )
            ),
        }
    )


def seldon_predictors(kube: Any, namespace: str, name: str = "loan-default") -> dict[str, Any]:
    """What kubectl (not the driver's own client) sees: predictor -> (version, traffic)."""
    obj = json.loads(
        kube.kubectl("get", "seldondeployment", name, "-n", namespace, "-o", "json").stdout
    )
    return {
        p["name"]: (p["labels"]["flywheel.io/model-version"], p.get("traffic", 0))
        for p in obj["spec"]["predictors"]
    }


@pytest.fixture
def two_versions(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    namespace: str,
    tmp_path: Path,
) -> Settings:
    """v1 in production and v2 registered as candidate, with the rollout on the cluster."""
    settings = on_cluster(small_settings(), namespace, steps=(10, 50, 100))
    make_batches(settings, 5)
    assert train_and_register(settings, tmp_path / "w1", "r1") == "v1"
    make_batches(settings, 2, start=settings.data.generator.start_date + timedelta(days=5))
    assert train_and_register(settings, tmp_path / "w2", "r2") == "v2"
    return settings
