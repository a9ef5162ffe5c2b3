from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from flywheel.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    config: str,
    model: Input[Model],
    holdout: Input[Dataset],
    window: Input[Dataset],
    baseline: str,
    baselines: Input[Model],
    evaluation: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    usage: Output[Metrics],
) -> None:
    """Score the candidate and the production model (`baseline`) on the same rows, with plots,
    and the simpler models `train` fitted (`baselines`)."""
    import json
    from pathlib import Path

    from flywheel import tasks
    from flywheel.evaluation import flat_metrics
    from flywheel.usage import measure

    with measure(usage):
        result = tasks.evaluate(
            config,
            Path(model.path),
            Path(holdout.path),
            Path(window.path),
            baseline,
            Path(evaluation.path),
            Path(report.path),
            Path(baselines.path),
        )
    for name, value in flat_metrics(result.model_dump(mode="json")).items():
        metrics.log_metric(name, value)
    # The Kubeflow UI's ROC curve is a binary classifier's; its confusion matrix any
    # classifier's, in the contract's class order. A regression has neither.
    roc = result.candidate.roc
    if roc is not None:
        classification.log_roc_curve(list(roc.fpr), list(roc.tpr), list(roc.thresholds))
    if result.candidate.newest.confusion:
        classification.log_confusion_matrix(
            list(result.classes), [list(row) for row in result.candidate.newest.confusion]
        )
    # Files at the URIs too: kfp.local treats metrics artifacts without one as missing
    # and would never serve this step from its cache.
    for artifact in (metrics, classification):
        Path(artifact.path).write_text(json.dumps(artifact.metadata))
