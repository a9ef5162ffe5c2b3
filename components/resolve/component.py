from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Metrics, Output

from flywheel.images import COMPONENT_IMAGE


# The return annotation is KFP's form for several outputs, which the component's own source
# must hold; mypy takes no call in an annotation.
@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def resolve(config: str, as_of: str, usage: Output[Metrics]) -> NamedTuple(  # type: ignore[valid-type]
    "Resolved", [("production", str), ("as_of", str), ("fingerprint", str)]
):
    """Pin down what the run reads: the production version, the window's last day, its files."""
    from collections import namedtuple

    from flywheel import tasks
    from flywheel.usage import measure

    with measure(usage):
        resolved = tasks.resolve(config, as_of)
    Resolved = namedtuple("Resolved", ["production", "as_of", "fingerprint"])
    return Resolved(resolved["production"], resolved["as_of"], resolved["fingerprint"])
