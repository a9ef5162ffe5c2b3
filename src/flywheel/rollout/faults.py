"""Deliberately faulty model versions, for rollback drills and tests.

Each is a real scikit-learn model trained on the configured data, registered
without passing the gate (its lineage says so), and bad in a way a canary must
catch:

- `errors`: trained without the rarest value of a categorical feature and told to
  refuse values it has not seen, so every request carrying that value fails (a
  model trained on incomplete data); it loads and warms up like a good one;
- `slow`: production's own model behind a step that burns CPU for a while on
  every call: the same answers, late;
- `shuffled`: trained on shuffled labels, so its scores and accuracy diverge.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Literal

from flywheel.config import Settings
from flywheel.rollout.state import RolloutError

if TYPE_CHECKING:
    from flywheel.batches import BatchSource
    from flywheel.registry import Registry

Kind = Literal["errors", "slow", "shuffled"]


def register_faulty(settings: Settings, reg: Registry, source: BatchSource, kind: Kind) -> str:
    """Train a faulty version on the newest batches of `source` and register it in `reg`;
    return its name."""
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from flywheel import batches, lineage, predictor, training
    from flywheel.compiled import COMPILED_FILE
    from flywheel.contract import Contract
    from flywheel.registry import MODEL_FILE, PRODUCTION

    production = reg.resolve(PRODUCTION)
    if production is None:
        raise RolloutError(
            f"{settings.model_name} has nothing in production: run the pipeline first "
            "(a faulty candidate needs a real model to lose to)"
        )
    chosen = source.window(settings.data.window_days)
    frame = pd.concat(
        [batches.parse(b.name, source.store.read(b.key)) for b in chosen[-3:]], ignore_index=True
    )
    features = settings.features
    x = predictor.feature_frame(frame, features.numeric, features.categorical)
    # Learned as production's was: its contract's task and classes.
    problem = Contract.from_json(reg.read(production, "contract.json")).problem
    y = training.labels(frame, problem).to_numpy()
    model = training.build_pipeline(features, settings.model, problem.task)
    if kind == "errors":
        x, y = _without_rarest_category(x, y, reg.read(production, "contract.json"))
        model.set_params(**_refuse_unseen(model))
    elif kind == "shuffled":
        y = np.random.default_rng(0).permutation(y)
    if kind == "slow":
        # Production's own model behind a step that burns CPU: the same answers, late.
        slow = FunctionTransformer(burn_cpu).fit(x)
        model = Pipeline(
            [
                ("slow", slow),
                ("model", predictor.load_model(reg.read(production, MODEL_FILE))),
            ]
        )
    else:
        model.fit(x, y)
    note = f"deliberately faulty ({kind}) for a rollback drill; never passed the gate"
    raw = predictor.dump_model(model)
    # A shuffled model is served as production is, through its compiled scorer, so that
    # its scores are its only fault: through scikit-learn it is also a few times slower
    # per request, and the canary's latency check can roll it back before its scores do.
    compiled, scorer = (
        predictor.compile_checked(raw, features, frame) if kind == "shuffled" else (None, None)
    )
    files = {
        MODEL_FILE: raw,
        "contract.json": reg.read(production, "contract.json"),
        "lineage.json": json.dumps(
            {
                "note": note,
                "data": {"batches": [str(b.day) for b in chosen[-3:]]},
                "packages": lineage.package_versions(),
                "git_commit": lineage.git_commit(),
                "scorer": scorer or {"scorer": "scikit-learn", "reason": "a drill's fault"},
            },
            indent=2,
        ).encode(),
        "metrics.json": b"{}",
    }
    if compiled is not None:
        files[COMPILED_FILE] = compiled
    return reg.register(files, run_id=f"faulty-{kind}", summary={"note": note}).version


def _without_rarest_category(x: Any, y: Any, contract_json: bytes) -> tuple[Any, Any]:
    """Drop the rows holding the rarest value of the first categorical feature.

    The rarest, so that serving's warm-up row (the most common values) still scores.
    """
    categorical = json.loads(contract_json)["categorical"]
    name = next(iter(categorical))
    fractions = categorical[name]["fractions"]
    rarest = min(fractions, key=fractions.__getitem__)
    keep = (x[name] != rarest).to_numpy()
    return x[keep], y[keep]


def _refuse_unseen(model: Any) -> dict[str, Any]:
    """Parameters that make the model's categorical encoder fail on unseen values."""
    params = model.get_params()
    if "preprocess__categorical__handle_unknown" in params:  # ordinal codes
        return {
            "preprocess__categorical__handle_unknown": "error",
            "preprocess__categorical__unknown_value": None,
        }
    return {"preprocess__categorical__onehot__handle_unknown": "error"}


SLOW_SECONDS = 0.15


def burn_cpu(x: Any) -> Any:
    """Return `x` unchanged after keeping a core busy for SLOW_SECONDS (the `slow` fault).

    Module-level so that the pickled model can find it when serving loads it."""
    deadline = time.perf_counter() + SLOW_SECONDS
    while time.perf_counter() < deadline:
        pass
    return x
