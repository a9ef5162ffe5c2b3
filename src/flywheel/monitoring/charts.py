"""The monitoring report's plots over time, drawn as SVG text.

A look writes its report every time it runs: drawn here, its five plots take milliseconds and
load no charting library (matplotlib's import and drawing were a second of every look).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Literal

# Okabe-Ito, readable by the colour-blind; a series takes the next.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999")
WIDTH, HEIGHT = 540, 324
_LEFT, _TOP, _BOTTOM = 62, 30, 70
_DASHES = {"solid": "", "dashed": ' stroke-dasharray="6 4"', "dotted": ' stroke-dasharray="2 3"'}

Marker = Literal["o", "x", ".", ""]
Dash = Literal["solid", "dashed", "dotted"]


@dataclass(frozen=True)
class Series:
    """A labelled line over time, on the left axis or the right one, with optional error bars
    (below and above each value)."""

    label: str
    points: tuple[tuple[datetime, float], ...]
    marker: Marker = "o"
    dash: Dash = "solid"
    right: bool = False
    errors: tuple[tuple[float, float], ...] = ()
    colour: str = ""
    width: float = 1.5


@dataclass
class Chart:
    """One plot: a title, a value axis (and an optional second one on the right), its series
    and horizontal reference lines."""

    title: str
    ylabel: str
    right_label: str = ""
    ylim: tuple[float, float] | None = None
    series: list[Series] = field(default_factory=list)
    lines: list[tuple[float, str]] = field(default_factory=list)

    def add(self, series: Series) -> None:
        """Add a series, with the next colour unless it names one."""
        if not series.colour:
            colour = PALETTE[len(self.series) % len(PALETTE)]
            series = Series(**{**series.__dict__, "colour": colour})
        self.series.append(series)

    def svg(self) -> str:
        """The plot as a standalone SVG document."""
        right = any(s.right for s in self.series)
        plot_right = WIDTH - (62 if right else 16)
        plot_bottom = HEIGHT - _BOTTOM
        times = sorted({t for s in self.series for t, _ in s.points})
        x = _time_axis(times, _LEFT, plot_right)
        body = [
            f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_right - _LEFT}" '
            f'height="{plot_bottom - _TOP}" fill="#fff" stroke="#333"/>',
            _text(WIDTH / 2, 18, self.title, size=12, anchor="middle"),
        ]
        left = self._axis(False, plot_bottom)
        body += _value_ticks(left, _LEFT, plot_right, False)
        body.append(_text(14, (_TOP + plot_bottom) / 2, self.ylabel, size=10, rotate=-90))
        if right:
            scale = self._axis(True, plot_bottom)
            body += _value_ticks(scale, _LEFT, plot_right, True)
            body.append(
                _text(WIDTH - 10, (_TOP + plot_bottom) / 2, self.right_label, size=10, rotate=90)
            )
        for t in _thin(times, 8):
            px = x(t.timestamp())
            body.append(_line(px, plot_bottom, px, plot_bottom + 4, "#333"))
            body.append(
                _text(px, plot_bottom + 14, f"{t:%Y-%m-%d %H:%M}", size=9, anchor="end", rotate=-30)
            )
        for value, label in self.lines:
            py = left(value)
            body.append(
                f'<line x1="{_LEFT}" x2="{plot_right}" y1="{py:.1f}" y2="{py:.1f}" '
                f'stroke="#808080" stroke-width="1.2"{_DASHES["dotted"]}><title>{escape(label)}'
                "</title></line>"
            )
        for s in self.series:
            body += _draw(s, x, self._axis(s.right, plot_bottom))
        body += self._legend(plot_right)
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(self.title)}" '
            f'font-family="DejaVu Sans, sans-serif"><title>{escape(self.title)}</title>'
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>{"".join(body)}</svg>'
        )

    def _axis(self, right: bool, bottom: float) -> _Scale:
        values = [
            bound
            for s in self.series
            if s.right == right
            for i, (_, v) in enumerate(s.points)
            for bound in ((v - s.errors[i][0], v + s.errors[i][1]) if s.errors else (v,))
        ]
        if not right:
            values += [v for v, _ in self.lines]
        if self.ylim is not None and not right:
            low, high = self.ylim
        else:
            low, high = (min(values), max(values)) if values else (0.0, 1.0)
            pad = (high - low) * 0.05 or (abs(high) * 0.05 or 0.5)
            low, high = low - pad, high + pad
        return _Scale(low, high, bottom, _TOP)

    def _legend(self, plot_right: float) -> list[str]:
        entries = [(s.label, s.colour, s.dash, s.marker) for s in self.series] + [
            (label, "#808080", "dotted", "") for _, label in self.lines
        ]
        if not entries:
            return []
        longest = max(len(label) for label, *_ in entries)
        width = 30 + 5.2 * longest
        left = plot_right - width - 4
        out = [
            f'<rect x="{left:.1f}" y="{_TOP + 4}" width="{width:.1f}" '
            f'height="{6 + 12 * len(entries)}" fill="#fff" fill-opacity="0.8" stroke="#ccc"/>'
        ]
        for i, (label, colour, dash, marker) in enumerate(entries):
            y = _TOP + 13 + 12 * i
            out.append(
                f'<line x1="{left + 4:.1f}" x2="{left + 22:.1f}" y1="{y}" y2="{y}" '
                f'stroke="{colour}" stroke-width="1.5"{_DASHES[dash]}/>'
            )
            out += _marker(marker, left + 13, y, colour)
            out.append(_text(left + 26, y + 3, label, size=8))
        return out


@dataclass(frozen=True)
class _Scale:
    """Values to pixels: `low` at pixel `start`, `high` at `end` (a value axis runs upwards,
    from the bottom; time runs from the left)."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return self.start + (value - self.low) / span * (self.end - self.start)


def _time_axis(times: Sequence[datetime], left: float, right: float) -> _Scale:
    """Unix seconds to pixels, the first and last time 5% inside the plot."""
    if not times:
        return _Scale(0.0, 1.0, left, right)
    first, last = times[0].timestamp(), times[-1].timestamp()
    pad = (last - first) * 0.05 or 3600.0
    return _Scale(first - pad, last + pad, left, right)


def _value_ticks(scale: _Scale, left: float, right: float, on_right: bool) -> list[str]:
    step = _nice_step((scale.high - scale.low) / 5)
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    out = []
    tick = math.ceil(scale.low / step) * step
    while tick <= scale.high + step * 1e-9:
        y = scale(tick)
        edge = right if on_right else left
        out.append(_line(edge, y, edge + (4 if on_right else -4), y, "#333"))
        if not on_right:
            out.append(_line(left, y, right, y, "#eee"))
        text = f"{tick:.{decimals}f}"
        out.append(
            _text(edge + 6, y + 3, text, size=9)
            if on_right
            else _text(edge - 6, y + 3, text, size=9, anchor="end")
        )
        tick += step
    return out


def _nice_step(rough: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least `rough`."""
    if rough <= 0 or not math.isfinite(rough):
        return 1.0
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough)


def _thin(times: Sequence[datetime], most: int) -> list[datetime]:
    """At most `most` of the times, evenly spread, the first and last kept."""
    if len(times) <= most:
        return list(times)
    every = math.ceil(len(times) / most)
    return [*times[::every][:-1], times[-1]]


def _draw(series: Series, x: _Scale, y: _Scale) -> list[str]:
    colour = series.colour
    points = [(x(t.timestamp()), y(v)) for t, v in series.points]
    out = [f'<g class="series"><title>{escape(series.label)}</title>']
    if len(points) > 1:
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" '
            f'stroke-width="{series.width}"{_DASHES[series.dash]}/>'
        )
    for i, (px, py) in enumerate(points):
        if series.errors:
            value = series.points[i][1]
            below, above = series.errors[i]
            top, bottom = y(value + above), y(value - below)
            out.append(_line(px, top, px, bottom, colour))
            out += [_line(px - 3, end, px + 3, end, colour) for end in (top, bottom)]
        out += _marker(series.marker, px, py, colour)
    out.append("</g>")
    return out


def _marker(marker: Marker, x: float, y: float, colour: str) -> list[str]:
    if marker == "o":
        return [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>']
    if marker == ".":
        return [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.8" fill="{colour}"/>']
    if marker == "x":
        return [
            _line(x - 3, y - 3, x + 3, y + 3, colour),
            _line(x - 3, y + 3, x + 3, y - 3, colour),
        ]
    return []


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        'stroke-width="1"/>'
    )


def _text(
    x: float, y: float, text: str, *, size: int, anchor: str = "start", rotate: int = 0
) -> str:
    turn = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
    if rotate == -90 or rotate == 90:
        anchor = "middle"
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{turn}>'
        f"{escape(text)}</text>"
    )
