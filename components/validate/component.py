from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from flywheel.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def validate(
    config: str,
    window: Input[Dataset],
    baseline: str,
    contract: Output[Artifact],
    report: Output[Markdown],
    drift: Output[Metrics],
    usage: Output[Metrics],
) -> None:
    """Check every batch against the data contract; fail the run with a report on a violation."""
    import json
    from pathlib import Path

    from flywheel import tasks
    from flywheel.usage import measure

    with measure(usage):
        result = tasks.validate(
            config, Path(window.path), baseline, Path(contract.path), Path(report.path)
        )
    contract.metadata["reference"] = result.reference
    for name, value in result.batches[-1].psi.items():
        drift.log_metric(f"psi_{name}", round(value, 4))
    drift.log_metric("warnings", len(result.warnings))
    # A file at the URI too: kfp.local treats a Metrics artifact without one as missing
    # and would never serve this step from its cache.
    Path(drift.path).write_text(json.dumps(drift.metadata))
