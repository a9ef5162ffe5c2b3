"""The GitHub Actions workflows, checked as far as a test without GitHub can.

GitHub's runners, GHCR, Sigstore and the clusters are out of the tests' reach, so
no workflow runs here (tests/integration/test_cd.py runs the delivery workflows'
`run:` steps against loopback servers). The checks are the real linters
(actionlint with shellcheck, zizmor, both built or installed by `make tools`) and
the rules that make promotion by digest safe.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import promote
from tools.build import binary

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _load(path: Path) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True.
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def _lint(tool: str, *args: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        [str(binary(tool)), *args], capture_output=True, text=True, check=False, env=env, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_with_shellcheck_finds_nothing() -> None:
    env = {**os.environ, "PATH": f"{binary('shellcheck').parent}:{os.environ['PATH']}"}
    _lint("actionlint", "-color=false", *map(str, WORKFLOWS), env=env)


def test_zizmor_finds_nothing() -> None:
    _lint("zizmor", "--offline", "--no-progress", "--format=plain", ".github/workflows")


def test_every_make_target_a_workflow_calls_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), re.M))
    called = set()
    for path in WORKFLOWS:
        for step in _steps(_load(path)):
            for match in re.finditer(
                r"\bmake\s+\"?([a-z][a-z-]*)(\$\{\w+\})?", step.get("run", "")
            ):
                name = match.group(1)
                if match.group(2):  # make "test-${TIER}": every matrix value
                    job = next(
                        j for j in _load(path)["jobs"].values() if step in j.get("steps", [])
                    )
                    called |= {f"{name}{tier}" for tier in job["strategy"]["matrix"]["tier"]}
                else:
                    called.add(name)
    assert called and called <= targets, called - targets


def test_every_dockerfile_is_in_the_image_matrix() -> None:
    (build,) = [_load(p)["jobs"]["build"] for p in WORKFLOWS if p.name == "images.yml"]
    built = {entry["dockerfile"] for entry in build["strategy"]["matrix"]["include"]}
    found = {
        str(p.relative_to(REPO))
        for p in REPO.rglob("Dockerfile")
        if not any(part.startswith(".") for part in p.relative_to(REPO).parts)
    }
    assert found == built


def test_promotion_uses_the_digests_the_build_produced_and_never_builds() -> None:
    images = _load(REPO / ".github" / "workflows" / "images.yml")
    cd = _load(REPO / ".github" / "workflows" / "cd.yml")
    promote_job = images["jobs"]["promote"]
    assert promote_job["uses"] == "./.github/workflows/cd.yml"
    assert promote_job["with"] == {
        "components-digest": "${{ needs.digests.outputs.components }}",
        "serving-digest": "${{ needs.digests.outputs.serving }}",
    }
    assert images["jobs"]["digests"]["needs"] == "build"
    text = (REPO / ".github" / "workflows" / "cd.yml").read_text()
    assert "docker build" not in text and "build-push-action" not in text
    assert cd["env"] == {
        "COMPONENTS_DIGEST": "${{ inputs.components-digest }}",
        "SERVING_DIGEST": "${{ inputs.serving-digest }}",
    }
    assert [cd["jobs"][j]["environment"] for j in ("dev", "staging", "prod")] == [
        "dev",
        "staging",
        "prod",
    ]
    assert cd["jobs"]["staging"]["needs"] == "dev" and cd["jobs"]["prod"]["needs"] == "staging"


def test_the_prod_canary_starts_only_from_a_merged_prod_overlay() -> None:
    # cd.yml only proposes prod's digests; prod's run starts once that change is on main.
    cd = _load(REPO / ".github" / "workflows" / "cd.yml")
    cd_runs = " ".join(s.get("run", "") for s in _steps(cd))
    assert "submit ENV=prod" not in cd_runs and "wait-rollout" not in cd_runs
    canary = _load(REPO / ".github" / "workflows" / "prod-canary.yml")
    assert canary["on"]["push"] == {
        "branches": ["main"],
        "paths": ["manifests/overlays/prod/kustomization.yaml"],
    }
    (job,) = canary["jobs"].values()
    assert job["environment"].startswith("prod") and job["permissions"] == {"contents": "read"}
    # a run on prod's KFP, then a wait for the rollout of the version that run registers
    submit, wait = [step for step in job["steps"] if "run" in step]
    assert 'make submit ENV=prod RUN_ID="${run_id}"' in submit["run"]
    assert wait["run"] == 'make wait-rollout ENV=prod RUN_ID="${RUN_ID}"'
    assert wait["env"]["RUN_ID"] == "${{ steps." + submit["id"] + ".outputs.run_id }}"
    # A merged promotion changes only an overlay: images.yml must not rebuild (and re-promote).
    images = _load(REPO / ".github" / "workflows" / "images.yml")
    assert images["on"]["push"]["paths-ignore"] == ["manifests/overlays/**"]


def test_no_workflow_renders_applies_or_may_write_the_models_deployment() -> None:
    # The in-cluster controller owns the SeldonDeployment: CI starts runs and reads.
    for path in WORKFLOWS:
        text = path.read_text()
        for forbidden in ("flywheel deploy", "make canary", "kubectl", "deploy candidate"):
            assert forbidden not in text, f"{path.name}: {forbidden}"
        kubeconfigs = set(re.findall(r"secrets\.(\w*KUBECONFIG\w*)", text))
        assert kubeconfigs <= {"KUBECONFIG_READONLY"}, (path.name, kubeconfigs)
    verify = _load(REPO / ".github" / "workflows" / "verify-prod.yml")
    assert [job["environment"] for job in verify["jobs"].values()] == ["prod-readonly"]


def _rendered(overlay: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(binary("kubectl")), "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _config_readers(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Every container that mounts the configuration -> its literal environment."""
    found = {}

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            # A CronWorkflow's containers are unnamed: its templates name them.
            where = f"{where}/{node['name']}" if isinstance(node.get("name"), str) else where
            mounts = node.get("volumeMounts", []) if "image" in node else []
            if any(m["name"] == "config" for m in mounts):
                found[where] = {e["name"]: e.get("value", "") for e in node.get("env", [])}
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for doc in docs:
        walk(doc, f"{doc['kind']}/{doc['metadata']['name']}")
    return found


def test_each_environment_has_its_own_registry_prefix() -> None:
    # given each overlay as kustomize renders it
    prefixes = {}
    for overlay in sorted((REPO / "manifests" / "overlays").iterdir()):
        readers = _config_readers(_rendered(overlay))
        # then every container reading the configuration (the rollout controller, the
        # trigger engine's steps) gets the same registry prefix, the one CI's runs for
        # that environment use
        assert len(readers) == 5, sorted(readers)
        uris = {env.get("FLYWHEEL_STORAGE__URI") for env in readers.values()}
        assert uris == {promote.registry_prefix(overlay)}, (overlay.name, readers)
        prefixes[overlay.name] = promote.registry_prefix(overlay)
        assert promote.environment(overlay).storage.uri == prefixes[overlay.name]
    # and no two environments share one, or nest one in the other: a run of one can
    # never start a canary the controller of another drives
    assert sorted(prefixes) == ["dev", "prod", "staging"]
    for env, uri in prefixes.items():
        for other, other_uri in prefixes.items():
            if env != other:
                assert not f"{other_uri}/".startswith(f"{uri.rstrip('/')}/"), (env, other)


def test_the_registry_prefix_is_refused_when_the_controller_and_triggers_disagree(
    tmp_path: Path,
) -> None:
    overlay = tmp_path / "prod"
    overlay.mkdir()
    text = (REPO / "manifests" / "overlays" / "prod" / "kustomization.yaml").read_text()
    assert text.count("s3://flywheel/registry/prod") == 5
    (overlay / "kustomization.yaml").write_text(
        text.replace("s3://flywheel/registry/prod", "s3://flywheel/registry/dev", 1)
    )
    with pytest.raises(promote.PromotionError, match="must share one FLYWHEEL_STORAGE__URI"):
        promote.registry_prefix(overlay)
    (overlay / "kustomization.yaml").write_text(
        re.sub(r"\n  # The trigger engine's.*", "\n", text, flags=re.S)
    )
    with pytest.raises(promote.PromotionError, match="on the trigger engine's steps"):
        promote.registry_prefix(overlay)


def test_every_secret_and_variable_a_workflow_reads_is_documented() -> None:
    section = (REPO / "docs" / "cicd.md").read_text()
    used = {
        name
        for path in WORKFLOWS
        for name in re.findall(r"\$\{\{[^}]*\b(?:secrets|vars)\.(\w+)", path.read_text())
    }
    assert used, "no secrets or variables found"
    missing = {name for name in used - {"GITHUB_TOKEN"} if f"`{name}`" not in section}
    assert not missing, f"docs/cicd.md does not name {sorted(missing)}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_are_hardened(path: Path) -> None:
    workflow = _load(path)
    assert workflow["permissions"] == {}, "top-level permissions: {}"
    assert "concurrency" in workflow
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, name
        if "uses" not in job:  # a reusable workflow's jobs carry their own timeouts
            assert "timeout-minutes" in job, name
        writes = job["permissions"] or {}
        if writes.get("id-token") == "write":
            assert any(
                "cosign" in s.get("run", "") or "attest" in s.get("uses", "") for s in job["steps"]
            )
    for step in _steps(workflow):
        if "uses" in step and not step["uses"].startswith("./"):
            assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
        assert "${{" not in step.get("run", ""), f"expression expanded inside run: {step['run']}"
    for line in path.read_text().splitlines():
        if re.search(r"uses: [\w./-]+@[0-9a-f]{40}", line):
            assert re.search(r"# v\d+\.\d+\.\d+$", line), f"no version comment: {line.strip()}"


def test_promote_rewrites_only_the_digests(tmp_path: Path) -> None:
    overlay = tmp_path / "dev"
    overlay.mkdir()
    source = REPO / "manifests" / "overlays" / "dev" / "kustomization.yaml"
    (overlay / "kustomization.yaml").write_text(source.read_text())
    digests = {"COMPONENTS_DIGEST": "sha256:" + "a" * 64, "SERVING_DIGEST": "sha256:" + "b" * 64}
    text = promote.set_digests(overlay, digests)
    changed = [
        (old, new)
        for old, new in zip(source.read_text().splitlines(), text.splitlines(), strict=True)
        if old != new
    ]
    assert [new.strip() for _, new in changed] == [
        "digest: sha256:" + "b" * 64,
        "digest: sha256:" + "a" * 64,
    ]
    with pytest.raises(promote.PromotionError, match="SERVING_DIGEST must be sha256"):
        promote.set_digests(overlay, {**digests, "SERVING_DIGEST": "latest"})


def test_a_run_for_an_environment_is_on_its_configuration_and_promoted_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prod = REPO / "manifests" / "overlays" / "prod"
    # the chart's configuration with prod's controller's variables, its prefix among them
    path = tmp_path / "prod.yaml"
    monkeypatch.delenv("FLYWHEEL_STORAGE__URI", raising=False)
    assert promote.write_config(prod, path) == "s3://flywheel/registry/prod"
    written = yaml.safe_load(path.read_text())
    assert written["storage"]["uri"] == "s3://flywheel/registry/prod"
    assert written["serving"]["pod_template"] == "flywheel-model"
    assert written["rollout"]["steps"][0]["weight"] == 5
    # and no variable of the runner's may send it to another registry
    monkeypatch.setenv("FLYWHEEL_STORAGE__URI", "s3://flywheel/registry/dev")
    with pytest.raises(promote.PromotionError, match="would send prod's runs to another"):
        promote.write_config(prod, path)
    # the image is the promoted one, never the placeholder
    with pytest.raises(promote.PromotionError, match="nothing was promoted to prod yet"):
        promote.image(prod, "components")
    promoted = tmp_path / "promoted"
    promoted.mkdir()
    digests = {"COMPONENTS_DIGEST": "sha256:" + "a" * 64, "SERVING_DIGEST": "sha256:" + "b" * 64}
    (promoted / "kustomization.yaml").write_text(promote.set_digests(prod, digests))
    assert promote.image(promoted, "components") == (
        "ghcr.io/flywheel-mlops/flywheel-components@sha256:" + "a" * 64
    )
