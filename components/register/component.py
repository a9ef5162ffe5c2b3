from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from flywheel.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register(
    config: str,
    model: Input[Model],
    contract: Input[Artifact],
    evaluation: Input[Artifact],
    evaluation_report: Input[HTML],
    decision: Input[Artifact],
    validation_report: Input[Markdown],
    window: Input[Dataset],
    run_id: str,
    git_commit: str,
    image: str,
    image_digest: str,
    usage: Output[Metrics],
    trigger_reason: str = "",
    trigger_decision: str = "",
) -> str:
    """Write the blessed model as a new immutable version and move its aliases."""
    from pathlib import Path

    from flywheel import tasks
    from flywheel.usage import measure

    with measure(usage):
        version = tasks.register(
            config,
            model_path=Path(model.path),
            contract_path=Path(contract.path),
            evaluation_path=Path(evaluation.path),
            report_path=Path(evaluation_report.path),
            decision_path=Path(decision.path),
            validation_path=Path(validation_report.path),
            window_dir=Path(window.path),
            run_id=run_id,
            git_commit=git_commit,
            image=image,
            image_digest=image_digest,
            trigger_reason=trigger_reason,
            trigger_decision=trigger_decision,
        )
    return version
