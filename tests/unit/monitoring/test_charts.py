"""The report's plots as SVG: well-formed, every series and line drawn where its values put it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from flywheel.monitoring.charts import HEIGHT, WIDTH, Chart, Series, _nice_step

SVG = "{http://www.w3.org/2000/svg}"
START = datetime(2026, 3, 2, tzinfo=UTC)


def _days(*values: float) -> tuple[tuple[datetime, float], ...]:
    return tuple((START + timedelta(days=i), v) for i, v in enumerate(values))


def _parsed(chart: Chart) -> ET.Element:
    return ET.fromstring(chart.svg().split("\n", 1)[1])


def _points(polyline: ET.Element) -> list[tuple[float, float]]:
    pairs = (p.split(",") for p in (polyline.get("points") or "").split())
    return [(float(x), float(y)) for x, y in pairs]


def test_a_series_runs_left_to_right_in_time_and_up_with_its_values() -> None:
    chart = Chart(title="PSI <by feature>", ylabel="PSI")
    chart.add(Series("income", _days(0.1, 0.3, 0.2)))
    root = _parsed(chart)
    assert root.get("viewBox") == f"0 0 {WIDTH} {HEIGHT}"
    assert root.get("aria-label") == "PSI <by feature>"  # escaped in the text, read back whole
    (line,) = root.iter(f"{SVG}polyline")
    xs, ys = zip(*_points(line), strict=True)
    assert xs[0] < xs[1] < xs[2]
    assert ys[1] < ys[2] < ys[0]  # 0.3 highest on the page, 0.1 lowest
    assert len(list(root.iter(f"{SVG}circle"))) == 3 + 1  # its markers, and the legend's


def test_each_series_takes_the_next_colour_unless_it_names_one() -> None:
    chart = Chart(title="t", ylabel="y")
    chart.add(Series("a", _days(1, 2)))
    chart.add(Series("b", _days(2, 1), colour="#123456"))
    chart.add(Series("c", _days(3, 1)))
    assert [s.colour for s in chart.series] == ["#0072B2", "#123456", "#009E73"]


def test_a_reference_line_error_bars_and_a_right_axis_are_drawn_and_named() -> None:
    chart = Chart(title="accuracy", ylabel="accuracy", right_label="rows")
    chart.add(Series("estimated", _days(0.8, 0.7), errors=((0.05, 0.05), (0.1, 0.02))))
    chart.add(Series("rows", _days(100, 4000), right=True, dash="dashed", marker="x"))
    chart.lines.append((0.75, "floor"))
    root = _parsed(chart)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"estimated", "rows", "floor"} <= set(texts)  # the legend
    assert "rows" in texts and "accuracy" in texts  # both axis labels
    floor = [ln for ln in root.iter(f"{SVG}line") if ln.findtext(f"{SVG}title") == "floor"]
    assert len(floor) == 1 and floor[0].get("stroke-dasharray") == "2 3"
    # each error bar: a vertical line and its two caps, in the series' colour
    bars = [
        ln
        for ln in root.iter(f"{SVG}line")
        if ln.get("stroke") == "#0072B2" and ln.get("stroke-width") == "1"
    ]
    assert len(bars) == 2 * 3
    dashed = [p for p in root.iter(f"{SVG}polyline") if p.get("stroke-dasharray") == "6 4"]
    assert len(dashed) == 1


def test_ylim_fixes_the_left_axis() -> None:
    low = Chart(title="t", ylabel="y", ylim=(0.0, 1.0))
    low.add(Series("a", _days(0.5, 0.5)))
    high = Chart(title="t", ylabel="y", ylim=(0.0, 2.0))
    high.add(Series("a", _days(0.5, 0.5)))
    (at_one,) = _parsed(low).iter(f"{SVG}polyline")
    (at_two,) = _parsed(high).iter(f"{SVG}polyline")
    assert _points(at_one)[0][1] < _points(at_two)[0][1]  # 0.5 of 1 sits higher than of 2


def test_a_single_point_and_an_empty_chart_are_still_drawn() -> None:
    one = Chart(title="t", ylabel="y")
    one.add(Series("a", _days(3.0)))
    root = _parsed(one)
    assert not list(root.iter(f"{SVG}polyline")) and list(root.iter(f"{SVG}circle"))
    assert _parsed(Chart(title="nothing yet", ylabel="y")).get("aria-label") == "nothing yet"


@pytest.mark.parametrize(
    ("rough", "step"), [(0.13, 0.2), (0.2, 0.2), (2.1, 2.5), (7, 10), (0, 1.0), (-3, 1.0)]
)
def test_ticks_step_by_one_two_two_and_a_half_or_five_times_a_power_of_ten(
    rough: float, step: float
) -> None:
    assert _nice_step(rough) == pytest.approx(step)
