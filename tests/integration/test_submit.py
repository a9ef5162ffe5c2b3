"""`flywheel submit` against SeaweedFS and a loopback fake of KFP's v2beta1 API (KFP's server
cannot run here): what reaches KFP, and the run record the trigger engine then counts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flywheel.config import Settings, load_settings
from flywheel.stores import Stores
from flywheel.triggers import engine
from harness.cli import Flywheel, write_config
from harness.cli import flywheel as cli  # noqa: F401  (the `flywheel` fixture, as `cli`)
from harness.kfp import kfp_api

pytestmark = pytest.mark.integration


@pytest.fixture
def flywheel(cli: Flywheel) -> Flywheel:  # noqa: F811  (the fixture imported above)
    return cli


@pytest.fixture
def config_file(small_settings: Callable[..., Settings], tmp_path: Path) -> Path:
    """flywheel.yaml of an empty project (no batches, nothing registered)."""
    return write_config(small_settings(), tmp_path / "flywheel.yaml")


@pytest.fixture
def s3(s3_env: Callable[[str], list[str]]) -> list[str]:
    """--set options that put the store and the batches in a fresh bucket: a cluster run
    needs both on S3, and `submit` records the run it started in the store."""
    overrides = s3_env("submit")
    bucket = overrides[-1].split("=", 1)[1].rsplit("/", 1)[0]
    return [f"--set={o}" for o in (*overrides, f"data.source={bucket}/batches")]


def settings_of(config: Path, s3: list[str]) -> Settings:
    return load_settings(config, env={}, overrides=[o.removeprefix("--set=") for o in s3])


def test_a_submitted_run_is_recorded_in_flight_until_kfp_says_it_ended(
    flywheel: Flywheel, config_file: Path, s3: list[str]
) -> None:
    # given a KFP API (the loopback fake: KFP's server cannot run here)
    settings = settings_of(config_file, s3)
    stores = Stores(settings)
    with kfp_api(token=None) as kfp:
        # when a person submits a run
        submitted = flywheel(
            "-c", str(config_file), *s3, "submit", "--host", kfp.url, "--run-id", "run-ada",
            "--reason", "new labels", "--actor", "ada",
        )  # fmt: skip
        assert submitted.code == 0, submitted.text
        (kfp_run,) = kfp.runs.values()
        # then it is recorded: who, why, and the KFP run to ask about; no outcome yet
        (run,) = stores.ledger.runs()
        assert (run.started.run_id, run.started.origin, run.started.actor) == (
            "run-ada",
            "submit",
            "ada",
        )
        assert run.started.reason == "new labels" and run.finished is None
        assert run.started.kfp_run_id == kfp_run["run_id"]
        timeout = timedelta(hours=settings.triggers.run_timeout_hours)
        assert run.outcome(datetime.now(UTC), timeout) is None
        # and the engine counts it in flight: even a forced check is blocked
        forced = engine.check(settings, stores.registry, stores.source, force="hotfix")
        assert forced.blocked_by is not None
        assert forced.blocked_by.startswith("run run-ada in flight since ")
        assert forced.blocked_by.endswith("(started by flywheel submit by ada)")
        # and a run id is one run's: a second submit under it is refused before KFP hears of it
        again = flywheel(
            "-c", str(config_file), *s3, "submit", "--host", kfp.url, "--run-id", "run-ada"
        )
        assert again.code == 1 and "run run-ada was already marked started" in again.err
        assert len(kfp.runs) == 1
        # when KFP says it succeeded, and the engine asks
        kfp.end(kfp_run["run_id"], "SUCCEEDED")
        asked = flywheel(
            "-c", str(config_file), *s3, "--set=triggers.schedule=null",
            "triggers", "check", "--submit", "--host", kfp.url,
        )  # fmt: skip
        # then it is marked ended; it registered nothing, so its gate refused the model
        assert "run run-ada has ended on" in asked.out, asked.text
        (run,) = stores.ledger.runs()
        assert run.finished is not None and run.finished.outcome == "refused"


def test_submit_sends_the_bearer_token_from_the_variable_pipeline_token_env_names(
    flywheel: Flywheel, config_file: Path, s3: list[str]
) -> None:
    # given a KFP API (a loopback fake of its v2beta1 endpoints: KFP's server cannot
    # run here) that wants a bearer token
    with kfp_api(token="t0ken-from-the-environment") as kfp:
        # when submit runs with the token in the variable pipeline.token_env names
        result = flywheel(
            "-c", str(config_file), *s3, "--set", "pipeline.token_env=DEV_KFP_TOKEN",
            "submit", "--host", kfp.url,
            "--reason", "drift on income (PSI 0.31)", "--decision", "triggers/d.json",
            env={"DEV_KFP_TOKEN": "t0ken-from-the-environment"},
        )  # fmt: skip
    # then every request carried it, and the run was created
    assert result.code == 0, result.text
    assert {r.authorization for r in kfp.requests} == {"Bearer t0ken-from-the-environment"}
    (run,) = kfp.runs.values()
    assert f"(KFP run {run['run_id']}) on {kfp.url}" in result.out
    # and why it started travels as run parameters the compiled pipeline declares
    parameters = run["runtime_config"]["parameters"]
    assert parameters["trigger_reason"] == "drift on income (PSI 0.31)"
    assert parameters["trigger_decision"] == "triggers/d.json"
    assert "t0ken" not in result.text


def test_submit_takes_the_image_namespace_and_service_account_from_the_configuration(
    flywheel: Flywheel, config_file: Path, s3: list[str]
) -> None:
    # given the pipeline.* settings the chart renders for the trigger engine's submit
    # (a loopback fake of KFP's v2beta1 API: KFP's server cannot run here)
    image = "ghcr.io/flywheel-mlops/flywheel-components@sha256:" + "a" * 64
    sets = [
        f"pipeline.image={image}", "pipeline.namespace=team-a",
        "pipeline.service_account=fw-flywheel-pipeline-runner",
    ]  # fmt: skip
    with kfp_api(token=None) as kfp:
        # when a run is submitted without --image, --namespace or --service-account
        result = flywheel(
            "-c", str(config_file), *s3, *(f"--set={s}" for s in sets), "submit", "--host", kfp.url
        )
    # then the experiment is the profile namespace's, and the run uses the image and account
    assert result.code == 0, result.text
    (experiment,) = kfp.experiments.values()
    assert experiment["namespace"] == "team-a"
    (run,) = kfp.runs.values()
    assert run["service_account"] == "fw-flywheel-pipeline-runner"
    executors = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {image}
    assert run["runtime_config"]["parameters"]["image_digest"] == "sha256:" + "a" * 64


def test_submit_in_a_pod_sends_the_projected_service_account_token(
    flywheel: Flywheel, config_file: Path, s3: list[str], tmp_path: Path
) -> None:
    # given no KFP_TOKEN, but the ServiceAccount token the kubelet projects for KFP's
    # audience (the chart mounts it; here a file at KF_PIPELINES_SA_TOKEN_PATH)
    token = tmp_path / "token"
    token.write_text("projected-sa-t0ken\n")
    s3 = [*s3, "--set", "pipeline.token_env=FLYWHEEL_TEST_UNSET_TOKEN"]
    with kfp_api(token="projected-sa-t0ken") as kfp:
        result = flywheel(
            "-c", str(config_file), *s3, "submit", "--host", kfp.url,
            env={"KF_PIPELINES_SA_TOKEN_PATH": str(token)},
        )  # fmt: skip
    # then every request carried it, and the run was created
    assert result.code == 0, result.text
    assert {r.authorization for r in kfp.requests} == {"Bearer projected-sa-t0ken"}
    assert len(kfp.runs) == 1
