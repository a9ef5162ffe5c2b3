"""Promotion by digest, for the workflows (`make promote`, `make canary`, `make verify-prod`).

`set ENV` writes COMPONENTS_DIGEST and SERVING_DIGEST (sha256:...) into
manifests/overlays/ENV/kustomization.yaml, changing nothing else in the file.
`digest ENV` prints the serving digest the overlay records, and fails while it
is still the all-zero placeholder (nothing was promoted to ENV yet).
`verify ENV` reads the model's SeldonDeployment from the cluster in KUBECONFIG
and fails unless every serving container runs the digest the overlay records.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = REPO / "manifests" / "overlays"
IMAGES = {
    "COMPONENTS_DIGEST": "ghcr.io/flywheel-mlops/flywheel-components",
    "SERVING_DIGEST": "ghcr.io/flywheel-mlops/flywheel-serving",
}
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# What a fresh overlay records until the first promotion writes a real digest.
PLACEHOLDER = "sha256:" + "0" * 64


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


def serving_digest(overlay: Path) -> str:
    """The serving image's digest the overlay records, once something was promoted to it."""
    digest = recorded(overlay).get(IMAGES["SERVING_DIGEST"], "")
    if digest == PLACEHOLDER or not DIGEST.match(digest):
        raise PromotionError(
            f"nothing was promoted to {overlay.name} yet (its overlay records {digest!r})"
        )
    return digest


def served_images() -> list[str]:
    """The serving containers' images of the model's SeldonDeployment on the cluster in
    KUBECONFIG (namespace and name from flywheel.yaml, as the rollout driver uses them)."""
    from flywheel.config import load_settings
    from flywheel.rollout.kubernetes import KubernetesDriver

    settings = load_settings(REPO / "flywheel.yaml")
    obj = KubernetesDriver(settings).get()
    if obj is None:
        raise PromotionError(f"no SeldonDeployment for {settings.model_name} on the cluster")
    return [
        c["image"]
        for p in obj["spec"]["predictors"]
        for spec in p.get("componentSpecs", [])
        for c in spec["spec"]["containers"]
    ]


def main(argv: list[str]) -> int:
    command, env = [*argv, "", ""][:2]
    overlay = OVERLAYS / env
    if command not in ("set", "digest", "verify") or not (overlay / "kustomization.yaml").is_file():
        print("usage: python -m tools.promote set|digest|verify dev|staging|prod", file=sys.stderr)
        return 2
    try:
        if command == "set":
            text = set_digests(overlay, dict(os.environ))
            (overlay / "kustomization.yaml").write_text(text)
            print(f"{overlay.relative_to(REPO)}: digests set")
            return 0
        if command == "digest":
            print(serving_digest(overlay))
            return 0
        want = recorded(overlay)[IMAGES["SERVING_DIGEST"]]
        images = served_images()
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
