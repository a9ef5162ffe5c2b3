"""The training pipeline's steps as plain functions over files.

Each pipeline component is a thin wrapper around one function here. The same
functions run in one process for tests and benchmarks, with identical results.
Every function takes the configuration as the JSON string the pipeline passes, and
the stores it reaches as `stores`: a run in one process opens them once for all its
steps; a component's step, left without, opens them once from the configuration.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel import lineage

# The steps in the order they run, named in config for the configuration's sake;
# pipelines/training.py wires them so.
from flywheel.config import STEPS as STEPS
from flywheel.config import Settings
from flywheel.registry import CANDIDATE, MODEL_FILE, PRODUCTION, AliasConflict
from flywheel.stores import Stores

if TYPE_CHECKING:
    from flywheel import batches, evaluation, findings, gate, problem

# Each step runs in its own process on a cluster, so heavy libraries are imported
# inside the steps that need them: resolving the baseline or registering a model
# should not pay for scikit-learn, pandera or matplotlib.

log = logging.getLogger(__name__)


# How `train` names each baseline model in its baselines folder: <name>.joblib.
BASELINE_SUFFIX = ".joblib"


def run_record_key(run_id: str) -> str:
    """Where a run's registration record lives in the store."""
    return f"runs/{run_id}/registration.json"


def _opened(settings: Settings, stores: Stores | None) -> Stores:
    """The caller's stores, else the configuration's, opened once for this step."""
    return stores if stores is not None else Stores(settings)


def resolve(config: str, as_of: str, *, stores: Stores | None = None) -> dict[str, str]:
    """Pin down what a run reads: the production version, the window's end and its files.

    These change between runs without any parameter changing, so this step is
    never cached; the steps after it are cached on what it returns.
    """

    settings = Settings.from_json(config)
    stores = _opened(settings, stores)
    production = stores.registry.resolve(PRODUCTION) or ""
    source = stores.source
    window = source.window(settings.data.window_days, date.fromisoformat(as_of) if as_of else None)
    end = window[-1].day.isoformat()
    log.info(
        "production model: %s; window %s..%s (%d batches)",
        production or "none yet",
        window[0].day,
        end,
        len(window),
    )
    return {"production": production, "as_of": end, "fingerprint": source.fingerprint(window)}


def ingest(
    config: str, as_of: str, out: Path, fingerprint: str = "", *, stores: Stores | None = None
) -> dict[str, Any]:
    """Copy the window's batches into `out` and return its manifest.

    With a `fingerprint` from `resolve`, refuse files that changed since then.
    """
    from flywheel import batches

    settings = Settings.from_json(config)
    source = _opened(settings, stores).source
    day = date.fromisoformat(as_of) if as_of else None
    if fingerprint:
        now = source.fingerprint(source.window(settings.data.window_days, day))
        if now != fingerprint:
            raise batches.BatchError(
                f"the batches in {source.store.uri} changed while the run was starting; run it again"
            )
    manifest = batches.collect(source, settings.data.window_days, day, out, _scrub(settings))
    days = [b["day"] for b in manifest["batches"]]
    scrubbed = sorted({c for b in manifest["batches"] for c in b.get("pii", {}).get("columns", [])})
    if scrubbed:
        done = "dropped" if settings.contract.pii == "drop" else "hashed"
        log.info("pii column(s) %s %s before the window was written", ", ".join(scrubbed), done)
    log.info(
        "ingested %d batches %s..%s from %s, content hash %s",
        len(days),
        days[0],
        days[-1],
        manifest["source"],
        manifest["content_hash"][:12],
    )
    return manifest


def _scrub(settings: Settings) -> batches.Scrub | None:
    """How ingest removes the pii columns' raw values, from the contract's policy."""
    import os

    from flywheel import batches

    policy = settings.contract
    if not policy.pii_columns:
        return None
    if policy.pii == "drop":
        return batches.Scrub(policy.pii_columns)
    salt = os.environ.get(policy.pii_salt_env, "")
    if not salt:
        raise batches.PrivacyError(
            f"contract.pii is hash, but {policy.pii_salt_env} (contract.pii_salt_env), "
            "the salt's variable, is not set or empty; on a cluster it comes from the Secret "
            "named by the chart's privacy.existingSecret"
        )
    return batches.Scrub(policy.pii_columns, "hash", salt.encode())


def validate(
    config: str,
    window_dir: Path,
    baseline: str,
    contract_out: Path,
    report_out: Path,
    *,
    stores: Stores | None = None,
) -> findings.ValidationResult:
    """Check every batch against the production contract (or, on the first run, the window's).

    Writes the new contract (profiled from the training batches) and a Markdown
    report, then raises ContractViolation if any check failed.
    """
    import pandas as pd

    from flywheel import batches, contract, findings, problem, training, validation

    settings = Settings.from_json(config)
    window = batches.load(window_dir)
    manifest = json.loads((window_dir / batches.MANIFEST).read_text())
    # Each batch's columns as delivered, the pii ones ingest dropped included.
    delivered = {e["day"]: e["columns"] for e in manifest["batches"] if "columns" in e}
    passthrough = validation.passthrough(settings.contract, settings.features)
    usable = validation.clean_history(window.history, settings.features, passthrough)
    if not usable:
        checks = tuple(
            findings.BatchCheck(
                batch=name,
                rows=len(frame),
                findings=(
                    *validation.structure_findings(frame, settings.features, name, passthrough),
                    *validation.source_findings(
                        delivered.get(name, list(frame.columns)), settings.contract, name
                    ),
                ),
                psi={},
            )
            for name, frame in window.batches
        )
        result = findings.ValidationResult(
            reference="the columns in the configuration", batches=checks
        )
        report_out.write_text(result.markdown())
        raise findings.ContractViolation(result)
    label = settings.features.label
    labels = pd.concat([frame[label] for _, frame in usable], ignore_index=True)
    learned = problem.resolve(settings.model.task, labels, label)
    check_problem(settings, learned)
    training.estimator_class(settings.model.estimator_for(learned.task), learned.task)
    inferred = contract.infer_contract(
        usable, settings.features, settings.contract.drift.bins, settings.contract, learned
    )
    changes = None
    if baseline:
        production = contract.Contract.from_json(
            _opened(settings, stores).registry.read(baseline, "contract.json")
        )
        # A regression's label bins stay production's: a canary compares predictions in them.
        inferred = contract.keep_label_bins(production, inferred, labels)
        # Features added to or removed from `features:` are announced changes, not violations.
        reference = contract.announce(production, inferred)
        changes = contract.diff(production, inferred)
        described = (
            f"the contract of {settings.model_name} {baseline} in production "
            f"({production.rows} rows, batches {production.batches[0]}..{production.batches[-1]})"
        )
    else:
        reference = inferred
        described = (
            f"profiled from this window's {len(usable)} training batches "
            "(no model is in production yet)"
        )
    train = pd.concat([frame for _, frame in usable], ignore_index=True)
    result = validation.validate_window(
        window.batches,
        reference,
        settings.contract,
        described,
        train=train,
        columns=delivered,
        changes=changes,
    )
    contract_out.write_text(inferred.to_json())
    report_out.write_text(result.markdown())
    for finding in result.warnings:
        log.warning(
            "batch %s: %s: %s: found %s",
            finding.batch,
            finding.column,
            finding.check,
            finding.found,
        )
    if not result.passed:
        raise findings.ContractViolation(result)
    log.info("all %d batches meet the contract", len(window.batches))
    return result


def check_problem(settings: Settings, learned: problem.Problem) -> None:
    """A ProblemError naming the setting that does not fit the label's task: the promotion
    metric and its bound, the performance triggers' metric and bounds, monotonic features,
    the baseline's estimator."""
    from flywheel import problem, training

    if learned.task == "multiclass" and settings.features.monotonic:
        raise problem.ProblemError(
            f"features.monotonic: a multiclass model cannot be held monotonic in "
            f"{', '.join(settings.features.monotonic)} (the label is {learned.describe()}); "
            "scikit-learn keeps binary and regression models monotonic only"
        )
    try:
        settings.promotion.threshold(learned.task)
        settings.triggers.check_task(learned.task)
    except ValueError as error:
        raise problem.ProblemError(f"{error} (the label is {learned.describe()})") from None
    baseline = settings.promotion.baseline
    if baseline is not None:
        training.estimator_class(
            baseline.estimator_for(learned.task), learned.task, training.BASELINE_KEY
        )


def train(
    config: str,
    window_dir: Path,
    model_out: Path,
    holdout_out: Path,
    baselines_out: Path | None = None,
) -> dict[str, Any]:
    """Fit the configured Pipeline on the training batches; keep a holdout split.

    With `baselines_out`, also fit promotion.baseline's models on the same rows and
    write them there, one `<name>.joblib` each, for `evaluate` to score beside it.
    """
    import pandas as pd

    from flywheel import batches, predictor, problem, training

    settings = Settings.from_json(config)
    window = batches.load(window_dir)
    frame = pd.concat([frame for _, frame in window.history], ignore_index=True)
    learned = problem.resolve(
        settings.model.task, frame[settings.features.label], settings.features.label
    )
    result = training.train(
        frame,
        settings.features,
        settings.model,
        settings.promotion.metric_for(learned.task),
        settings.promotion.baseline if baselines_out is not None else None,
        learned,
    )
    model_out.write_bytes(predictor.dump_model(result.model))
    result.holdout.to_parquet(holdout_out, index=False)
    if baselines_out is not None:
        baselines_out.mkdir(parents=True, exist_ok=True)
        for name, model in result.baselines.items():
            (baselines_out / f"{name}{BASELINE_SUFFIX}").write_bytes(predictor.dump_model(model))
        # Never an empty folder: an artifact without files may not reach the next step.
        (baselines_out / "baselines.json").write_text(json.dumps(sorted(result.baselines)))
    return {
        "rows": len(frame) - len(result.holdout),
        "holdout_rows": len(result.holdout),
        "estimator": settings.model.estimator_for(learned.task),
        "task": learned.task,
        "best_params": result.best_params,
        "search": result.search_scores,
        "baselines": sorted(result.baselines),
    }


def evaluate(
    config: str,
    model_path: Path,
    holdout_path: Path,
    window_dir: Path,
    baseline: str,
    evaluation_out: Path,
    report_out: Path,
    baselines_dir: Path | None = None,
    *,
    stores: Stores | None = None,
) -> evaluation.Evaluation:
    """Score the candidate and the production model; write JSON and an HTML report.

    `baseline` is the production version ('' for none); `baselines_dir` holds the simpler
    models `train` fitted (promotion.baseline), scored on the same rows as the candidate.

    The candidate's features get their permutation importance and cost on its holdout.
    """
    import pandas as pd

    from flywheel import batches, evaluation, importance, predictor, report

    settings = Settings.from_json(config)
    window = batches.load(window_dir)
    newest_name, newest = window.newest
    holdout = pd.read_parquet(holdout_path)
    served = predictor.Predictor.from_bytes(model_path.read_bytes(), settings.features)
    learned = served.problem
    metric = settings.promotion.metric_for(learned.task)
    candidate = evaluation.evaluate_model(
        served,
        "candidate",
        None,
        newest,
        holdout,
        settings.features,
        metric,
        fairness=settings.promotion.fairness,
    )
    measured, method = importance.measure(
        served.model,
        holdout,
        settings.features,
        metric,
        settings.promotion.importance,
        settings.model.seed,
    )
    candidate = candidate.model_copy(update={"importance": measured, "importance_method": method})
    production = None
    if baseline:
        raw = _opened(settings, stores).registry.read(baseline, MODEL_FILE)
        production = evaluation.evaluate_model(
            predictor.Predictor.from_bytes(raw, settings.features),
            "production",
            baseline,
            newest,
            None,
            settings.features,
            metric,
            fairness=settings.promotion.fairness,
        )
    baselines = {}
    for path in sorted(baselines_dir.glob(f"*{BASELINE_SUFFIX}")) if baselines_dir else ():
        model = predictor.load_model(path.read_bytes())
        baselines[path.name.removesuffix(BASELINE_SUFFIX)] = evaluation.evaluate_baseline(
            predictor.Predictor(model, settings.features.numeric, settings.features.categorical),
            newest,
            holdout,
            settings.features,
        )
    result = evaluation.Evaluation(
        metric=metric,
        task=learned.task,
        classes=tuple(learned.output_names) if learned.is_classifier else (),
        newest_batch=newest_name,
        candidate=candidate,
        production=production,
        baselines=baselines,
    )
    evaluation_out.write_text(result.model_dump_json(indent=2))
    report_out.write_text(
        report.evaluation_page(result, f"{settings.model_name}: candidate against production")
    )
    against = f", production {baseline}: {production.newest.get(metric):.4f}" if production else ""
    log.info(
        "candidate %s on %s: %.4f%s", metric, newest_name, candidate.newest.get(metric), against
    )
    return result


def decide(config: str, evaluation_path: Path, decision_out: Path) -> gate.Decision:
    """Apply the promotion policy and write the decision."""
    from flywheel import evaluation, gate

    settings = Settings.from_json(config)
    result = evaluation.Evaluation.model_validate_json(evaluation_path.read_text())
    decision = gate.decide(result, settings.promotion)
    decision_out.write_text(decision.model_dump_json(indent=2))
    if decision.blessed:
        log.info("candidate blessed")
    else:
        log.info("candidate not blessed: %s", "; ".join(decision.reasons))
    return decision


def infra_validate(
    config: str, model_path: Path, window_dir: Path, rows: int = 32
) -> dict[str, Any]:
    """Load the model through the serving code path and score rows shaped like requests.

    Also compiles it for serving and checks the compiled scores against scikit-learn's
    on the whole newest batch; a disagreement does not fail the step (serving keeps
    scikit-learn), it is reported here and recorded by `register`.
    """
    from flywheel import batches, predictor

    settings = Settings.from_json(config)
    _, newest = batches.load(window_dir).newest
    raw = model_path.read_bytes()
    result = predictor.check_serving(
        raw, settings.features, newest.head(rows), lineage.package_versions()
    )
    log.info(
        "model loads and scores %d request-shaped rows through the serving code path",
        result["rows_scored"],
    )
    _, result["scorer"] = predictor.compile_checked(raw, settings.features, newest)
    log.info("serving scorer: %s", _scorer_line(result["scorer"]))
    return result


def _scorer_line(record: dict[str, Any]) -> str:
    if "reason" in record:
        return f"{record['scorer']}: {record['reason']}"
    return f"{record['scorer']} (max difference {record['max_abs_difference']:.3g} on {record['rows']} rows)"


def register(
    config: str,
    *,
    model_path: Path,
    contract_path: Path,
    evaluation_path: Path,
    report_path: Path,
    decision_path: Path,
    validation_path: Path,
    window_dir: Path,
    run_id: str,
    git_commit: str,
    image: str,
    image_digest: str,
    trigger_reason: str = "",
    trigger_decision: str = "",
    stores: Stores | None = None,
) -> str:
    """Write the blessed candidate as a new version and move the aliases.

    `trigger_reason` (why the run started) and `trigger_decision` (the trigger
    engine's decision record) go into the version's lineage.
    """
    from flywheel import batches, evaluation, predictor
    from flywheel.compiled import COMPILED_FILE

    settings = Settings.from_json(config)
    reg = _opened(settings, stores).registry
    manifest = json.loads((window_dir / "manifest.json").read_text())
    # Checked again here, on the same newest batch, so what is stored is what was checked.
    _, newest = batches.load(window_dir).newest
    compiled, scorer = predictor.compile_checked(model_path.read_bytes(), settings.features, newest)
    log.info("serving scorer: %s", _scorer_line(scorer))
    result = json.loads(evaluation_path.read_text())
    metric = result["metric"]
    candidate = result["candidate"]
    record = lineage.record(
        model_name=settings.model_name,
        data=manifest,
        config=json.loads(config),
        run_id=run_id,
        git=git_commit or None,
        image=image or None,
        image_digest=image_digest or None,
        trained_with=lineage.package_versions(),
        reason=trigger_reason,
        decision=trigger_decision,
    )
    record["scorer"] = scorer
    files = {
        MODEL_FILE: model_path.read_bytes(),
        "contract.json": contract_path.read_bytes(),
        "evaluation.json": evaluation_path.read_bytes(),
        "metrics.json": json.dumps(evaluation.flat_metrics(result), indent=2).encode(),
        "evaluation.html": report_path.read_bytes(),
        "decision.json": decision_path.read_bytes(),
        "validation.md": validation_path.read_bytes(),
        "lineage.json": json.dumps(record, indent=2, default=str).encode(),
    }
    if compiled is not None:
        files[COMPILED_FILE] = compiled
    summary = {
        "metric": metric,
        "newest": candidate["newest"][metric],
        "holdout": candidate["holdout"][metric] if candidate["holdout"] else None,
        "data_hash": manifest["content_hash"],
        "git_commit": git_commit or None,
    }
    version = reg.register(files, run_id=run_id, summary=summary).version
    actor = f"run {run_id}"
    moved = (
        [CANDIDATE]
        if reg.set_alias(CANDIDATE, version, reason="blessed by the gate", actor=actor)
        else []
    )
    if reg.resolve(PRODUCTION) is None:
        try:
            reg.move_alias(
                PRODUCTION,
                version,
                expected=None,
                reason="first model: nothing was in production",
                actor=actor,
            )
            moved.append(PRODUCTION)
        except AliasConflict as error:
            log.info("not bootstrapping production: %s", error)
    record = {
        "version": version,
        "location": reg.location(version),
        "aliases": moved,
    }
    reg.store.write(run_record_key(run_id), json.dumps(record, indent=2).encode())
    return version


def deploy(
    config: str, version: str, api_client: Any = None, *, stores: Stores | None = None
) -> dict[str, Any]:
    """Start rolling a registered version out on the cluster (the pipeline's last step).

    The first model is served straight away; later ones start a canary, which the
    rollout controller (`flywheel rollout watch`) analyses, then promotes or rolls
    back. With `rollout.driver: local` there is nothing to do in the step: the local
    driver's servers must outlive a pipeline step, so `flywheel run --deploy` runs
    the canary after the pipeline instead.
    """
    from flywheel.rollout.kubernetes import start_on_cluster
    from flywheel.rollout.lease import KubernetesLease

    settings = Settings.from_json(config)
    if settings.rollout.driver != "kubernetes":
        return {
            "version": version,
            "action": "none",
            "reason": "rollout.driver is local: `flywheel run --deploy` rolls it out",
        }
    lease = KubernetesLease.for_settings(settings, api_client=api_client)
    registry = _opened(settings, stores).registry
    return start_on_cluster(settings, registry, version, api_client=api_client, lock=lease)
