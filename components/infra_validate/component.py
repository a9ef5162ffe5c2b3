from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from flywheel.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def infra_validate(
    config: str, model: Input[Model], window: Input[Dataset], usage: Output[Metrics]
) -> None:
    """Load the model through the serving code path and score request-shaped rows."""
    from pathlib import Path

    from flywheel import tasks
    from flywheel.usage import measure

    with measure(usage):
        tasks.infra_validate(config, Path(model.path), Path(window.path))
