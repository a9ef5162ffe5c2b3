"""The training pipeline: dated batches in, a validated and registered model out."""

from typing import Any, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import HTML, Artifact, Dataset

from flywheel.components.deploy.component import deploy
from flywheel.components.evaluate.component import evaluate
from flywheel.components.gate.component import gate
from flywheel.components.infra_validate.component import infra_validate
from flywheel.components.ingest.component import ingest
from flywheel.components.register.component import register
from flywheel.components.resolve.component import resolve
from flywheel.components.train.component import train
from flywheel.components.validate.component import validate
from flywheel.config import PipelineResources
from flywheel.storage import S3_SECRET_KEYS

PIPELINE_NAME = "flywheel-training"


def use_store_credentials(task: dsl.PipelineTask, secret_name: str) -> dsl.PipelineTask:
    """Give a step the object store's keys from a Kubernetes Secret, never from parameters."""
    return kubernetes.use_secret_as_env(
        task, secret_name=secret_name, secret_key_to_env=S3_SECRET_KEYS
    )


def use_pii_salt(task: dsl.PipelineTask, secret_name: Any, variable: str) -> dsl.PipelineTask:
    """Give ingest the salt of hashed pii columns from a Kubernetes Secret, if it exists: a
    run that hashes without it fails at ingest naming the variable."""
    return kubernetes.use_secret_as_env(
        task, secret_name=secret_name, secret_key_to_env={variable: variable}, optional=True
    )


def request_resources(task: dsl.PipelineTask, resources: PipelineResources) -> dsl.PipelineTask:
    """Set a step's CPU and memory requests and limits from pipeline.resources."""
    own = resources.for_step(task.name)
    return (
        task.set_cpu_request(own.cpu_request)
        .set_cpu_limit(own.cpu_limit)
        .set_memory_request(own.memory_request)
        .set_memory_limit(own.memory_limit)
    )


class TrainingOutputs(NamedTuple):
    """What a run leaves for the caller: the data, the evaluation and the gate's decision."""

    window: Dataset
    evaluation: Artifact
    report: HTML
    decision: Artifact


def build_training_pipeline(
    resources: PipelineResources, pii_salt_env: str = "FLYWHEEL_PII_SALT"
) -> Any:
    """The training pipeline, its steps' requests and limits from `resources`.

    Resources are fixed when the pipeline is compiled (`flywheel compile` reads them
    from the configuration), as a cluster schedules a step's pod before it runs; so is
    `pii_salt_env`, the variable ingest reads the salt of hashed pii columns from.
    """

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "Ingest a window of dated batches, validate them against the data contract, train, "
            "evaluate against production, gate, infra-validate, register, and start a canary."
        ),
    )
    def training(
        config: str,
        run_id: str,
        as_of: str = "",
        git_commit: str = "",
        image: str = "",
        image_digest: str = "",
        s3_secret: str = "flywheel-s3",
        pii_secret: str = "flywheel-pii",
        trigger_reason: str = "",
        trigger_decision: str = "",
    ) -> TrainingOutputs:
        """`config` is the resolved flywheel.yaml as JSON; `as_of` defaults to the newest batch.

        `pii_secret` names the Secret holding the salt of hashed pii columns (optional).
        `trigger_reason` says why the run started ("manual run" when empty) and
        `trigger_decision` names the trigger engine's decision record; both go into
        the registered version's lineage.
        """
        # What the run reads changes between runs without any parameter changing (a new
        # production model, new or re-delivered batches), so it is resolved by a step that
        # is never cached; the steps below are cached on the plain strings it returns.
        resolved = resolve(config=config, as_of=as_of).set_caching_options(False)
        production = resolved.outputs["production"]
        data = ingest(
            config=config,
            as_of=resolved.outputs["as_of"],
            fingerprint=resolved.outputs["fingerprint"],
        )
        checked = validate(config=config, window=data.outputs["window"], baseline=production)
        trained = train(config=config, window=data.outputs["window"]).after(checked)
        evaluated = evaluate(
            config=config,
            model=trained.outputs["model"],
            holdout=trained.outputs["holdout"],
            window=data.outputs["window"],
            baseline=production,
            baselines=trained.outputs["baselines"],
        )
        decided = gate(config=config, evaluation=evaluated.outputs["evaluation"])
        store_tasks = [resolved, data, checked, evaluated]
        with dsl.If(decided.outputs["Output"] == True, name="blessed"):  # noqa: E712
            loadable = infra_validate(
                config=config, model=trained.outputs["model"], window=data.outputs["window"]
            )
            registered = register(
                config=config,
                model=trained.outputs["model"],
                contract=checked.outputs["contract"],
                evaluation=evaluated.outputs["evaluation"],
                evaluation_report=evaluated.outputs["report"],
                decision=decided.outputs["decision"],
                validation_report=checked.outputs["report"],
                window=data.outputs["window"],
                run_id=run_id,
                git_commit=git_commit,
                image=image,
                image_digest=image_digest,
                trigger_reason=trigger_reason,
                trigger_decision=trigger_decision,
            ).after(loadable)
            registered.set_caching_options(False)
            # Starts the canary on the cluster; the rollout controller finishes it.
            deployed = deploy(config=config, version=registered.outputs["Output"])
            deployed.set_caching_options(False)
            store_tasks += [registered, deployed]
        for task in store_tasks:
            use_store_credentials(task, s3_secret)
        # Only ingest sees the salt: the steps after it never see a raw pii value.
        use_pii_salt(data, pii_secret, pii_salt_env)
        steps = [resolved, data, checked, trained, evaluated, decided, loadable, registered]
        for task in [*steps, deployed]:
            request_resources(task, resources)
        return TrainingOutputs(
            window=data.outputs["window"],
            evaluation=evaluated.outputs["evaluation"],
            report=evaluated.outputs["report"],
            decision=decided.outputs["decision"],
        )

    return training
