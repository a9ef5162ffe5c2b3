from kfp import dsl

from flywheel.cluster import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def baseline(config: str) -> str:
    """Resolve the production model version to compare against ('' when none)."""
    from flywheel import tasks

    return tasks.resolve_baseline(config)
