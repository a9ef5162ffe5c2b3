"""Prometheus' text format, as Flywheel writes it by hand."""

from __future__ import annotations

import math

from flywheel.exposition import Metric, Sample, render

METRICS = {"a_total": Metric("Things counted", "counter"), "b": Metric("A level")}


def test_each_metric_is_declared_once_before_its_series_in_the_order_first_seen() -> None:
    # given samples of two metrics, interleaved
    samples = [
        Sample("b", {"x": "1"}, 2.5),
        Sample("a_total", {"x": "1"}, 3),
        Sample("b", {"x": "2"}, -math.inf),
    ]
    # when rendered
    text = render(samples, METRICS)
    # then each metric's HELP and TYPE come once, before its series
    assert text.splitlines() == [
        "# HELP b A level",
        "# TYPE b gauge",
        'b{x="1"} 2.5',
        'b{x="2"} -Inf',
        "# HELP a_total Things counted",
        "# TYPE a_total counter",
        'a_total{x="1"} 3.0',
    ]


def test_unknown_values_are_left_out_and_label_values_escaped() -> None:
    text = render(
        [
            Sample("b", {"x": 'say "hi"\\\n'}, 1),
            Sample("b", {}, None),
            Sample("a_total", {}, math.nan),
        ],
        METRICS,
    )
    assert text.splitlines() == [
        "# HELP b A level",
        "# TYPE b gauge",
        'b{x="say \\"hi\\"\\\\\\n"} 1.0',
    ]
