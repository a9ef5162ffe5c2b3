"""Window reports as Prometheus text, pushed to a Pushgateway over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from flywheel.monitoring import prometheus
from flywheel.monitoring.prometheus import PushError
from flywheel.monitoring.window import WindowReport
from harness.monitored import Monitored, Window
from harness.pushgateway import Gateway, pushgateway
from harness.servers import free_ports

# A sample line of the text exposition format: name{labels} value
SAMPLE = re.compile(r'^[a-z_]+\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\} (?:[-+]?[0-9.e+-]+|[+-]Inf)$')


def test_the_exposition_is_valid_text_format_with_one_help_and_type_per_metric(
    report: WindowReport,
) -> None:
    # given a report of a labelled window
    # when exposed
    text = prometheus.exposition([report])
    lines = text.splitlines()
    # then every line is a comment or a well-formed sample, each metric declared once, first
    declared: list[str] = []
    for line in lines:
        if line.startswith("# TYPE "):
            declared.append(line.split()[2])
        elif not line.startswith("# HELP "):
            assert SAMPLE.match(line), line
            assert line.split("{")[0] == declared[-1]
    assert len(declared) == len(set(declared))
    # and it carries the version, drift per feature, the metric intervals and the skipped lines
    assert (
        'flywheel_monitor_requests{model="loan-default",version="v1",role="production"} 30.0'
        in lines
    )
    assert sum(line.startswith("flywheel_monitor_feature_drifted{") for line in lines) == 9
    assert any(
        line.startswith("flywheel_monitor_metric{") and 'metric="accuracy",bound="low"' in line
        for line in lines
    )
    assert any('reason="invalid JSON (a truncated line?)"' in line for line in lines)
    # and whether the served inputs met the contract
    assert any(line.startswith("flywheel_monitor_invariants_hold{") for line in lines)


def test_only_the_newest_window_of_each_version_is_exposed_and_unknowns_are_left_out(
    report: WindowReport,
) -> None:
    # given an older window without labels and the newer one
    older = report.model_copy(
        update={
            "start": report.start - (report.end - report.start),
            "performance": report.performance.model_copy(
                update={"labelled": 0, "accuracy": None, "roc_auc": None, "log_loss": None}
            ),
        }
    )
    # when exposed
    text = prometheus.exposition([report, older])
    # then the newer one's values are there, once
    assert text.count("flywheel_monitor_labelled_rows{") == 1
    assert "flywheel_monitor_labelled_rows{" in text and " 600.0" in text
    assert not [line for line in text.splitlines() if line.endswith(("NaN", "nan"))]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with pushgateway() as running:
        yield running


def test_a_push_puts_the_text_in_the_jobs_group_for_the_model(
    gateway: Gateway, report: WindowReport
) -> None:
    # given the exposition
    text = prometheus.exposition([report])
    # when pushed
    prometheus.push(gateway.url, "loan-default", text)
    # then the gateway got it with the text format's content type, in the model's group
    ((path, content_type, body),) = gateway.received
    assert path == "/metrics/job/flywheel-monitor/model/loan-default"
    assert content_type.startswith("text/plain; version=0.0.4")
    assert body.decode() == text


def test_a_refused_or_unreachable_gateway_is_one_clear_error(gateway: Gateway) -> None:
    with pytest.raises(PushError, match="refused the metrics: 400 bad metric"):
        prometheus.push(gateway.url, "m", "refuse\n")
    (port,) = free_ports(1)
    with pytest.raises(PushError, match=f"cannot reach the Pushgateway at http://127.0.0.1:{port}"):
        prometheus.push(f"http://127.0.0.1:{port}", "m", "x 1\n", timeout=2)


def test_the_metrics_carry_each_tasks_figures(
    wine: Monitored, diabetes: Monitored, window: Window
) -> None:
    # given a multiclass and a regression window
    multiclass = window(wine, wine.unseen, "wine")
    regression = window(diabetes, diabetes.unseen, "diabetes")
    # then the metrics: the task's metrics on labels and estimated, each class's own
    text = prometheus.exposition([multiclass])
    assert 'flywheel_monitor_metric{model="wine"' in text and 'metric="macro_f1"' in text
    assert re.search(r'flywheel_monitor_class_metric\{[^}]*class="class_0"', text)
    assert re.search(r'flywheel_monitor_class_prediction_psi\{[^}]*class="class_2"', text)
    text = prometheus.exposition([regression])
    assert re.search(r'flywheel_monitor_estimated_metric\{[^}]*metric="rmse"', text)
    assert "accuracy" not in text


def test_each_classs_figures_are_every_labelled_rows_when_they_were_joined(
    wine: Monitored, window: Window
) -> None:
    # given a multiclass window whose every labelled row was joined, with other per-class
    # figures than its sample's
    from flywheel.monitoring.intervals import Interval
    from flywheel.monitoring.performance import ClassPerformance, Joined

    report = window(wine, wine.unseen, "wine")
    recall = Interval(value=0.123, low=0.1, high=0.15)
    joined = Joined(
        labelled=9999,
        per_class={
            "class_0": ClassPerformance(support=9, recall=recall, precision=None, roc_auc=None)
        },
    )
    report = report.model_copy(
        update={"performance": report.performance.model_copy(update={"every_label": joined})}
    )
    # when exposed
    text = prometheus.exposition([report])
    # then each class's metric is the join's, and the labelled rows its count
    assert re.search(
        r'^flywheel_monitor_class_metric\{[^}]*class="class_0"[^}]*metric="recall"[^}]*\} 0\.123$',
        text,
        re.M,
    ), text
    assert not re.search(r'class_metric\{[^}]*class="class_1"', text)
    assert re.search(r"^flywheel_monitor_labelled_rows\{[^}]*\} 9999(\.0)?$", text, re.M)
