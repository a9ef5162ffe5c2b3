"""Prometheus' text exposition format (version 0.0.4), written by hand.

It is a few lines, so Flywheel writes it rather than depend on prometheus_client:
the monitor's window metrics, the rollout controller's and the trigger engine's
all come out through `render`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Metric:
    """What a metric name means: its HELP text and TYPE."""

    help: str
    kind: Literal["gauge", "counter"] = "gauge"


@dataclass(frozen=True)
class Sample:
    """One series' value; None (or NaN) for a value that is not known, which is left out."""

    name: str
    labels: Mapping[str, str]
    value: float | None


def labels(values: Mapping[str, str]) -> str:
    """`k="v",...` with the format's escapes."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{k}="{escape(v)}"' for k, v in values.items())


def number(value: float) -> str:
    """A sample value as the format writes it."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def render(samples: Iterable[Sample], metrics: Mapping[str, Metric]) -> str:
    """The samples as text: each metric's HELP and TYPE once, then its series, metrics in
    the order they first appear. Unknown values are left out, never exported as a number;
    a metric without a known value is not declared."""
    series: dict[str, list[str]] = {}
    for sample in samples:
        if sample.value is None or math.isnan(float(sample.value)):
            continue
        text = number(float(sample.value))
        series.setdefault(sample.name, []).append(
            f"{sample.name}{{{labels(sample.labels)}}} {text}"
        )
    lines: list[str] = []
    for name, values in series.items():
        metric = metrics[name]
        lines += [f"# HELP {name} {metric.help}", f"# TYPE {name} {metric.kind}", *values]
    return "\n".join(lines) + "\n"
