"""The container images CI builds and signs: one for the pipeline steps, one for serving.

Components name the components image at import time; `flywheel submit --image`
swaps in a digest, and `serving.image`/`serving.image_digest` choose the serving one.
"""

from __future__ import annotations

REPOSITORY = "ghcr.io/flywheel-mlops"
COMPONENT_IMAGE = f"{REPOSITORY}/flywheel-components:latest"
SERVING_IMAGE = f"{REPOSITORY}/flywheel-serving:latest"
