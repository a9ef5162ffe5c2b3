"""The UI's own plots: the alias timeline and a check over a rollout's looks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from flywheel.ui import svg

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_timeline_has_a_bar_per_revision_and_parses() -> None:
    spans = [
        ("production", "v1", T0, T0 + timedelta(days=2)),
        ("production", "v2", T0 + timedelta(days=2), T0 + timedelta(days=5)),
        ("candidate", "v2", T0 + timedelta(days=1), T0 + timedelta(days=5)),
    ]
    drawn = svg.timeline(spans, ["production", "candidate"])
    ElementTree.fromstring(drawn)  # well-formed
    bars = re.findall(r'data-alias="(\w+)" data-version="(v\d+)"', drawn)
    assert bars == [("production", "v1"), ("production", "v2"), ("candidate", "v2")]
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)"', drawn)]
    assert widths[1] == max(widths[:2]) and abs(widths[1] / widths[0] - 1.5) < 0.01


def test_a_look_plot_draws_the_measured_points_and_the_threshold() -> None:
    points = [(1, None, 0.01, "pending"), (2, 0.002, 0.01, "pass"), (3, 0.05, 0.01, "fail")]
    drawn = svg.look_plot("error <rate>", points, boundaries=[3])
    ElementTree.fromstring(drawn)
    assert drawn.count('class="look"') == 2  # a look that measured nothing has no point
    assert "error &lt;rate&gt;" in drawn and "threshold" in drawn
    assert 'stroke-dasharray="4 3"' in drawn  # the new step
