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
    # cd.yml only proposes prod's digests; the canary runs once that change is on main.
    cd = _load(REPO / ".github" / "workflows" / "cd.yml")
    assert "make canary" not in " ".join(s.get("run", "") for s in _steps(cd))
    canary = _load(REPO / ".github" / "workflows" / "prod-canary.yml")
    assert canary["on"]["push"] == {
        "branches": ["main"],
        "paths": ["manifests/overlays/prod/kustomization.yaml"],
    }
    (job,) = canary["jobs"].values()
    assert job["environment"].startswith("prod") and job["permissions"] == {"contents": "read"}
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert "make canary ENV=prod" in runs
    # A merged promotion changes only an overlay: images.yml must not rebuild (and re-promote).
    images = _load(REPO / ".github" / "workflows" / "images.yml")
    assert images["on"]["push"]["paths-ignore"] == ["manifests/overlays/**"]


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
