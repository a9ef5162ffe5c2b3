"""Promotion by digest, for the workflows (`make promote`, `make submit`, `make wait-rollout`,
`make verify-prod`).

`set ENV` writes COMPONENTS_DIGEST and SERVING_DIGEST (sha256:...) into
manifests/overlays/ENV/kustomization.yaml, changing nothing else in the file.
`image ENV components|serving` prints the image (name@digest) the overlay records,
and fails while it is still the all-zero placeholder (nothing was promoted to ENV).
`config ENV PATH` writes the configuration ENV's cluster runs with: the chart's
(the base's ConfigMap: the repository's flywheel.yaml with the cluster's settings over
it) with the FLYWHEEL_* variables ENV's overlay gives its rollout controller, among
them ENV's own registry prefix. A run CI starts for ENV is then the run ENV's trigger
engine would start.
`verify ENV` reads the model's SeldonDeployment from the cluster in KUBECONFIG
and fails unless every serving container runs the digest the overlay records.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from flywheel.config import Settings

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = REPO / "manifests" / "overlays"
BASE = REPO / "manifests" / "base" / "flywheel.yaml"
IMAGES = {
    "COMPONENTS_DIGEST": "ghcr.io/flywheel-mlops/flywheel-components",
    "SERVING_DIGEST": "ghcr.io/flywheel-mlops/flywheel-serving",
}
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# What a fresh overlay records until the first promotion writes a real digest.
PLACEHOLDER = "sha256:" + "0" * 64
# The objects whose containers read the configuration, as the overlays patch them.
CONTROLLER = ("Deployment", "flywheel-rollout-controller")
TRIGGERS = ("CronWorkflow", "flywheel-triggers")
STORAGE_URI = "FLYWHEEL_STORAGE__URI"


class PromotionError(ValueError):
    """A digest or an overlay is not what promotion needs."""


def set_digests(overlay: Path, digests: dict[str, str]) -> str:
    """The overlay's text with each image's `digest:` line replaced."""
    text = (overlay / "kustomization.yaml").read_text()
    for variable, image in IMAGES.items():
        digest = digests.get(variable, "")
        if not DIGEST.match(digest):
            raise PromotionError(f"{variable} must be sha256:<64 hex digits>, got {digest!r}")
        pattern = re.compile(rf"(- name: {re.escape(image)}\n\s+digest: )sha256:[0-9a-f]{{64}}")
        text, count = pattern.subn(rf"\g<1>{digest}", text)
        if count != 1:
            raise PromotionError(f"{overlay.name}: no single images entry for {image}")
    return text


def recorded(overlay: Path) -> dict[str, str]:
    """image -> digest, as the overlay records them."""
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    return {i["name"]: i["digest"] for i in spec.get("images", [])}


def image(overlay: Path, which: str) -> str:
    """The image (name@digest) of `which` (components or serving) the overlay records,
    once something was promoted to it."""
    name = IMAGES[f"{which.upper()}_DIGEST"]
    digest = recorded(overlay).get(name, "")
    if digest == PLACEHOLDER or not DIGEST.match(digest):
        raise PromotionError(
            f"nothing was promoted to {overlay.name} yet (its overlay records {digest!r})"
        )
    return f"{name}@{digest}"


def added_env(overlay: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(kind, name) -> the FLYWHEEL_* variables the overlay's patches add to that object's
    containers (a CronWorkflow's steps are told apart as kind/name#template)."""
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    found: dict[tuple[str, str], dict[str, str]] = {}
    for patch in spec.get("patches", []):
        target = (patch["target"]["kind"], patch["target"]["name"])
        for op in yaml.safe_load(patch["patch"]):
            path, value = str(op.get("path", "")), op.get("value")
            if not (path.endswith("/env/-") and isinstance(value, dict)):
                continue
            if not str(value.get("name", "")).startswith("FLYWHEEL_"):
                continue
            template = re.search(r"/templates/(\d+)/", path)
            key = (target[0], target[1] + (f"#{template.group(1)}" if template else ""))
            found.setdefault(key, {})[value["name"]] = str(value["value"])
    return found


def registry_prefix(overlay: Path) -> str:
    """The one storage URI the overlay gives its rollout controller and its trigger engine."""
    env = added_env(overlay)
    readers = [key for key in env if key == CONTROLLER or key[0] == TRIGGERS[0]]
    uris = {env[key].get(STORAGE_URI) for key in readers}
    if CONTROLLER not in readers or not any(k[0] == TRIGGERS[0] for k in readers):
        raise PromotionError(
            f"{overlay.name}: its overlay must set {STORAGE_URI} on the rollout controller "
            "and on the trigger engine's steps"
        )
    if None in uris or len(uris) != 1:
        raise PromotionError(
            f"{overlay.name}: the rollout controller and the trigger engine must share one "
            f"{STORAGE_URI}, not {sorted(str(u) for u in uris)}"
        )
    (uri,) = uris
    assert uri is not None
    return uri


def chart_config() -> dict[str, Any]:
    """The flywheel.yaml of the base's ConfigMap: the chart's, as every overlay ships it."""
    for doc in yaml.safe_load_all(BASE.read_text()):
        if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "flywheel-config":
            config: dict[str, Any] = yaml.safe_load(doc["data"]["flywheel.yaml"])
            return config
    raise PromotionError(f"{BASE.relative_to(REPO)} has no ConfigMap flywheel-config")


def environment(overlay: Path) -> Settings:
    """The settings ENV's rollout controller runs with (ENV's registry prefix among them)."""
    from flywheel.config import load_settings

    registry_prefix(overlay)  # refused unless the controller and the triggers share one
    with tempfile.TemporaryDirectory() as scratch:
        chart = Path(scratch) / "flywheel.yaml"
        chart.write_text(yaml.safe_dump(chart_config(), sort_keys=False))
        settings: Settings = load_settings(chart, env=added_env(overlay)[CONTROLLER])
    return settings


def write_config(overlay: Path, path: Path) -> str:
    """Write ENV's configuration to `path` for the flywheel CLI (FLYWHEEL_* variables still
    apply over it, but not another registry prefix); return its storage URI."""
    settings = environment(overlay)
    given = os.environ.get(STORAGE_URI)
    if given and given != settings.storage.uri:
        raise PromotionError(
            f"{STORAGE_URI}={given} would send {overlay.name}'s runs to another registry: "
            f"{overlay.name}'s is {settings.storage.uri}, as its overlay says"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return settings.storage.uri


def served_images(overlay: Path) -> list[str]:
    """The serving containers' images of the model's SeldonDeployment on the cluster in
    KUBECONFIG (namespace and name from ENV's configuration, as the controller uses them)."""
    from flywheel.rollout.kubernetes import KubernetesDriver

    settings = environment(overlay)
    obj = KubernetesDriver(settings).get()
    if obj is None:
        raise PromotionError(f"no SeldonDeployment for {settings.model_name} on the cluster")
    return [
        c["image"]
        for p in obj["spec"]["predictors"]
        for spec in p.get("componentSpecs", [])
        for c in spec["spec"]["containers"]
    ]


USAGE = (
    "usage: python -m tools.promote set ENV | image ENV components|serving | config ENV PATH"
    " | verify ENV   (ENV: dev, staging or prod)"
)


def main(argv: list[str]) -> int:
    command, env, *rest = [*argv, "", ""]
    overlay = OVERLAYS / env
    known = {"set": 0, "image": 1, "config": 1, "verify": 0}
    if command not in known or not (overlay / "kustomization.yaml").is_file():
        print(USAGE, file=sys.stderr)
        return 2
    argument = rest[0] if known[command] else ""
    if known[command] and not argument:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if command == "set":
            text = set_digests(overlay, dict(os.environ))
            (overlay / "kustomization.yaml").write_text(text)
            print(f"{overlay.relative_to(REPO)}: digests set")
            return 0
        if command == "image":
            if argument not in ("components", "serving"):
                print(USAGE, file=sys.stderr)
                return 2
            print(image(overlay, argument))
            return 0
        if command == "config":
            uri = write_config(overlay, Path(argument))
            print(f"{argument}: {env}'s configuration, its registry at {uri}", file=sys.stderr)
            return 0
        want = recorded(overlay)[IMAGES["SERVING_DIGEST"]]
        images = served_images(overlay)
        wrong = [i for i in images if not i.endswith(f"@{want}")]
        if wrong:
            print(f"{env} serves {wrong}, the overlay records {want}", file=sys.stderr)
            return 1
        print(f"{env} serves {want}")
        return 0
    except PromotionError as error:
        print(f"promotion refused: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
