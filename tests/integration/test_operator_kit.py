"""The operator's kit: the alerts under promtool, and every dashboard query against a real
Prometheus scraping a served model and a real `flywheel rollout watch`.

Real: the promtool and Prometheus of the pinned module, the seldon-core microservices
serving the registered versions, the rollout controller (`flywheel rollout watch
--metrics-port`, on the test control plane, measuring through that Prometheus), the
monitor and the trigger engine writing their records into the store it reads.
Stood in for: Seldon's executor (harness.servers.executor_exporter, into which the test
records the calls), and the ServiceMonitors, whose labels the static targets carry.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel import synthetic
from flywheel.config import Settings
from flywheel.monitoring.monitor import monitor
from flywheel.rollout import seldon
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.kubernetes import KubernetesDriver, load_client
from flywheel.rollout.local import newest_batch
from flywheel.stores import Stores
from flywheel.triggers import engine
from harness.deployments import on_cluster
from harness.projects import train_and_register
from harness.servers import (
    PrometheusServer,
    executor_exporter,
    free_ports,
    prometheus_configured,
    seldon_microservice,
    stop,
    wait_until,
)
from harness.traffic import log_traffic
from tools import dashboard
from tools.build import binary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "helm" / "flywheel" / "rules" / "flywheel.rules.yaml"
RULE_TESTS = REPO / "tests" / "alerts" / "flywheel.test.yaml"
FLYWHEEL = Path(sys.executable).parent / "flywheel"


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary("promtool")), *map(str, args)], capture_output=True, text=True, check=False
    )


def _alerts() -> list[str]:
    return [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules_the_chart_ships() -> None:
    result = _promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_show_each_alert_firing_and_quiet() -> None:
    # given unit tests in which each alert fires at some time and is quiet at another
    tests = yaml.safe_load(RULE_TESTS.read_text())
    cases = [c for t in tests["tests"] for c in t["alert_rule_test"]]
    for alert in _alerts():
        assert any(c["alertname"] == alert and c.get("exp_alerts") for c in cases), alert
        assert any(c["alertname"] == alert and not c.get("exp_alerts") for c in cases), alert
    # when promtool runs them, then they pass
    result = _promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


# --- every dashboard query against a real Prometheus ---------------------------------


@pytest.fixture
def rolled_out(
    kube: Any, namespace: str, small_settings: Any, make_batches: Any, tmp_path: Path
) -> Settings:
    """v1 in production and v2 registered, a canary policy that checks accuracy, and the
    controller looking every second."""
    settings = on_cluster(
        small_settings(),
        namespace,
        steps=(10, {"weight": 50, "accuracy": "required"}, 100),
        accuracy="on",
        interval_seconds=1.0,
    )
    make_batches(settings, 5)
    assert train_and_register(settings, tmp_path / "w1", "r1") == "v1"
    make_batches(settings, 2, start=settings.data.generator.start_date + timedelta(days=5))
    assert train_and_register(settings, tmp_path / "w2", "r2") == "v2"
    return settings


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


def _scrape_config(namespace: str, jobs: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Prometheus scraping each job's (address, path) every second, with the namespace label
    the chart's ServiceMonitors attach, and evaluating the chart's alerts every second."""
    return {
        "global": {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "evaluation_interval": "1s",
        },
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": path,
                "static_configs": [{"targets": [address], "labels": {"namespace": namespace}}],
            }
            for job, (address, path) in jobs.items()
        ],
    }


@pytest.fixture
def controller_port() -> int:
    (port,) = free_ports(1)
    return port


@pytest.fixture
def served(
    kube: Any, rolled_out: Settings, controller_port: int
) -> Iterator[tuple[PrometheusServer, str]]:
    """Prometheus scraping the executor's stand-in, each predictor's real model and the real
    controller, whose canary of v2 has traffic and labels on both predictors."""
    settings = rolled_out
    namespace = settings.serving.namespace
    rows = json.loads(
        newest_batch(Stores(settings).source)
        .head(40)[[*settings.features.columns, settings.features.label]]
        .to_json(orient="records")
    )
    with contextlib.ExitStack() as stack:
        executor = stack.enter_context(executor_exporter("loan-default"))
        models = {}
        for slot, version in (("a", "v1"), ("b", "v2")):
            env = {
                "SELDON_DEPLOYMENT_ID": "loan-default",
                "PREDICTOR_ID": slot,
                "PREDICTIVE_UNIT_ID": "model",
                # as Seldon's operator sets it: the path the chart's ServiceMonitor scrapes
                "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",
            }
            parameters = {p["name"]: p["value"] for p in seldon.parameters(settings, version)}
            models[slot] = stack.enter_context(seldon_microservice(parameters, env=env))
        jobs = {
            "executor": (executor.address, "/prometheus"),
            **{f"model-{slot}": (m.metrics, "/prometheus") for slot, m in models.items()},
            # named as the chart's ServiceMonitor names it: after the controller's Service
            "fw-flywheel-rollout-controller": (f"127.0.0.1:{controller_port}", "/metrics"),
        }
        prom = stack.enter_context(
            prometheus_configured(_scrape_config(namespace, jobs), scrape_seconds=1.0)
        )
        settings = settings.model_copy(
            update={"rollout": settings.rollout.model_copy(update={"prometheus_url": prom.url})}
        )
        # given a canary of v2 at 10%, and each predictor's calls, scores and labels
        driver = KubernetesDriver(settings, api_client=load_client(str(kube.kubeconfig)))
        RolloutController(Stores(settings).registry, driver, settings.rollout).start("v2")
        for slot, model in models.items():
            for i, row in enumerate(rows):
                label = settings.features.label
                truth = row[label]
                request = {"jsonData": [{k: v for k, v in row.items() if k != label}]}
                response = _post(f"http://{model.http}/api/v1.0/predictions", request)
                _post(
                    f"http://{model.http}/api/v1.0/feedback",
                    {
                        "request": request,
                        "response": response,
                        "truth": {"data": {"ndarray": [truth]}},
                    },
                )
                code = "500" if slot == "b" and i == 0 else "200"
                executor.requests.observe(slot, "predictions", "post", code, 0.02)
                executor.requests.observe(slot, "feedback", "post", "200", 0.01)
        # and the monitor's records of production's logged traffic, and a decision
        stores = Stores(settings)
        now = datetime.now(UTC)
        day = synthetic.generate_day(now.date(), settings.data.generator)
        log_traffic(stores.registry.store, settings.model_name, "v1", day.head(300))
        monitor(settings, stores.registry, stores.source, until=now + timedelta(days=1))
        engine.check(settings, stores.registry, stores.source, now=now)
        # when the controller runs as the chart runs it, serving its metrics
        config = Path(str(prom.log)).parent / "flywheel.yaml"
        config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
        log = config.parent / "controller.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    *(str(FLYWHEEL), "--config", str(config), "rollout", "watch"),
                    *("--metrics-port", str(controller_port), "--metrics-host", "127.0.0.1"),
                ],
                env={**os.environ, "KUBECONFIG": str(kube.kubeconfig)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            # and the engine decides again while it runs
            wait_until(
                lambda: bool(prom.query("flywheel_trigger_evaluations_total")),
                60,
                "the controller scraped",
                process,
                log,
            )
            engine.check(settings, stores.registry, stores.source, now=datetime.now(UTC))
            wait_until(
                lambda: len(prom.query('flywheel_rollout_check_value{check="accuracy"}')) > 0,
                90,
                "a look with every check measured",
                process,
                log,
            )
            time.sleep(5)  # a few more scrapes, for the rates
            yield prom, namespace
        finally:
            stop(process)


# What Grafana puts for each variable the queries use.
VARIABLES = {
    "$model": "loan-default",
    "$metric": "accuracy",
    "$__rate_interval": "30s",
    "$__range": "10m",
}


def _substituted(expr: str, namespace: str) -> str:
    for name, value in {"$namespace": namespace, **VARIABLES}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_every_dashboard_query_returns_series_and_the_alerts_load(
    served: tuple[PrometheusServer, str],
) -> None:
    prom, namespace = served
    board = json.loads(dashboard.DASHBOARD.read_text())
    # then each variable's label_values() finds the release's namespace and model
    for variable in board["templating"]["list"]:
        found = re.fullmatch(r"label_values\((.+), (\w+)\)", str(variable.get("query", "")))
        if found:
            series = prom.query(_substituted(found.group(1), namespace))
            assert {s["metric"].get(found.group(2)) for s in series} <= {namespace, "loan-default"}
            assert series, variable["name"]
    # and every panel's every query returns at least one series
    empty = [
        (title, expr)
        for title, expr in dashboard.queries(board)
        if not prom.query(_substituted(expr, namespace))
    ]
    assert empty == []
    # and requests are told apart by version through the controller's slots
    requests = prom.query(_substituted(dashboard.queries(board)[0][1], namespace))
    assert {r["metric"]["version"] for r in requests} == {"v1", "v2"}  # type: ignore[index]
    # and every alert of the chart is loaded and evaluates without error on these series
    wait_until(
        lambda: all(r["health"] == "ok" and r.get("lastEvaluation") for r in _rules(prom).values()),
        30,
        "the rules evaluated",
    )
    rules = _rules(prom)
    assert sorted(rules) == sorted(_alerts())
    # and with the controller up, the monitor fresh and nothing dropped, those stay quiet
    for quiet in (
        "FlywheelRolloutControllerDown",
        "FlywheelMonitorNotRun",
        "FlywheelPredictionLogDropping",
        "FlywheelCanaryStuck",
    ):
        assert rules[quiet]["state"] == "inactive", (quiet, rules[quiet])


def _rules(prom: PrometheusServer) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(f"{prom.url}/api/v1/rules", timeout=5) as response:
        groups = json.loads(response.read())["data"]["groups"]
    return {r["name"]: r for g in groups for r in g["rules"]}
