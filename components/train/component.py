from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from flywheel.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train(
    config: str,
    window: Input[Dataset],
    model: Output[Model],
    holdout: Output[Dataset],
    baselines: Output[Model],
    usage: Output[Metrics],
) -> None:
    """Fit the configured scikit-learn Pipeline on the window's older batches, and the
    simpler models it must beat (promotion.baseline) on the same rows."""
    from pathlib import Path

    from flywheel import tasks
    from flywheel.usage import measure

    with measure(usage):
        info = tasks.train(
            config,
            Path(window.path),
            Path(model.path),
            Path(holdout.path),
            Path(baselines.path),
        )
    model.metadata.update(
        {
            "framework": "scikit-learn",
            "estimator": info["estimator"],
            "rows": info["rows"],
            "best_params": info["best_params"],
        }
    )
    holdout.metadata["rows"] = info["holdout_rows"]
    baselines.metadata["models"] = info["baselines"]
