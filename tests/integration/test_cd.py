"""The delivery workflows run here, step by step: cd.yml, then prod-canary.yml once the
prod promotion is merged, then verify-prod.yml.

harness/workflow.py runs every `run:` step of each workflow in order under
bash, with the GITHUB_* and RUNNER_* variables a runner sets and the steps' `env:`
evaluated from the event's inputs and the environments' secrets and variables,
in a fresh clone (per job) of a local git repository holding this working tree.
`make submit`, `make promote`, `make canary`, `make verify-prod` and the
promotion script's git commits and pushes really run; the model registry and the
rollout state live in a real SeaweedFS, the SeldonDeployment on a real
kube-apiserver (kwok's nodes, so no pod serves a request).

What stands in for GitHub, and why:
- `uses:` steps: actions/checkout is done with git (persist-credentials: false, no
  token stored); actions/setup-python is replaced by the project's .venv, linked
  into the workspace. Any other action is refused by the harness.
- `gh pr create` is a recorded fake: it checks GH_TOKEN and that the branch was
  pushed, and opens nothing. The test merges the branches itself, as a reviewer
  would with GitHub's merge button, and the harness decides from each workflow's
  `on.push` filters which workflows that push starts.
- Environment approvals (prod's required reviewers), `permissions:` and secret
  masking are GitHub's; instead, no secret's value may appear in any step's output.
- KFP: its API server cannot be built here, so `make submit` talks to a loopback
  fake of the v2beta1 endpoints the kfp SDK calls (harness/kfp.py), which
  requires the bearer token and records each request: the test checks the token,
  the compiled package and the run parameters it received. Nothing runs the pipeline.
- The canary's decision: no pod serves traffic under kwok, so no rollout controller
  can judge the canary. The test plays the on-call operator instead: while `make
  canary` waits, it checks the canary on the API server (weight, model version,
  the merged serving digest) and then runs `flywheel promote` or `flywheel
  rollback` with the Kubernetes driver, as a person would; `make canary` must
  then pass or fail the workflow accordingly.
- verify-prod.yml's read-only kubeconfig is the test cluster's admin one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import Settings, load_settings
from flywheel.registry import PRODUCTION, Registry
from harness.deployments import seldon_predictors
from harness.kfp import FakeKfp, kfp_api
from harness.projects import train_and_register
from harness.servers import S3Server, wait_until
from harness.workflow import Environment, Repository, Runner, StepContext
from tools import promote

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = "sha256:" + "c" * 64
SERVING = "sha256:" + "5" * 64
OWNER = "flywheel-mlops"
CANARY_STEP = "start the canary on the merged digest and wait for the controller's decision"
PROD_OVERLAY = "manifests/overlays/prod/kustomization.yaml"
# flywheel.yaml's serving namespace and model: what the workflows deploy.
SHIPPED = load_settings(REPO / "flywheel.yaml", env={})
NAMESPACE = SHIPPED.serving.namespace


@pytest.fixture
def prod_namespace(kube: Any) -> Iterator[str]:
    """flywheel.yaml's serving namespace (restricted Pod Security), new and deleted after."""
    # The chart's tests apply the overlays there too, and may have run first on this worker.
    kube.kubectl(
        "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s"
    )
    kube.kubectl("create", "namespace", NAMESPACE)
    kube.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    yield NAMESPACE
    kube.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False)


@pytest.fixture
def registry(
    s3_env: Callable[[str], list[str]],
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    tmp_path: Path,
) -> Settings:
    """A store in SeaweedFS with v1 in production and v2 registered as the candidate."""
    settings = small_settings(*s3_env("cd"))
    make_batches(settings, 5)
    assert train_and_register(settings, tmp_path / "w1", "r1") == "v1"
    make_batches(settings, 2, start=settings.data.generator.start_date + timedelta(days=5))
    assert train_and_register(settings, tmp_path / "w2", "r2") == "v2"
    return settings


@pytest.fixture
def kfp() -> Iterator[FakeKfp]:
    with kfp_api(token="kfp-token-for-dev-0123456789") as server:
        yield server


@pytest.fixture
def runner(
    tmp_path: Path, s3_server: S3Server, kube: Any, kfp: FakeKfp, registry: Settings
) -> Runner:
    """A repository holding this working tree, and its secrets and variables as the
    CI/CD page (docs/cicd.md) asks for them."""
    bucket = registry.storage.uri.removeprefix("s3://").split("/", 1)[0]
    kubeconfig = kube.kubeconfig.read_text()
    return Runner(
        Repository(tmp_path / "github"),
        tmp_path / "runner",
        repository=f"{OWNER}/flywheel",
        variables={
            "STORAGE_URI": registry.storage.uri,
            "DATA_SOURCE": f"s3://{bucket}/batches",
            "S3_ENDPOINT": s3_server.endpoint,
            "S3_SECURE": "false",
        },
        environments={
            "dev": Environment(secrets={"KFP_TOKEN": str(kfp.token)}, vars={"KFP_HOST": kfp.url}),
            "staging": Environment(),
            "prod": Environment(
                secrets={
                    "KUBECONFIG": kubeconfig,
                    "AWS_ACCESS_KEY_ID": s3_server.access_key,
                    "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
                }
            ),
            "prod-readonly": Environment(secrets={"KUBECONFIG_READONLY": kubeconfig}),
        },
    )


def operator(kube: Any, decision: str, digest: str) -> Callable[[StepContext], None]:
    """The on-call operator beside `make canary`: once the canary is on the cluster,
    check it, then `flywheel promote` or `flywheel rollback` it on the cluster."""

    def act(step: StepContext) -> None:
        wait_until(
            lambda: "canary" in seldon_predictors(kube, NAMESPACE),
            180,
            "the canary on the API server",
            step.process,
        )
        first = SHIPPED.rollout.steps[0].weight
        assert seldon_predictors(kube, NAMESPACE) == {
            "stable": ("v1", 100 - first),
            "canary": ("v2", first),
        }
        assert set(served_images(kube)) == {f"ghcr.io/flywheel-mlops/flywheel-serving@{digest}"}
        flywheel = [str(step.workspace / ".venv" / "bin" / "flywheel")]
        env = {**step.env, "KUBECONFIG": f"{step.env['RUNNER_TEMP']}/kubeconfig"}
        on_cluster = [
            "--set",
            "rollout.driver=kubernetes",
            "--set",
            f"serving.image_digest={digest}",
        ]
        status = subprocess.run(
            [*flywheel, "rollout", "status"],
            cwd=step.workspace,
            env=env,
            capture_output=True,
            text=True,
        )
        assert "progressing — v2 against v1" in status.stdout, status.stdout + status.stderr
        decided = subprocess.run(
            [*flywheel, *on_cluster, decision, "--reason", f"{decision} by the on-call operator"],
            cwd=step.workspace,
            env=env,
            capture_output=True,
            text=True,
        )
        assert decided.returncode == 0, decided.stdout + decided.stderr

    return act


def served_images(kube: Any) -> list[str]:
    """Every container image of the model's SeldonDeployment, as kubectl reads it."""
    obj = json.loads(
        kube.kubectl(
            "get", "seldondeployment", SHIPPED.model_name, "-n", NAMESPACE, "-o", "json"
        ).stdout
    )
    return [
        c["image"]
        for p in obj["spec"]["predictors"]
        for spec in p["componentSpecs"]
        for c in spec["spec"]["containers"]
    ]


def no_seldon_deployment(kube: Any) -> bool:
    listed = kube.kubectl("get", "seldondeployments", "-n", NAMESPACE, "-o", "name")
    return listed.stdout.strip() == ""


def test_a_build_is_proposed_everywhere_and_prod_canaries_it_only_once_merged(
    runner: Runner, kfp: FakeKfp, kube: Any, prod_namespace: str, registry: Settings
) -> None:
    # given the digests images.yml built (cd.yml is run as dispatched with them)
    start = runner.repo.head()
    # when cd.yml runs
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

    # dev's KFP got the token, the compiled package with the components image, and the parameters
    assert kfp.calls() == [
        ("GET", "/apis/v2beta1/healthz"),
        ("GET", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/runs"),
    ]
    assert {r.authorization for r in kfp.requests} == {f"Bearer {kfp.token}"}
    (experiment,) = kfp.experiments.values()
    assert experiment["display_name"] == SHIPPED.pipeline.experiment
    (run,) = kfp.runs.values()
    image = f"ghcr.io/{OWNER}/flywheel-components@{COMPONENTS}"
    parameters = run["runtime_config"]["parameters"]
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["service_account"] == "flywheel-pipeline-runner"
    assert run["display_name"] == parameters["run_id"]
    assert parameters["image"] == image and parameters["image_digest"] == COMPONENTS
    assert parameters["git_commit"] == start  # the commit the images were built from
    assert parameters["s3_secret"] == SHIPPED.pipeline.s3_secret
    config = json.loads(parameters["config"])
    assert config["storage"]["uri"] == registry.storage.uri
    assert config["storage"]["endpoint"] == registry.storage.endpoint
    assert config["storage"]["secure"] is False
    assert config["data"]["source"].startswith("s3://")
    assert config["rollout"]["driver"] == "kubernetes"
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
            i["name"]: i["digest"] for i in _yaml(runner.repo.show(branch, overlay))["images"]
        }
        assert images == {
            "ghcr.io/flywheel-mlops/flywheel-serving": SERVING,
            "ghcr.io/flywheel-mlops/flywheel-components": COMPONENTS,
        }
    # and nothing reached prod: main is unchanged and the cluster has no model
    assert runner.repo.head() == start and no_seldon_deployment(kube)

    # when dev's and staging's pull requests are merged, prod's canary does not start
    for env in ("dev", "staging"):
        before, after = runner.repo.merge(
            f"promote/{env}/{start[:12]}", f"Merge promotion to {env}"
        )
        assert runner.triggered(before, after) == ["ci.yml"]
    # when prod's is merged, it does (and images.yml does not rebuild for an overlay)
    before, after = runner.repo.merge(f"promote/prod/{start[:12]}", "Merge promotion to prod")
    assert runner.triggered(before, after) == ["ci.yml", "prod-canary.yml"]
    canary = runner.run(
        "prod-canary.yml",
        event="push",
        sha=after,
        payload={"before": before, "after": after},
        during={CANARY_STEP: operator(kube, "promote", SERVING)},
    )
    # then the canary ran on the merged digest, and the operator's promotion passed the job
    assert canary.succeeded, canary.log()
    assert (
        "v2 promoted: promote by the on-call operator" in canary.step("canary", CANARY_STEP).output
    )
    assert seldon_predictors(kube, NAMESPACE) == {"a": ("v2", 100)}
    assert set(served_images(kube)) == {f"ghcr.io/flywheel-mlops/flywheel-serving@{SERVING}"}
    assert Registry.from_settings(registry).resolve(PRODUCTION) == "v2"

    # and the daily check finds prod serving what the prod overlay on main records
    verify = runner.run("verify-prod.yml", event="workflow_dispatch")
    assert verify.succeeded, verify.log()
    assert f"prod serves {SERVING}" in verify.log()
    for done in (cd, canary, verify):
        assert done.leaked() == [], done.workflow


def test_a_canary_rolled_back_fails_the_workflow_and_an_unpromoted_overlay_starts_none(
    runner: Runner, kube: Any, prod_namespace: str, registry: Settings
) -> None:
    # given main with the prod overlay's placeholder digests (nothing promoted yet)
    # when prod-canary.yml is started by hand, then it refuses before touching the cluster
    early = runner.run("prod-canary.yml", event="workflow_dispatch")
    assert not early.succeeded
    assert "nothing was promoted to prod yet" in early.step("canary", CANARY_STEP).output
    assert no_seldon_deployment(kube)

    # given a promotion to prod merged into main
    overlay = runner.repo.scratch.parent / "prod-overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(runner.repo.show(runner.repo.head(), PROD_OVERLAY))
    promoted = promote.set_digests(
        overlay, {"COMPONENTS_DIGEST": COMPONENTS, "SERVING_DIGEST": SERVING}
    )
    before, after = runner.repo.commit({PROD_OVERLAY: promoted}, "Promote images to prod")
    assert "prod-canary.yml" in runner.triggered(before, after)
    # when the operator rolls the canary back
    canary = runner.run(
        "prod-canary.yml",
        event="push",
        sha=after,
        payload={"before": before, "after": after},
        during={CANARY_STEP: operator(kube, "rollback", SERVING)},
    )
    # then the workflow fails, and production stays v1, alone on the cluster
    assert not canary.succeeded
    step = canary.step("canary", CANARY_STEP)
    assert step.outcome == "failure"
    assert "v2 rolled back: rollback by the on-call operator" in step.output, step.output
    assert seldon_predictors(kube, NAMESPACE) == {"a": ("v1", 100)}
    assert Registry.from_settings(registry).resolve(PRODUCTION) == "v1"
    assert early.leaked() == [] and canary.leaked() == []


def _yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)
