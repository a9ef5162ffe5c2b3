from kfp import dsl
from kfp.dsl import Metrics, Output

from flywheel.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def deploy(config: str, version: str, usage: Output[Metrics]) -> str:
    """Start rolling the registered version out: a canary on the model's SeldonDeployment."""
    import json

    from flywheel import tasks
    from flywheel.usage import measure

    with measure(usage):
        result = tasks.deploy(config, version)
    return json.dumps(result)
