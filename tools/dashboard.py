"""Generate the chart's Grafana dashboard, helm/flywheel/dashboards/flywheel.json.

Built with grafana-foundation-sdk (Apache-2.0); Grafana itself (AGPL) is not used.
Every query is listed by `queries()`, which tests/integration/test_operator_kit.py
evaluates against a real Prometheus scraping a served model and the controller.

python -m tools.dashboard            # write the JSON
python -m tools.dashboard --check    # exit 1 if it is stale
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, dashboard, stat, timeseries
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    BigValueTextMode,
    LegendDisplayMode,
    LegendPlacement,
)
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from flywheel.rollout.analysis import CHECKS
from flywheel.rollout.kubernetes import GRPC_SERVER_ERRORS, PREDICTION_SERVICES
from tools.generated import write_or_check

CHART = Path(__file__).resolve().parents[1] / "helm" / "flywheel"
DASHBOARD = CHART / "dashboards" / "flywheel.json"
UID = "flywheel-operator"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

NAMESPACE = 'namespace="$namespace"'
# The series the controller exports for the chosen model (flywheel.exporter).
MODEL = 'model="$model"'
OURS = f"{NAMESPACE},{MODEL}"
PREDICTIONS = "|".join(re.escape(s) for s in PREDICTION_SERVICES).replace("\\", "\\\\")
SERVER_ERRORS = "5..|" + "|".join(sorted(GRPC_SERVER_ERRORS))
EXECUTOR = "seldon_api_executor_server_requests_seconds"
# The executor's and the model's series name the predictor (a slot), not the version:
# the controller's flywheel_serving_slot_info says which version each one serves.
SLOTS = (
    "max by (namespace, deployment_name, predictor_name, version) "
    f"(flywheel_serving_slot_info{{{OURS}}})"
)


def by_version(series: str) -> str:
    """`series` (by predictor) labelled with the version its predictor serves."""
    return (
        f"{series} * on (namespace, deployment_name, predictor_name) group_left (version) {SLOTS}"
    )


def _rate(metric: str, matchers: str = "") -> str:
    labels = ",".join(m for m in (NAMESPACE, matchers) if m)
    return f"rate({metric}{{{labels}}}[$__rate_interval])"


def _query(expr: str, legend: str, ref: str) -> Dataquery:
    return Dataquery().expr(expr).legend_format(legend).ref_id(ref)


def _series(title: str, unit: str, description: str, *targets: tuple[str, str]) -> Any:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    for i, (expr, legend) in enumerate(targets):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def _stat(title: str, unit: str, description: str, *targets: tuple[str, str]) -> Any:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(5)
        .span(6)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .text_mode(BigValueTextMode.VALUE_AND_NAME)
        .graph_mode(BigValueGraphMode.NONE)
    )
    for i, (expr, legend) in enumerate(targets):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)).instant())
    return panel


def _serving() -> Iterator[Any]:
    served = _rate(f"{EXECUTOR}_count", f'service=~"{PREDICTIONS}"')
    failed = _rate(f"{EXECUTOR}_count", f'service=~"{PREDICTIONS}",code=~"{SERVER_ERRORS}"')
    requests = f"sum by (version) ({by_version(served)})"
    # With no failure at all the share is 0, not "no data".
    errors = f"sum by (version) ({by_version(failed)}) or 0 * {requests}"
    buckets = _rate(f"{EXECUTOR}_bucket", f'service=~"{PREDICTIONS}"')
    yield _series(
        "Requests by version",
        "reqps",
        "Predictions per second through Seldon's executor, by the version each predictor serves.",
        (requests, "{{version}}"),
    )
    yield _series(
        "Server errors by version",
        "percentunit",
        "Share of predictions answered with a server error (HTTP 5xx, or a gRPC code "
        "grpc-gateway answers with one).",
        (f"({errors}) / {requests}", "{{version}}"),
    )
    yield _series(
        "Latency by version",
        "s",
        "Seldon's executor's request latency, p50 and p99, by version.",
        *(
            (
                f"histogram_quantile({q}, sum by (version, le) ({by_version(buckets)}))",
                f"{{{{version}}}} p{int(float(q) * 100)}",
            )
            for q in ("0.5", "0.99")
        ),
    )
    yield _series(
        "Prediction log by version",
        "short",
        "Records each version's servers dropped (a full buffer, a store that refused), hold "
        "unwritten, and left out by monitoring.log_sample; the log is what monitoring reads.",
        (
            f"sum by (version) ({by_version(f'flywheel_log_dropped{{{NAMESPACE}}}')})",
            "{{version}} dropped",
        ),
        (
            f"sum by (version) ({by_version(f'flywheel_log_sampled_out{{{NAMESPACE}}}')})",
            "{{version}} sampled out",
        ),
        (
            f"sum by (version) ({by_version(f'flywheel_log_backlog{{{NAMESPACE}}}')})",
            "{{version}} backlog",
        ),
    )


def _rollouts() -> Iterator[Any]:
    yield _series(
        "Canary weight",
        "percent",
        "Percent of requests sent to the canary: 100 once promoted, 0 once rolled back.",
        (f"max by (model) (flywheel_rollout_canary_weight_percent{{{OURS}}})", "canary"),
    )
    yield _stat(
        "Rollout",
        "none",
        "The newest rollout, its step and phase.",
        (
            f"max by (canary, stable, phase) (flywheel_rollout_info{{{OURS}}})",
            "{{canary}} against {{stable}}: {{phase}}",
        ),
        (f"max(flywheel_rollout_step{{{OURS}}})", "step"),
        (f"max(flywheel_rollout_steps{{{OURS}}})", "of steps"),
    )
    yield _stat(
        "Controller",
        "none",
        "Rollout controllers running, and holding the rollout's lock (one acts at a time).",
        (f"sum(flywheel_rollout_controller_up{{{OURS}}})", "running"),
        (f"sum(flywheel_rollout_controller_leader{{{OURS}}})", "leading"),
    )
    for check in CHECKS:
        selector = f'{OURS},check="{check}"'
        yield _series(
            f"Check: {check}",
            "short",
            f"The canary's {check} at the controller's last look, against the threshold the "
            "analysis held it to (a check passes on the right side of it with confidence).",
            (f"max(flywheel_rollout_check_value{{{selector}}})", "measured"),
            (f"max(flywheel_rollout_check_threshold{{{selector}}})", "threshold"),
        )
    yield _series(
        "Looks by action",
        "short",
        "The controller's looks at the canary per minute: wait, advance, rollback, or "
        "inconclusive (it could not measure).",
        (
            "sum by (action) (60 * " + _rate("flywheel_rollout_looks_total", MODEL) + ")",
            "{{action}}",
        ),
    )
    yield _stat(
        "Decisions in the time range",
        "none",
        "Step decisions and rollout endings.",
        (
            f"sum by (decision) (increase(flywheel_rollout_decisions_total{{{OURS}}}[$__range]))",
            "{{decision}}",
        ),
        (
            f"sum by (ending) (increase(flywheel_rollout_endings_total{{{OURS}}}[$__range]))",
            "{{ending}}",
        ),
    )
    yield _stat(
        "Inconclusive looks in a row",
        "none",
        "Looks in a row that could not measure; at the limit the canary is rolled back.",
        (f"max(flywheel_rollout_inconclusive_looks{{{OURS}}})", "in a row"),
        (f"max(flywheel_rollout_inconclusive_limit{{{OURS}}})", "limit"),
    )


def _monitoring() -> Iterator[Any]:
    yield _series(
        "Drifted share of features",
        "percentunit",
        "Share of features whose drift test fired in the newest window, against the drift "
        "trigger's share.",
        (
            f"max by (version, role) (flywheel_monitor_drifted_share{{{OURS}}})",
            "{{version}} ({{role}})",
        ),
        (f"max(flywheel_trigger_drift_share_threshold{{{OURS}}})", "drift trigger"),
    )
    yield _series(
        "Feature PSI (production)",
        "short",
        "Each feature's PSI against the contract's reference, newest window.",
        (
            f'max by (feature) (flywheel_monitor_feature_psi{{{OURS},role="production"}})',
            "{{feature}}",
        ),
    )
    yield _series(
        "$metric: delayed labels, CBPE estimate, offline and floor",
        "percentunit",
        "The metric on delayed labels with its confidence interval, CBPE's estimate before "
        "labels arrive, the version's offline evaluation and the performance trigger's threshold.",
        (
            f'max by (version, bound) (flywheel_monitor_metric{{{OURS},metric="$metric"}})',
            "{{version}} {{bound}}",
        ),
        (
            f'max by (version) (flywheel_monitor_estimated_metric{{{OURS},metric="$metric",bound="value"}})',
            "{{version}} CBPE estimate",
        ),
        (
            f'max by (version) (flywheel_monitor_offline_metric{{{OURS},metric="$metric"}})',
            "{{version}} offline",
        ),
        (
            "max by (version) (flywheel_trigger_performance_threshold"
            f'{{{OURS},trigger="performance",metric="$metric"}})',
            "{{version}} floor",
        ),
    )
    yield _series(
        "Labelled rows",
        "short",
        "Rows of the newest window whose delayed labels arrived.",
        (f"max by (version) (flywheel_monitor_labelled_rows{{{OURS}}})", "{{version}}"),
    )
    yield _stat(
        "Model age",
        "h",
        "Hours since each served version was registered.",
        (
            "(time() - max by (version, role) "
            f"(flywheel_registry_version_created_timestamp_seconds{{{OURS}}})) / 3600",
            "{{version}} ({{role}})",
        ),
    )
    yield _stat(
        "Since the monitor last ran",
        "s",
        "Time since the newest monitoring record was computed (the trigger engine's monitor step).",
        (f"time() - max(flywheel_monitor_computed_timestamp_seconds{{{OURS}}})", "monitor"),
    )


def _triggers() -> Iterator[Any]:
    yield _stat(
        "Evaluations in the time range",
        "none",
        "The trigger engine's evaluations, by outcome: fired, blocked by a safeguard, quiet.",
        (
            f"sum by (outcome) (increase(flywheel_trigger_evaluations_total{{{OURS}}}[$__range]))",
            "{{outcome}}",
        ),
    )
    yield _stat(
        "Firings in the time range",
        "none",
        "Triggers that fired, by reason; held back by a safeguard (cooldown, budget, hold, "
        "a run in flight) or not.",
        (
            f"sum by (trigger) (increase(flywheel_trigger_firings_total{{{OURS}}}[$__range]))",
            "{{trigger}}",
        ),
        (
            "sum by (trigger) (increase(flywheel_trigger_firings_total"
            f'{{{OURS},blocked="true"}}[$__range]))',
            "{{trigger}} held back",
        ),
    )
    yield _stat(
        "Newest evaluation",
        "none",
        "What the newest evaluation decided, and each trigger's verdict (1: fired).",
        (f"max by (outcome) (flywheel_trigger_last_outcome{{{OURS}}}) == 1", "{{outcome}}"),
        (f"max by (trigger) (flywheel_trigger_fired{{{OURS}}})", "{{trigger}}"),
    )
    yield _stat(
        "Since the last evaluation",
        "s",
        "Time since the trigger engine last evaluated.",
        (f"time() - max(flywheel_trigger_last_evaluation_timestamp_seconds{{{OURS}}})", "engine"),
    )


def _variables() -> list[Any]:
    source = dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    namespace = (
        dashboard.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query("label_values(flywheel_rollout_controller_up, namespace)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    model = (
        dashboard.QueryVariable("model")
        .label("Model")
        .datasource(DATASOURCE)
        .query('label_values(flywheel_rollout_controller_up{namespace="$namespace"}, model)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    metric = (
        dashboard.CustomVariable("metric")
        .label("Metric")
        .values("accuracy,roc_auc")
        .current(VariableOption(selected=True, text="accuracy", value="accuracy"))
    )
    return [source, namespace, model, metric]


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    board = (
        dashboard.Dashboard("Flywheel")
        .uid(UID)
        .description(
            "One model's serving, canary rollouts, monitoring and retraining triggers "
            "(the Flywheel chart's operator's kit)."
        )
        .tags(["flywheel", "mlops"])
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .variables(_variables())
    )
    ids = itertools.count(1)
    for title, panels in (
        ("Serving", _serving()),
        ("Rollouts", _rollouts()),
        ("Monitoring", _monitoring()),
        ("Triggers", _triggers()),
    ):
        board = board.with_row(dashboard.Row(title).id(next(ids)))
        for panel in panels:
            board = board.with_panel(panel.id(next(ids)))
    # Read back into Grafana's dashboard model: what ships is the model's own form, and a
    # field the model does not know would fail here.
    register_default_plugins()
    model = Dashboard.from_json(json.loads(JSONEncoder().encode(board.build())))
    built: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(model))
    return built


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """Every panel's (title, PromQL expression), in order."""
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    DASHBOARD.parent.mkdir(exist_ok=True)
    return write_or_check(DASHBOARD, render(), "dashboard", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
