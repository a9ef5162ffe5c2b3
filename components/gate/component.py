from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Output

from flywheel.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def gate(
    config: str,
    evaluation: Input[Artifact],
    decision: Output[Artifact],
    report: Output[Markdown],
    usage: Output[Metrics],
) -> bool:
    """Apply the promotion policy; return whether the candidate is blessed (reasons in `report`)."""
    from pathlib import Path

    from flywheel import tasks
    from flywheel.usage import measure

    with measure(usage):
        result = tasks.decide(config, Path(evaluation.path), Path(decision.path))
    Path(report.path).write_text(result.markdown())
    decision.metadata["blessed"] = result.blessed
    decision.metadata["reasons"] = result.reasons
    return result.blessed
