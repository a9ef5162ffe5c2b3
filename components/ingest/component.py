from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from flywheel.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(
    config: str, as_of: str, fingerprint: str, window: Output[Dataset], usage: Output[Metrics]
) -> str:
    """Collect the dated batches of the window into a Dataset; return their content hash.

    `fingerprint` comes from the resolve step: the step is cached on it, and it
    fails if the files changed in between.
    """
    from pathlib import Path

    from flywheel import tasks
    from flywheel.usage import measure

    with measure(usage):
        manifest = tasks.ingest(config, as_of, Path(window.path), fingerprint=fingerprint)
    window.metadata["content_hash"] = manifest["content_hash"]
    window.metadata["batches"] = [batch["day"] for batch in manifest["batches"]]
    window.metadata["source"] = manifest["source"]
    return str(manifest["content_hash"])
