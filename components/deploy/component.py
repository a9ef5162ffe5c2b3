from kfp import dsl

from flywheel.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def deploy(config: str, version: str) -> str:
    """Start rolling the registered version out: a canary on the model's SeldonDeployment."""
    import json

    from flywheel import tasks

    return json.dumps(tasks.deploy(config, version))
