"""The `flywheel` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flywheel.config import DEFAULT_CONFIG, ConfigError, Settings, json_schema, load_settings

app = typer.Typer(
    help=(
        "Flywheel: dated batches in, validated models out, on a laptop (kfp.local) "
        "or a Kubeflow Pipelines cluster."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Inspect and check the configuration.", no_args_is_help=True)
data_app = typer.Typer(
    help="Dated batches: generate synthetic ones, list what is there.", no_args_is_help=True
)
models_app = typer.Typer(
    help="The model registry: versions, aliases and lineage.", no_args_is_help=True
)
rollout_app = typer.Typer(
    help="Canary rollouts: status, the controller loop, waiting for a decision.",
    no_args_is_help=True,
)
demo_app = typer.Typer(
    help="Drills: faulty candidates that a canary must catch.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(rollout_app, name="rollout")
app.add_typer(demo_app, name="demo")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class Failure(Exception):
    """A user-facing error: printed without a traceback, exit code 1."""


def _settings(ctx: typer.Context, *extra: str) -> Settings:
    """The configuration: the file, then FLYWHEEL_* variables, then --set, then `extra`."""
    obj = ctx.find_root().obj
    return load_settings(obj["path"], overrides=[*obj["overrides"], *extra])


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="FLYWHEEL_CONFIG",
            help=f"Configuration file (default: ./{DEFAULT_CONFIG} if present).",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one key, e.g. --set model.params.max_iter=50 (repeatable). "
            "FLYWHEEL_<SECTION>__<KEY> variables override the file too.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Global options; the configuration is read lazily by the commands that need it."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    path = (
        config
        if config is not None
        else (Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).exists() else None)
    )
    ctx.obj = {"path": path, "overrides": list(overrides or [])}


# --- config -----------------------------------------------------------------------


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of flywheel.yaml."""
    out.print_json(json.dumps(json_schema()))


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the resolved configuration (file, then environment, then --set)."""
    out.print_json(_settings(ctx).to_json())


@config_app.command("validate")
def config_validate(ctx: typer.Context) -> None:
    """Check the configuration and say where it came from."""
    _settings(ctx)
    out.print(f"[green]valid[/green]: {ctx.find_root().obj['path'] or 'built-in defaults'}")


# --- data -------------------------------------------------------------------------


@data_app.command("generate")
def data_generate(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="How many daily batches to write.", min=1)] = 14,
    start: Annotated[
        str | None,
        typer.Option(help="First day (YYYY-MM-DD) (default: data.generator.start_date)."),
    ] = None,
    next_days: Annotated[
        int | None,
        typer.Option(
            "--next",
            min=1,
            help="Write this many days after the newest batch already there (or from the start "
            "date when there is none). Overrides --days and --start.",
        ),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="stable, covariate_drift, concept_drift, label_shift, new_category, broken_*."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    out_uri: Annotated[
        str | None, typer.Option("--out", help="Directory or s3:// prefix (default: data.source).")
    ] = None,
) -> None:
    """Write realistic synthetic daily batches for the loan-default use case."""
    from datetime import timedelta

    from rich.progress import Progress

    from flywheel import batches, synthetic
    from flywheel.storage import open_store

    settings = _settings(ctx, *([f"data.generator.scenario={scenario}"] if scenario else []))
    if fmt not in {"parquet", "csv"}:
        raise Failure(f"--format must be parquet or csv, not {fmt!r}")
    generator = settings.data.generator
    store = open_store(out_uri or settings.data.source, settings.storage)
    source = batches.BatchSource(store)
    existing = source.available() if _store_exists(store) else []
    if next_days is not None:
        first = existing[-1].day + timedelta(days=1) if existing else generator.start_date
        count = next_days
    else:
        first = date.fromisoformat(start) if start else generator.start_date
        count = days
    with Progress(console=err, transient=True) as progress:
        bar = progress.add_task(f"generating {generator.scenario} batches", total=count)
        for day in synthetic.days(first, count):
            source.write(day, synthetic.generate_day(day, generator), fmt)
            progress.advance(bar)
    last = first + timedelta(days=count - 1)
    out.print(
        f"wrote {count} {generator.scenario} batch(es) {first}..{last}, "
        f"{generator.rows_per_day} rows each, to {store.uri}"
    )


def _store_exists(store: Any) -> bool:
    from flywheel.storage import LocalStore

    return not isinstance(store, LocalStore) or store.root.exists()


@data_app.command("list")
def data_list(ctx: typer.Context) -> None:
    """List the batches in the configured source."""
    from flywheel import batches
    from flywheel.storage import open_store

    settings = _settings(ctx)
    store = open_store(settings.data.source, settings.storage)
    found = (
        batches.BatchSource(store, settings.data.format).available() if _store_exists(store) else []
    )
    for batch in found:
        out.print(f"{batch.day}  {store.location(batch.key)}")
    out.print(f"{len(found)} batch(es) in {store.uri}")


# --- pipeline ---------------------------------------------------------------------


@app.command("run")
def run(
    ctx: typer.Context,
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of", help="Last day of the window (YYYY-MM-DD) (default: newest batch)."
        ),
    ] = "",
    cache: Annotated[
        bool, typer.Option(help="Reuse the outputs of unchanged steps (pipeline.caching).")
    ] = True,
    run_id: Annotated[str | None, typer.Option(help="Run id (default: generated).")] = None,
    deploy: Annotated[
        bool,
        typer.Option(
            help="Then roll a newly registered candidate out as a local canary under synthetic "
            "traffic, and end with a one-screen summary."
        ),
    ] = False,
    rps: Annotated[
        float, typer.Option(help="Synthetic requests per second during the canary.")
    ] = 40.0,
) -> None:
    """Run the training pipeline locally under kfp.local and summarise what it did."""
    from flywheel import runs
    from flywheel.storage import open_store

    settings = _settings(ctx)
    if as_of:
        _parse_day(as_of, "--as-of")
    open_store(settings.storage.uri, settings.storage).check()
    open_store(settings.data.source, settings.storage).check()
    result = runs.run_local(
        settings, as_of=as_of, run_id=run_id, caching=settings.pipeline.caching and cache
    )
    _summarise(settings, result)
    if not result.succeeded:
        raise typer.Exit(1)
    if not deploy:
        return
    from flywheel.registry import PRODUCTION
    from flywheel.rollout.local import DeployRefused
    from flywheel.tasks import registry

    version = (result.registration or {}).get("version")
    before = registry(settings).resolve(PRODUCTION)
    if version is None:
        rollout = "nothing new was registered, so nothing to roll out"
    elif version == before:
        rollout = f"{version} went straight to production (nothing was serving before it)"
    else:
        try:
            state = _local_canary(settings, version, rps)
        except DeployRefused as error:
            raise Failure(f"deploy of {version} refused: {error}") from None
        rollout = f"{version} {state.phase.replace('_', ' ')}: {state.reason}"
    _closing_summary(settings, result, rollout)


def _closing_summary(settings: Settings, result: Any, rollout: str) -> None:
    """What the whole loop did, on one screen."""
    from flywheel.registry import PRODUCTION
    from flywheel.tasks import registry

    reg = registry(settings)
    window, evaluation = result.read("window"), result.read("evaluation")
    decision = result.read("decision")
    metric, cand = evaluation["metric"], evaluation["candidate"]["newest"][evaluation["metric"]]
    prod = evaluation.get("production")
    versus = f" vs production {prod['version']} {_fmt(prod['newest'][metric])}" if prod else ""
    production = reg.resolve(PRODUCTION)
    days = [b["day"] for b in window["batches"]]
    rows = [
        (
            "data",
            f"{len(days)} batches {days[0]}..{days[-1]}, sha256 {window['content_hash'][:12]}",
        ),
        ("candidate", f"{metric} {_fmt(cand)} on {evaluation['newest_batch']}{versus}"),
        ("gate", "blessed" if decision["blessed"] else "not blessed"),
        ("registered", (result.registration or {}).get("version", "nothing")),
        ("rollout", rollout),
        ("production", f"{settings.model_name} {production}"),
        ("report", str(result.outputs["report"])),
        ("next", f"flywheel models show {production}; flywheel serve; make run (a new week)"),
    ]
    table = Table(title=f"flywheel run {result.run_id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


def _parse_day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Failure(f"{flag} {text!r} is not a date like 2026-01-14") from None


def _summarise(settings: Settings, result: Any) -> None:
    from flywheel.tasks import registry

    out.rule(f"run {result.run_id}")
    if not result.succeeded:
        out.print(
            f"[red bold]FAILED[/] at step [bold]{result.failed_task or '?'}[/] after {result.seconds:.1f}s"
        )
        if result.failure_report:
            out.print(result.failure_report)
        else:
            out.print(result.error or "")
        out.print("No model version was written; the production alias is unchanged.")
        return
    window = result.read("window")
    evaluation = result.read("evaluation")
    decision = result.read("decision")
    days = [b["day"] for b in window["batches"]]
    metric = evaluation["metric"]
    out.print(
        f"[green bold]SUCCEEDED[/] in {result.seconds:.1f}s. Data: {len(days)} batches "
        f"{days[0]}..{days[-1]} from {window['source']} (sha256 {window['content_hash'][:12]})"
    )
    cand = evaluation["candidate"]
    table = Table(title=f"{metric} and friends", show_lines=False)
    table.add_column("metric")
    table.add_column("candidate, holdout", justify="right")
    table.add_column(f"candidate, newest ({evaluation['newest_batch']})", justify="right")
    prod = evaluation.get("production")
    if prod:
        table.add_column(f"production {prod['version']}, newest", justify="right")
    for name in ("roc_auc", "average_precision", "accuracy", "f1", "log_loss"):
        row = [name, _fmt(cand["holdout"][name]), _fmt(cand["newest"][name])]
        if prod:
            row.append(_fmt(prod["newest"][name]))
        table.add_row(*row)
    out.print(table)
    if prod:
        out.print(
            f"Compared with production {prod['version']} on the newest batch: {metric} "
            f"{_fmt(cand['newest'][metric])} (candidate) vs {_fmt(prod['newest'][metric])} (production)"
        )
    else:
        out.print("Nothing in production yet: the candidate is judged on the minimums alone.")
    verdict = "[green]BLESSED[/]" if decision["blessed"] else "[yellow]NOT BLESSED[/]"
    passed = sum(c["passed"] for c in decision["checks"])
    out.print(f"Gate: {verdict} ({passed}/{len(decision['checks'])} checks passed)")
    for check in decision["checks"]:
        if not check["passed"]:
            out.print(f"  - {check['detail']}")
    out.print(f"Report: {result.outputs['report']}")
    if result.registration:
        reg = result.registration
        production = registry(settings).resolve("production")
        out.print(
            f"Registered [bold]{settings.model_name} {reg['version']}[/] at {reg['location']}"
        )
        out.print(
            f"Aliases moved: {', '.join(reg['aliases']) or 'none (same model as before)'}; production is {production}"
        )


def _fmt(value: Any) -> str:
    return "–" if value is None or value != value else f"{value:.4f}"


@app.command("compile")
def compile_pipeline(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for training.yaml.")] = Path(
        "pipelines/compiled"
    ),
) -> None:
    """Compile the training pipeline to the YAML package a KFP cluster runs."""
    from flywheel import runs

    path = runs.write_package(out_dir)
    out.print(f"wrote {path}")


@app.command("submit")
def submit(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(envvar="KFP_HOST", help="KFP API endpoint (default: pipeline.host)."),
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Component image, ideally by digest (repo@sha256:...).")
    ] = None,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Last day of the window (default: newest).")
    ] = "",
    namespace: Annotated[str | None, typer.Option(help="Kubeflow profile namespace.")] = None,
    service_account: Annotated[
        str | None,
        typer.Option(help="Service account the steps run as (the deploy step patches Seldon)."),
    ] = None,
) -> None:
    """Compile and start the training pipeline on a Kubeflow Pipelines cluster."""
    from flywheel import runs

    settings = _settings(ctx)
    endpoint = host or settings.pipeline.host
    if not endpoint:
        raise Failure("no KFP endpoint: pass --host, set KFP_HOST or pipeline.host")
    if settings.storage.uri.startswith("s3://") is False:
        raise Failure(
            f"storage.uri is {settings.storage.uri!r}, a local directory: a cluster run needs an s3:// store"
        )
    result = runs.submit(
        settings,
        host=endpoint,
        image=image,
        as_of=as_of,
        namespace=namespace,
        service_account=service_account,
    )
    out.print(f"started {result['run_id']} (KFP run {result['kfp_run_id']}) on {endpoint}")


# --- serving and rollouts -----------------------------------------------------------


def _tick_printer(started: float, steps: int) -> Any:
    import time

    def show(state: Any, verdict: Any) -> None:
        if verdict is None:
            return
        parts = []
        for check in verdict.checks:
            value = "–" if check.measured is None else f"{check.measured:.3g}"
            parts.append(f"{check.name} {value} [{check.status}]")
        out.print(
            f"[{time.monotonic() - started:5.1f}s] step {state.step + 1}/{steps} "
            f"canary {state.weight}%: {verdict.action} ({verdict.reason}); " + ", ".join(parts),
            highlight=False,
        )

    return show


def _local_canary(settings: Settings, version: str, rps: float, traffic: bool = True) -> Any:
    import time

    from flywheel.rollout.local import local_canary

    out.rule(f"canary {settings.model_name} {version}")
    out.print(
        f"Steps {list(settings.rollout.steps)}%, {settings.rollout.min_requests} canary requests per step, "
        f"synthetic traffic at {rps:g} req/s on loopback"
    )
    started = time.monotonic()
    state, stats = local_canary(
        settings,
        version,
        rps=rps,
        traffic=traffic,
        on_tick=_tick_printer(started, len(settings.rollout.steps)),
    )
    colour = "green" if state.phase == "promoted" else "red"
    out.print(
        f"[{colour} bold]{state.phase.replace('_', ' ').upper()}[/] {version} after {time.monotonic() - started:.0f}s: {state.reason}"
    )
    if stats:
        out.print("Traffic: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
    return state


@app.command("serve")
def serve(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="A version (v3) or alias.")] = "production",
    port: Annotated[int, typer.Option(help="Gateway port on 127.0.0.1.")] = 8080,
) -> None:
    """Serve a version locally: a seldon-core microservice behind the gateway, until Ctrl-C."""
    import time

    from flywheel.rollout.local import LocalDriver
    from flywheel.tasks import registry

    settings = _settings(ctx)
    resolved = registry(settings).resolve(version) if not version.lstrip("v").isdigit() else version
    if resolved is None:
        raise Failure(
            f"alias {version!r} of {settings.model_name} is not set: run the pipeline first"
        )
    driver = LocalDriver(settings, gateway_port=port)
    try:
        driver.serve(resolved)
        out.print(
            f"Serving {settings.model_name} {resolved} at {driver.gateway_url}/api/v1.0/predictions (Ctrl-C stops)"
        )
        out.print(
            f"Try: curl -s {driver.gateway_url}/api/v1.0/predictions -H 'Content-Type: application/json' "
            '-d \'{"jsonData": [{"income": 52000, "age": 40, "loan_amount": 12000, "credit_score": 680, '
            '"tenure_months": 24, "late_payments": 0, "region": "north", "channel": "web", "employment": "salaried"}]}\''
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        driver.close()


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    version: Annotated[
        str, typer.Argument(help="The version to roll out (v3), or an alias such as candidate.")
    ],
    canary: Annotated[
        bool,
        typer.Option(
            "--canary/--direct", help="Canary steps with analysis, or straight to production."
        ),
    ] = True,
    driver: Annotated[
        str | None, typer.Option(help="local or kubernetes (default: rollout.driver).")
    ] = None,
    rps: Annotated[float, typer.Option(help="Local driver: synthetic requests per second.")] = 40.0,
    traffic: Annotated[bool, typer.Option(help="Local driver: send synthetic traffic.")] = True,
) -> None:
    """Roll a registered version out: canary steps, analysis, then promotion or rollback."""
    from flywheel.registry import PRODUCTION
    from flywheel.rollout.local import DeployRefused
    from flywheel.tasks import registry

    settings = _settings(ctx)
    reg = registry(settings)
    resolved = reg.resolve(version) if not version.lstrip("v").isdigit() else version
    if resolved is None:
        raise Failure(f"alias {version!r} of {settings.model_name} is not set")
    reg.manifest(resolved)
    which = driver or settings.rollout.driver
    if not canary:
        current = reg.resolve(PRODUCTION)
        reg.move_alias(PRODUCTION, resolved, expected=current, reason="deployed directly by hand")
        if which == "kubernetes":
            from flywheel.rollout.kubernetes import KubernetesDriver

            KubernetesDriver(settings).finish(resolved)
        out.print(f"production: {current} -> {resolved}")
        return
    if which == "kubernetes":
        from flywheel import tasks

        # The pipeline's deploy step does the same: a canary already under way is resumed.
        started = tasks.deploy(
            settings.model_copy(
                update={"rollout": settings.rollout.model_copy(update={"driver": "kubernetes"})}
            ).to_json(),
            resolved,
        )
        out.print(
            f"{started['version']}: {started['action']} ({started['reason']}); "
            "the controller (`flywheel rollout watch`) takes it from here"
        )
        return
    try:
        state = _local_canary(settings, resolved, rps, traffic)
    except DeployRefused as error:
        raise Failure(f"deploy of {resolved} refused: {error}") from None
    if state.phase != "promoted":
        raise typer.Exit(1)


def _controller(settings: Settings, driver_name: str | None = None) -> Any:
    from flywheel.rollout.controller import RolloutController
    from flywheel.tasks import registry

    which = driver_name or settings.rollout.driver
    if which == "kubernetes":
        from flywheel.rollout.kubernetes import KubernetesDriver

        driver: Any = KubernetesDriver(settings)
    else:
        from flywheel.rollout.controller import RecordingDriver

        driver = RecordingDriver()
    return RolloutController(registry(settings), driver, settings.rollout)


@rollout_app.command("status")
def rollout_status(ctx: typer.Context) -> None:
    """The current (or last) rollout, and each step's decision."""
    from flywheel.tasks import registry

    settings = _settings(ctx)
    controller = _controller(settings, "local")
    state = controller.state()
    if state is None:
        out.print(f"no rollout of {settings.model_name} yet")
        return
    out.print(
        f"{state.rollout_id}: {state.phase} — {state.canary} against {state.stable}, "
        f"step {state.step + 1}/{len(settings.rollout.steps)} at {state.weight}%: {state.reason}"
    )
    for record in registry(settings).records(state.canary):
        if "decision" in record:
            out.print(
                f"  step {record['step']} at {record['weight']}%: {record['decision']} — {record['reason']}"
            )


@rollout_app.command("watch")
def rollout_watch(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option(help="One look, then exit.")] = False,
) -> None:
    """The rollout controller: drive any rollout in progress (Kubernetes driver) until stopped."""
    import time

    settings = _settings(ctx)
    controller = _controller(settings, "kubernetes")
    while True:
        state = controller.state()
        if state is not None and not state.done:
            state = controller.tick()
            out.print(f"{state.rollout_id}: {state.phase} at {state.weight}% ({state.reason})")
        if once:
            return
        time.sleep(settings.rollout.interval_seconds)


@rollout_app.command("wait")
def rollout_wait(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600,
) -> None:
    """Wait for the current rollout's decision: exit 0 if promoted, 1 if rolled back."""
    import time

    settings = _settings(ctx)
    controller = _controller(settings, "local")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = controller.state()
        if state is None:
            raise Failure(f"no rollout of {settings.model_name} to wait for")
        if state.done:
            out.print(f"{state.canary} {state.phase.replace('_', ' ')}: {state.reason}")
            raise typer.Exit(0 if state.phase == "promoted" else 1)
        time.sleep(min(5.0, settings.rollout.interval_seconds))
    raise Failure(f"no decision after {timeout:.0f}s")


@app.command("promote")
def promote(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Recorded with the decision.")] = "promoted by hand",
) -> None:
    """Promote the rollout in progress now, skipping its remaining steps."""
    settings = _settings(ctx)
    state = _controller(settings).promote(reason)
    out.print(f"{state.canary} promoted: production is {state.canary}")


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    reason: Annotated[
        str, typer.Option(help="Recorded with the decision.")
    ] = "rolled back by hand",
) -> None:
    """Roll back the rollout in progress now; production stays where it is."""
    settings = _settings(ctx)
    state = _controller(settings).rollback(reason)
    out.print(f"{state.canary} rolled back: production stays {state.stable}")


@demo_app.command("bad-candidate")
def demo_bad_candidate(
    ctx: typer.Context,
    kind: Annotated[
        str, typer.Option(help="errors (every request fails), slow, or shuffled (wrong answers).")
    ] = "errors",
) -> None:
    """Register a deliberately faulty version, to watch a canary roll it back."""
    from flywheel.rollout.faults import register_faulty

    if kind not in {"errors", "slow", "shuffled"}:
        raise Failure(f"--kind must be errors, slow or shuffled, not {kind!r}")
    version = register_faulty(_settings(ctx), kind)  # type: ignore[arg-type]
    out.print(
        f"registered {version}, a deliberately faulty ({kind}) model. Try: flywheel deploy {version} --canary"
    )


# --- models -----------------------------------------------------------------------


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list incomplete versions of crashed runs.")
    ] = False,
) -> None:
    """List the versions of the configured model and the aliases on them."""
    from flywheel.tasks import registry

    settings = _settings(ctx)
    reg = registry(settings)
    aliases: dict[str, list[str]] = {}
    for alias in ("production", "candidate"):
        version = reg.resolve(alias)
        if version:
            aliases.setdefault(version, []).append(alias)
    table = Table(title=f"{settings.model_name} in {reg.store.uri}")
    for column in ("version", "aliases", "created", "metric", "newest", "holdout", "data", "run"):
        table.add_column(column)
    for m in reg.versions():
        s = m.summary
        table.add_row(
            m.version,
            ", ".join(aliases.get(m.version, [])),
            m.created_at[:19],
            str(s.get("metric", "")),
            _fmt(s.get("newest")),
            _fmt(s.get("holdout")),
            str(s.get("data_hash", ""))[:12],
            m.run_id,
        )
    out.print(table)
    if show_all:
        for version in reg.incomplete():
            out.print(f"{version}: incomplete (its run stopped before finishing; ignored)")


@models_app.command("show")
def models_show(
    ctx: typer.Context,
    version: Annotated[
        str, typer.Argument(help="A version (v3) or an alias (production, candidate).")
    ],
) -> None:
    """Show one version: files, metrics, lineage and alias history."""
    from flywheel.registry import RegistryError
    from flywheel.tasks import registry

    settings = _settings(ctx)
    reg = registry(settings)
    resolved = reg.resolve(version) if not version.lstrip("v").isdigit() else version
    if resolved is None:
        raise Failure(f"alias {version!r} of {settings.model_name} is not set")
    try:
        manifest = reg.manifest(resolved)
        lineage = json.loads(reg.read(resolved, "lineage.json"))
        metrics = json.loads(reg.read(resolved, "metrics.json"))
    except RegistryError as error:
        raise Failure(str(error)) from None
    out.print(f"[bold]{settings.model_name} {manifest.version}[/] at {reg.location(resolved)}")
    out.print(f"created {manifest.created_at} by run {manifest.run_id}")
    out.print(
        f"git commit {lineage.get('git_commit')}; image {lineage.get('image') or '(local)'} {lineage.get('image_digest') or ''}"
    )
    data = lineage.get("data", {})
    out.print(
        f"data {data.get('content_hash')} from {data.get('source')}: {', '.join(b['day'] for b in data.get('batches', []))}"
    )
    out.print("packages " + ", ".join(f"{k} {v}" for k, v in lineage.get("packages", {}).items()))
    out.print("files " + ", ".join(sorted(manifest.files)))
    table = Table(title="metrics")
    table.add_column("name")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, _fmt(value))
    out.print(table)
    for alias in ("production", "candidate"):
        for state in reg.history(alias):
            if state.version == manifest.version or state.previous == manifest.version:
                out.print(
                    f"{state.at} {alias} {state.previous or '-'} -> {state.version}: {state.reason}"
                )


# --- entry point ------------------------------------------------------------------


def main() -> None:
    """Console entry point: turns expected failures into one clear line and exit code."""
    from flywheel.batches import BatchError
    from flywheel.contract import ContractViolation
    from flywheel.registry import RegistryError
    from flywheel.storage import StoreError
    from flywheel.training import TrainingError

    try:
        code = app(standalone_mode=False)
    except ConfigError as error:
        err.print(f"[red]configuration error:[/] {error}", highlight=False)
        sys.exit(2)
    except (
        Failure,
        StoreError,
        BatchError,
        RegistryError,
        TrainingError,
        ContractViolation,
    ) as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as error:  # click usage errors carry their own exit code
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
