"""The images CI builds: both live in the project's registry, and serving uses its own."""

from __future__ import annotations

import tomllib
from pathlib import Path
from urllib.parse import urlparse

from flywheel import images
from flywheel.config import ServingSettings

REPO = Path(__file__).resolve().parents[2]


def test_both_images_are_in_the_projects_registry() -> None:
    # given the repository the project declares
    urls = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]
    owner = urlparse(urls["Repository"]).path.strip("/").split("/")[0]
    # then the images are pushed under that owner on GHCR, one per purpose
    assert f"ghcr.io/{owner}" == images.REPOSITORY
    assert f"{images.REPOSITORY}/flywheel-components:latest" == images.COMPONENT_IMAGE
    assert f"{images.REPOSITORY}/flywheel-serving:latest" == images.SERVING_IMAGE


def test_serving_defaults_to_the_serving_image() -> None:
    assert ServingSettings().image == images.SERVING_IMAGE
    assert ServingSettings().image != images.COMPONENT_IMAGE
