"""The delivery workflows run here, step by step: cd.yml, then prod-canary.yml once the
prod promotion is merged, then verify-prod.yml.

harness/workflow.py runs every `run:` step of each workflow in order under
bash, with the GITHUB_* and RUNNER_* variables a runner sets and the steps' `env:`
evaluated from the event's inputs and the environments' secrets and variables,
in a fresh clone (per job) of a local git repository holding this working tree.
`make submit`, `make promote`, `make wait-rollout`, `make verify-prod` and the
promotion script's git commits and pushes really run; each environment's registry
and rollout state live in a real SeaweedFS under that environment's own prefix (the
one its overlay gives its controller), the SeldonDeployment on a real kube-apiserver
(kwok's nodes, so no pod serves a request).

What stands in for GitHub, the cluster's tools and its people, and why:
- `uses:` steps: actions/checkout is done with git (persist-credentials: false, no
  token stored); actions/setup-python is replaced by the project's .venv, linked
  into the workspace. Any other action is refused by the harness.
- `gh pr create` is a recorded fake: it checks GH_TOKEN and that the branch was
  pushed, and opens nothing. The test merges the branches itself, as a reviewer
  would with GitHub's merge button, and the harness decides from each workflow's
  `on.push` filters which workflows that push starts.
- Environment approvals (prod's required reviewers), `permissions:` and secret
  masking are GitHub's; instead, no secret's value may appear in any step's output.
- KFP: its API server cannot be built here, so each environment's KFP is a loopback
  fake of the v2beta1 endpoints the kfp SDK calls (harness/kfp.py), which requires
  its bearer token and records each request; it runs nothing. The test plays a KFP
  run's part: it runs the pipeline's steps in this process (`run_in_process`, the
  functions the components call) on the run's own parameters (its configuration,
  run id and git commit), up to the deploy step, whose real code starts the canary
  on the API server with the rollout Lease, as it would in the cluster; then it
  ends the fake KFP run as KFP would. Two things differ from a cluster run: the
  model is the test fixtures' small one (SMALL), and the S3 endpoint the steps use
  is the test's SeaweedFS (the chart's, in a cluster).
- GitOps: Argo CD or Flux applies an overlay server-side; the test does so with
  `kubectl apply --server-side -k` of the overlay at the commit on main.
- The in-cluster rollout controller: one look of `flywheel rollout watch --once` on
  the environment's configuration, where the test needs production served. No pod
  serves traffic under kwok, so no controller can judge a canary: the test plays
  the on-call operator, who promotes or rolls the canary back with `flywheel
  promote` or `flywheel rollback` and the Kubernetes driver; `make wait-rollout`
  must then pass or fail the workflow accordingly.
- verify-prod.yml's read-only kubeconfig is the test cluster's admin one.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel import runs
from flywheel.config import Settings, load_settings
from flywheel.registry import PRODUCTION, Registry
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.driver import StateOnlyDriver
from flywheel.rollout.kubernetes import FIELD_MANAGER
from flywheel.storage import S3Store
from harness.deployments import seldon_predictors
from harness.kfp import FakeKfp, kfp_api
from harness.projects import SMALL, write_batches
from harness.servers import S3Server, wait_until
from harness.workflow import Environment, Repository, Runner, StepContext, WorkflowRun
from tools import promote

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FLYWHEEL = REPO / ".venv" / "bin" / "flywheel"
COMPONENTS = "sha256:" + "c" * 64
SERVING = "sha256:" + "5" * 64
OWNER = "flywheel-mlops"
SUBMIT_STEP = "start a pipeline run on prod's KFP with the merged components image"
WAIT_STEP = "wait for the rollout of the version that run registers"
PROD_OVERLAY = "manifests/overlays/prod/kustomization.yaml"
# Every environment's configuration is the chart's with its overlay's variables.
CHART = promote.environment(promote.OVERLAYS / "prod")
NAMESPACE = CHART.serving.namespace
BUCKET = "flywheel"


# --- the environments ----------------------------------------------------------------


def prefix(env: str) -> str:
    """The registry prefix of `env`, as its overlay in this working tree gives it."""
    return promote.registry_prefix(promote.OVERLAYS / env)


# The cluster runs the repository's flywheel.yaml, whose gates are for its 2,000-row days and
# searched model: the fixtures' small model is judged by Flywheel's default ones instead.
SMALL_GATES = ["promotion.baseline=null", "promotion.max_regression=0.02"]


def as_run(config: str, s3: S3Server, *overrides: str) -> Settings:
    """A run's configuration (JSON, as KFP hands it to each step) as the steps use it here:
    the test's SeaweedFS as the cluster's S3 and the fixtures' small model."""
    data = json.loads(config)
    data["storage"] |= {"endpoint": s3.endpoint, "secure": False}
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "flywheel.yaml"
        path.write_text(yaml.safe_dump(data))  # JSON's 1e-05 is a string to YAML 1.1
        return load_settings(path, env={}, overrides=[*SMALL, *SMALL_GATES, *overrides])


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The bucket the chart's configuration names, emptied, with its keys in this process."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    bucket = S3Store(
        f"s3://{BUCKET}",
        endpoint=s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    bucket.ensure_bucket()
    for key in bucket.list(""):
        bucket.delete(key)
    return s3_server


def environment(env: str, s3: S3Server) -> Settings:
    """`env`'s configuration, as its cluster's controller and steps read it here."""
    return as_run(promote.environment(promote.OVERLAYS / env).to_json(), s3)


@pytest.fixture
def prod(s3: S3Server, tmp_path: Path) -> Settings:
    """Prod's registry with v1 in production, trained on five days of batches."""
    settings = environment("prod", s3)
    assert settings.storage.uri == f"s3://{BUCKET}/registry/prod"
    write_batches(settings, 5)
    first = runs.run_in_process(settings, tmp_path / "prod-v1", run_id="r1", git_commit="abc123")
    assert first.version == "v1" and Registry.from_settings(settings).resolve(PRODUCTION) == "v1"
    return settings


def new_batches(settings: Settings) -> None:
    """Two more days of data: a run trains a model that differs from v1."""
    write_batches(settings, 2, start=settings.data.generator.start_date + timedelta(days=5))


@pytest.fixture
def prod_namespace(kube: Any) -> Iterator[str]:
    """The chart's serving namespace (restricted Pod Security), new and deleted after."""
    # The chart's tests apply the overlays there too, and may have run first on this worker.
    kube.kubectl(
        "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s"
    )
    kube.kubectl("create", "namespace", NAMESPACE)
    kube.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    yield NAMESPACE
    kube.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False)


@pytest.fixture
def in_cluster(kube: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This process as a pod of the cluster: the deploy step's code finds the API server."""
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    return kube


@pytest.fixture
def dev_kfp() -> Iterator[FakeKfp]:
    with kfp_api(token="kfp-token-for-dev-0123456789") as server:
        yield server


@pytest.fixture
def prod_kfp() -> Iterator[FakeKfp]:
    with kfp_api(token="kfp-token-for-prod-9876543210") as server:
        yield server


@pytest.fixture
def runner(tmp_path: Path, s3: S3Server, kube: Any, dev_kfp: FakeKfp, prod_kfp: FakeKfp) -> Runner:
    """A repository holding this working tree, and its secrets and variables as the
    CI/CD page (docs/cicd.md) asks for them: no environment holds a kubeconfig that may
    write, and none names a registry (each overlay does)."""
    return Runner(
        Repository(tmp_path / "github"),
        tmp_path / "runner",
        repository=f"{OWNER}/flywheel",
        variables={"S3_ENDPOINT": s3.endpoint, "S3_SECURE": "false"},
        environments={
            "dev": Environment(
                secrets={"KFP_TOKEN": str(dev_kfp.token)}, vars={"KFP_HOST": dev_kfp.url}
            ),
            "staging": Environment(),
            "prod": Environment(
                secrets={
                    "KFP_TOKEN": str(prod_kfp.token),
                    "AWS_ACCESS_KEY_ID": s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                },
                vars={"KFP_HOST": prod_kfp.url},
            ),
            "prod-readonly": Environment(
                secrets={"KUBECONFIG_READONLY": kube.kubeconfig.read_text()}
            ),
        },
    )


# --- what the cluster does -------------------------------------------------------------


def gitops(runner: Runner, kube: Any, commit: str, env: str = "prod") -> None:
    """Apply `env`'s overlay at `commit` server-side, as Argo CD or Flux would."""
    archive = subprocess.run(
        ["git", "archive", commit, "manifests"],
        cwd=runner.repo.path,
        capture_output=True,
        check=True,
    ).stdout
    tree = runner.work / f"gitops-{commit[:12]}"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    kube.kubectl("apply", "--server-side", "-k", str(tree / "manifests" / "overlays" / env))


def cli(settings: Settings, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`flywheel` on `settings` (as a config file), with this process's S3 keys and cluster."""
    config = work / "flywheel.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return subprocess.run(
        [str(FLYWHEEL), "--config", str(config), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def controller_looks(settings: Settings, work: Path) -> str:
    """One look of the environment's rollout controller (`flywheel rollout watch`)."""
    looked = cli(settings, work, "rollout", "watch", "--once")
    assert looked.returncode == 0, looked.stdout + looked.stderr
    return looked.stdout


@pytest.fixture
def prod_serving_v1(
    runner: Runner, in_cluster: Any, prod_namespace: str, prod: Settings, tmp_path: Path
) -> dict[str, Any]:
    """Prod serving v1: its overlay on main applied by GitOps, then its controller's first
    look. The stable predictor as it is then."""
    gitops(runner, in_cluster, runner.repo.head())
    assert controller_looks(prod, tmp_path / "first-look").strip() == "serving v1 from slot a"
    return predictor(in_cluster, "a")


def seldon_deployment(kube: Any, *flags: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(
        kube.kubectl(
            "get", "seldondeployment", CHART.model_name, "-n", NAMESPACE, "-o", "json", *flags
        ).stdout
    )
    return obj


def predictor(kube: Any, slot: str) -> dict[str, Any]:
    (found,) = [p for p in seldon_deployment(kube)["spec"]["predictors"] if p["name"] == slot]
    return found


def served_images(kube: Any) -> set[str]:
    """Every container image of the model's SeldonDeployment, as kubectl reads it."""
    return {
        c["image"]
        for p in seldon_deployment(kube)["spec"]["predictors"]
        for spec in p["componentSpecs"]
        for c in spec["spec"]["containers"]
    }


def field_managers(kube: Any) -> set[str]:
    """Who wrote the SeldonDeployment's fields, as the API server records them."""
    obj = seldon_deployment(kube, "--show-managed-fields")
    return {m["manager"] for m in obj["metadata"]["managedFields"]}


def no_seldon_deployment(kube: Any) -> bool:
    listed = kube.kubectl("get", "seldondeployments", "-n", NAMESPACE, "-o", "name")
    return listed.stdout.strip() == ""


def submitted(kfp: FakeKfp) -> tuple[str, dict[str, Any]]:
    """The one run the fake KFP received: its KFP id and its parameters."""
    (run,) = kfp.runs.values()
    parameters: dict[str, Any] = run["runtime_config"]["parameters"]
    assert run["display_name"] == parameters["run_id"]
    return run["run_id"], parameters


def kfp_runs_the_pipeline(
    kfp: FakeKfp, s3: S3Server, work: Path, *overrides: str, state: str = "SUCCEEDED"
) -> runs.InProcessRun:
    """What KFP would do with the run it received: the pipeline's steps on the run's own
    parameters, up to the deploy step (on the API server); then the run ends."""
    kfp_run_id, parameters = submitted(kfp)
    played = runs.run_in_process(
        as_run(parameters["config"], s3, *overrides),
        work,
        run_id=parameters["run_id"],
        git_commit=parameters["git_commit"],
        last_step="deploy",
    )
    kfp.end(kfp_run_id, state)
    return played


# --- the tests -----------------------------------------------------------------------


def test_a_build_is_proposed_everywhere_and_prod_canaries_it_only_once_merged(
    runner: Runner,
    dev_kfp: FakeKfp,
    prod_kfp: FakeKfp,
    s3: S3Server,
    in_cluster: Any,
    prod: Settings,
    prod_serving_v1: dict[str, Any],
    tmp_path: Path,
) -> None:
    kube, stable, start = in_cluster, prod_serving_v1, runner.repo.head()
    # given prod serving v1 from three replicas
    assert stable["replicas"] == 3 and stable["labels"]["flywheel.io/model-version"] == "v1"
    # and dev with a model of its own in production, in dev's own registry
    dev = environment("dev", s3)
    assert runs.run_in_process(dev, tmp_path / "dev-v1", run_id="d1").version == "v1"
    # and a new week of data
    new_batches(prod)

    # when cd.yml runs with the digests images.yml built
    cd = runner.run(
        "cd.yml",
        event="workflow_dispatch",
        inputs={"components-digest": COMPONENTS, "serving-digest": SERVING},
    )
    # then every job ran each of its steps
    assert cd.succeeded, cd.log()
    assert {name: [s.kind for s in job.steps] for name, job in cd.jobs.items()} == {
        "dev": ["uses", "uses", "run", "run", "run"],
        "staging": ["uses", "uses", "run", "run"],
        "prod": ["uses", "uses", "run", "run"],
    }
    # and dev's KFP (only) got its token, the compiled package with the components image,
    # and a run on dev's configuration: the chart's, with dev's registry prefix and policy
    assert prod_kfp.requests == []
    assert dev_kfp.calls() == [
        ("GET", "/apis/v2beta1/healthz"),
        ("GET", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/runs"),
    ]
    assert {r.authorization for r in dev_kfp.requests} == {f"Bearer {dev_kfp.token}"}
    (experiment,) = dev_kfp.experiments.values()
    assert experiment["display_name"] == CHART.pipeline.experiment
    (run,) = dev_kfp.runs.values()
    _, parameters = submitted(dev_kfp)
    image = f"ghcr.io/{OWNER}/flywheel-components@{COMPONENTS}"
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["service_account"] == "flywheel-pipeline-runner"
    assert parameters["image"] == image and parameters["image_digest"] == COMPONENTS
    assert parameters["git_commit"] == start  # the commit the images were built from
    assert parameters["s3_secret"] == CHART.pipeline.s3_secret
    config = json.loads(parameters["config"])
    assert config["storage"]["uri"] == prefix("dev") == f"s3://{BUCKET}/registry/dev"
    assert config["serving"]["pod_template"] == "flywheel-model"  # the cluster's pod, not one
    assert config["rollout"] == json.loads(dev.to_json())["rollout"]  # dev's controller's
    package = run["pipeline_spec"]
    executors = package["pipeline_spec"]["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {image}
    assert "kubernetes" in package["platform_spec"]["platforms"]

    # one pull request per environment, each changing only its overlay's digests
    prs = runner.pull_requests()
    assert [(p["base"], p["head"], p["with_github_token"]) for p in prs] == [
        ("main", f"promote/{env}/{start[:12]}", True) for env in ("dev", "staging", "prod")
    ]
    for env in ("dev", "staging", "prod"):
        overlay = f"manifests/overlays/{env}/kustomization.yaml"
        branch = runner.repo.head(f"promote/{env}/{start[:12]}")
        assert runner.repo.changed(start, branch) == [overlay]
        images = {
            i["name"]: i["digest"]
            for i in yaml.safe_load(runner.repo.show(branch, overlay))["images"]
        }
        assert images == {
            "ghcr.io/flywheel-mlops/flywheel-serving": SERVING,
            "ghcr.io/flywheel-mlops/flywheel-components": COMPONENTS,
        }
    # and nothing reached prod: main is unchanged and prod still serves v1, untouched
    assert runner.repo.head() == start and predictor(kube, "a") == stable

    # when dev's run does its work in dev: a canary of its candidate in dev's registry
    dev_run = as_run(parameters["config"], s3)
    played = runs.run_in_process(dev_run, tmp_path / "dev-run", run_id=parameters["run_id"])
    assert played.version == "v2"
    # (its deploy step acts on dev's cluster, which is not this one: the rollout state
    # it writes is what a controller would find)
    dev_registry = Registry.from_settings(dev_run)
    RolloutController(dev_registry, StateOnlyDriver(), dev_run.rollout).start("v2")
    # then prod's controller never sees it: prod's registry holds only its own v1, no
    # rollout, and the controller's next look serves v1 as before
    prod_registry = Registry.from_settings(prod)
    assert [m.run_id for m in prod_registry.versions()] == ["r1"]
    assert RolloutController(prod_registry, StateOnlyDriver(), prod.rollout).state() is None
    assert controller_looks(prod, tmp_path / "look").strip() == "serving v1 from slot a"
    assert predictor(kube, "a") == stable

    # when dev's and staging's pull requests are merged, prod's canary does not start
    for env in ("dev", "staging"):
        before, after = runner.repo.merge(
            f"promote/{env}/{start[:12]}", f"Merge promotion to {env}"
        )
        assert runner.triggered(before, after) == ["ci.yml"]
    # when prod's is merged, it does (and images.yml does not rebuild for an overlay)
    before, after = runner.repo.merge(f"promote/prod/{start[:12]}", "Merge promotion to prod")
    assert runner.triggered(before, after) == ["ci.yml", "prod-canary.yml"]
    # and GitOps applies the merged overlay: the chart's pod now has the new serving digest
    gitops(runner, kube, after)
    assert predictor(kube, "a") == stable

    def prod_run(step: StepContext) -> None:
        # prod's KFP got one run: the merged components image, on the merged commit, on
        # prod's configuration with prod's registry prefix
        wait_until(
            lambda: "has registered no version yet" in step.output(),
            120,
            "the wait for the run's version",
            step.process,
        )
        _, given = submitted(prod_kfp)
        assert {r.authorization for r in prod_kfp.requests} == {f"Bearer {prod_kfp.token}"}
        assert given["image"] == f"ghcr.io/flywheel-mlops/flywheel-components@{COMPONENTS}"
        assert given["git_commit"] == after
        config = json.loads(given["config"])
        assert config["storage"]["uri"] == prefix("prod")
        assert config["serving"]["pod_template"] == "flywheel-model"
        assert config["rollout"] == json.loads(prod.to_json())["rollout"]
        # when KFP runs it: the run registers v2 in prod's registry and its deploy step
        # starts v2's canary in the cluster
        assert kfp_runs_the_pipeline(prod_kfp, s3, tmp_path / "prod-run").version == "v2"
        first = prod.rollout.steps[0].weight
        assert seldon_predictors(kube, NAMESPACE) == {
            "a": ("v1", 100 - first),
            "b": ("v2", first),
        }
        # stable keeps its three replicas and its pods, byte for byte; the canary runs on
        # the chart's pod as GitOps left it (three replicas, the merged serving digest)
        assert {k: v for k, v in predictor(kube, "a").items() if k != "traffic"} == {
            k: v for k, v in stable.items() if k != "traffic"
        }
        canary = predictor(kube, "b")
        assert canary["replicas"] == 3
        assert {c["image"] for s in canary["componentSpecs"] for c in s["spec"]["containers"]} == {
            f"ghcr.io/flywheel-mlops/flywheel-serving@{SERVING}"
        }
        # and only the rollout controller's code ever wrote the SeldonDeployment
        assert field_managers(kube) == {FIELD_MANAGER}
        wait_until(
            lambda: f"v2: progressing at {first}%" in step.output(),
            60,
            "the wait to see v2's canary",
            step.process,
        )
        # when the on-call operator promotes it
        decided = cli(
            prod, tmp_path / "operator", "promote", "--reason", "promote by the on-call operator"
        )
        assert decided.returncode == 0, decided.stdout + decided.stderr

    canary = runner.run(
        "prod-canary.yml",
        event="push",
        sha=after,
        payload={"before": before, "after": after},
        during={WAIT_STEP: prod_run},
    )
    # then the workflow followed the run to v2 and passed on its promotion
    assert canary.succeeded, canary.log()
    (kfp_run,) = prod_kfp.runs.values()
    waited = canary.step("canary", WAIT_STEP).output
    assert f"run {kfp_run['display_name']} registered v2" in waited
    assert waited.rstrip().endswith("v2 promoted: promote by the on-call operator"), waited
    assert seldon_predictors(kube, NAMESPACE) == {"b": ("v2", 100)}
    assert served_images(kube) == {f"ghcr.io/flywheel-mlops/flywheel-serving@{SERVING}"}
    assert field_managers(kube) == {FIELD_MANAGER}
    assert prod_registry.resolve(PRODUCTION) == "v2"
    lineage = json.loads(prod_registry.read("v2", "lineage.json"))
    assert (lineage["git_commit"], lineage["pipeline_run_id"]) == (after, kfp_run["display_name"])
    # and the workflow never held a credential to prod's cluster
    assert_no_cluster_credentials(canary, runner)

    # and the daily check finds prod serving what the prod overlay on main records
    verify = runner.run("verify-prod.yml", event="workflow_dispatch")
    assert verify.succeeded, verify.log()
    assert f"prod serves {SERVING}" in verify.log()
    for done in (cd, canary, verify):
        assert done.leaked() == [], done.workflow


def assert_no_cluster_credentials(run: WorkflowRun, runner: Runner) -> None:
    """No step of `run` could read a kubeconfig: none among its secrets, none in the runner's
    home, none named in the workflow."""
    assert not [name for name in run.secrets if "KUBECONFIG" in name], sorted(run.secrets)
    assert not (runner.home / ".kube").exists()
    text = runner.repo.show(run.sha, f".github/workflows/{run.workflow}")
    assert "KUBECONFIG" not in text and "kubectl" not in text


def promoted_to_prod(runner: Runner) -> tuple[str, str]:
    """Commit a promotion of the test's digests to prod straight to main."""
    overlay = runner.repo.scratch.parent / "prod-overlay"
    overlay.mkdir(exist_ok=True)
    (overlay / "kustomization.yaml").write_text(runner.repo.show(runner.repo.head(), PROD_OVERLAY))
    promoted = promote.set_digests(
        overlay, {"COMPONENTS_DIGEST": COMPONENTS, "SERVING_DIGEST": SERVING}
    )
    before, after = runner.repo.commit({PROD_OVERLAY: promoted}, "Promote images to prod")
    assert "prod-canary.yml" in runner.triggered(before, after)
    return before, after


def test_a_canary_rolled_back_fails_the_workflow_and_an_unpromoted_overlay_starts_none(
    runner: Runner,
    prod_kfp: FakeKfp,
    s3: S3Server,
    in_cluster: Any,
    prod: Settings,
    prod_serving_v1: dict[str, Any],
    tmp_path: Path,
) -> None:
    kube = in_cluster
    # given prod serving v1, and a new week of data
    new_batches(prod)
    # when prod-canary.yml is started by hand while nothing was promoted to prod, then it
    # refuses before KFP hears of a run
    early = runner.run("prod-canary.yml", event="workflow_dispatch")
    assert not early.succeeded
    assert "nothing was promoted to prod yet" in early.step("canary", SUBMIT_STEP).output
    assert early.step("canary", WAIT_STEP).outcome == "skipped"
    assert prod_kfp.runs == {} and predictor(kube, "a") == prod_serving_v1

    # given a promotion to prod merged into main, and applied by GitOps
    before, after = promoted_to_prod(runner)
    gitops(runner, kube, after)

    def prod_run(step: StepContext) -> None:
        assert kfp_runs_the_pipeline(prod_kfp, s3, tmp_path / "run").version == "v2"
        wait_until(lambda: "v2: progressing" in step.output(), 60, "v2's canary", step.process)
        # when the operator rolls the canary back
        decided = cli(
            prod, tmp_path / "operator", "rollback", "--reason", "rollback by the on-call operator"
        )
        assert decided.returncode == 0, decided.stdout + decided.stderr

    canary = runner.run(
        "prod-canary.yml",
        event="push",
        sha=after,
        payload={"before": before, "after": after},
        during={WAIT_STEP: prod_run},
    )
    # then the workflow fails on the rollback, and production stays v1, alone on the cluster
    assert not canary.succeeded
    step = canary.step("canary", WAIT_STEP)
    assert step.outcome == "failure"
    assert "v2 rolled back: rollback by the on-call operator" in step.output, step.output
    assert seldon_predictors(kube, NAMESPACE) == {"a": ("v1", 100)}
    assert field_managers(kube) == {FIELD_MANAGER}
    assert Registry.from_settings(prod).resolve(PRODUCTION) == "v1"
    assert early.leaked() == [] and canary.leaked() == []
    assert_no_cluster_credentials(canary, runner)


def test_a_run_that_blesses_nothing_or_fails_fails_the_workflow_naming_why(
    runner: Runner, prod_kfp: FakeKfp, s3: S3Server, prod: Settings, tmp_path: Path
) -> None:
    # given a promotion to prod on main, and a new week of data
    promoted_to_prod(runner)
    new_batches(prod)

    # when prod's run ends with its gate blessing nothing (a bar no model clears)
    def unblessed(step: StepContext) -> None:
        played = kfp_runs_the_pipeline(
            prod_kfp, s3, tmp_path / "unblessed", "promotion.min_metric=0.999"
        )
        assert (played.blessed, played.version) == (False, "")

    refused = runner.run(
        "prod-canary.yml", event="workflow_dispatch", during={WAIT_STEP: unblessed}
    )
    # then the workflow fails saying so, and nothing reached prod's registry
    assert not refused.succeeded
    (run,) = prod_kfp.runs.values()
    why = f"run {run['display_name']} registered no version: its gate did not bless the candidate"
    assert why in refused.step("canary", WAIT_STEP).output
    assert [m.version for m in Registry.from_settings(prod).versions()] == ["v1"]

    # when the next run fails on KFP before registering anything
    prod_kfp.runs.clear()

    def failed(step: StepContext) -> None:
        wait_until(lambda: bool(prod_kfp.runs), 60, "the run on KFP", step.process)
        kfp_run_id, _ = submitted(prod_kfp)
        prod_kfp.end(kfp_run_id, "FAILED")

    broken = runner.run("prod-canary.yml", event="workflow_dispatch", during={WAIT_STEP: failed})
    # then the workflow fails naming the run and its state
    assert not broken.succeeded
    (run,) = prod_kfp.runs.values()
    assert (
        f"run {run['display_name']} ended FAILED on KFP without registering a version"
        in broken.step("canary", WAIT_STEP).output
    )
    assert refused.leaked() == [] and broken.leaked() == []
