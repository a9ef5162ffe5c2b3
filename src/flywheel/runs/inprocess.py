"""The pipeline's steps as plain calls in this process: for tests and for measuring what the
pipeline machinery costs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.config import Settings
from flywheel.stores import Stores


@dataclass
class InProcessRun:
    """What `run_in_process` did: the version it registered ('' if none) and each step's time."""

    version: str
    seconds: dict[str, float]
    blessed: bool | None = None


def run_in_process(
    settings: Settings,
    work: Path,
    *,
    stores: Stores | None = None,
    run_id: str = "in-process",
    git_commit: str = "",
    last_step: str = "register",
    reason: str = "",
    decision: str = "",
) -> InProcessRun:
    """Every pipeline step up to `last_step`, in STEPS order, as plain calls in this process.

    The same functions the components call, on files under `work`: for tests and
    for measuring what the pipeline machinery costs (`make bench-pipeline`). The steps
    share `stores` (default: the configuration's, opened once here).
    """
    from flywheel import tasks

    config = settings.to_json()
    stores = stores if stores is not None else Stores(settings)
    seconds: dict[str, float] = {}
    if last_step not in tasks.STEPS:
        raise ValueError(f"last_step must be one of {', '.join(tasks.STEPS)}, not {last_step!r}")
    last = tasks.STEPS.index(last_step)

    def step(name: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        result = function(*args, **kwargs)
        seconds[name] = time.monotonic() - started
        return result

    def done(name: str) -> bool:
        return tasks.STEPS.index(name) >= last

    resolved = step("resolve", tasks.resolve, config, "", stores=stores)
    production, window = resolved["production"], work / "window"
    run = InProcessRun(version="", seconds=seconds)
    step(
        "ingest",
        tasks.ingest,
        config,
        resolved["as_of"],
        window,
        resolved["fingerprint"],
        stores=stores,
    )
    if done("ingest"):
        return run
    step(
        "validate",
        tasks.validate,
        config,
        window,
        production,
        work / "contract.json",
        work / "validation.md",
        stores=stores,
    )
    if done("validate"):
        return run
    step(
        "train",
        tasks.train,
        config,
        window,
        work / "model.joblib",
        work / "holdout.parquet",
        work / "baselines",
    )
    if done("train"):
        return run
    step(
        "evaluate",
        tasks.evaluate,
        config,
        work / "model.joblib",
        work / "holdout.parquet",
        window,
        production,
        work / "evaluation.json",
        work / "evaluation.html",
        work / "baselines",
        stores=stores,
    )
    run.blessed = step(
        "gate", tasks.decide, config, work / "evaluation.json", work / "decision.json"
    ).blessed
    if done("gate") or not run.blessed:
        return run
    step("infra-validate", tasks.infra_validate, config, work / "model.joblib", window)
    if done("infra-validate"):
        return run
    run.version = step(
        "register",
        tasks.register,
        config,
        model_path=work / "model.joblib",
        contract_path=work / "contract.json",
        evaluation_path=work / "evaluation.json",
        report_path=work / "evaluation.html",
        decision_path=work / "decision.json",
        validation_path=work / "validation.md",
        window_dir=window,
        run_id=run_id,
        git_commit=git_commit,
        image="",
        image_digest="",
        trigger_reason=reason,
        trigger_decision=decision,
        stores=stores,
    )
    if not done("register"):
        step("deploy", tasks.deploy, config, run.version, stores=stores)
    return run
