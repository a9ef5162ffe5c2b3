"""The UI's own plots, drawn as inline SVG: the alias timeline and a rollout's looks.

Small and drawn in microseconds, with no charting library to load; the monitoring plots are
the HTML report's own (`flywheel.monitoring.charts`, also SVG).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

# One colour per version, cycled: Okabe-Ito, readable by the colour-blind.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
STATUS = {"pass": "#009E73", "fail": "#D55E00", "rollback": "#D55E00", "pending": "#777777"}


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def timeline(spans: Sequence[tuple[str, str, datetime, datetime]], lanes: Sequence[str]) -> str:
    """Which version held each lane (alias) when: one bar per (lane, version, start, end)."""
    width, left, lane_height = 900, 90, 34
    height = 30 + lane_height * len(lanes)
    start = min(s[2] for s in spans)
    end = max(s[3] for s in spans)
    total = max((end - start).total_seconds(), 1.0)

    def x(moment: datetime) -> float:
        return left + (width - left - 10) * (moment - start).total_seconds() / total

    versions = sorted({s[1] for s in spans}, key=lambda v: int(v.lstrip("v") or 0))
    colour = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(versions)}
    body = []
    for row, lane in enumerate(lanes):
        y = 10 + row * lane_height
        body.append(
            f'<text x="0" y="{y + 18}" font-size="13">{escape(lane)}</text>'
            f'<line x1="{left}" x2="{width - 10}" y1="{y + 26}" y2="{y + 26}" stroke="#ddd"/>'
        )
        for name, version, begin, finish in spans:
            if name != lane:
                continue
            x0, x1 = x(begin), x(finish)
            label = f"{lane}: {version} from {begin:%Y-%m-%d %H:%M} to {finish:%Y-%m-%d %H:%M}"
            body.append(
                f'<g class="span" data-alias="{escape(lane)}" data-version="{escape(version)}">'
                f"<title>{escape(label)}</title>"
                f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1.5):.1f}" height="22" '
                f'fill="{colour[version]}" stroke="#fff"/>'
            )
            if x1 - x0 > 24:
                body.append(
                    f'<text x="{x0 + 4:.1f}" y="{y + 19}" font-size="11" fill="#000">'
                    f"{escape(version)}</text>"
                )
            body.append("</g>")
    axis = 10 + lane_height * len(lanes) + 12
    body.append(
        f'<text x="{left}" y="{axis}" font-size="11">{start:%Y-%m-%d %H:%M}</text>'
        f'<text x="{width - 10}" y="{axis}" font-size="11" text-anchor="end">'
        f"{end:%Y-%m-%d %H:%M}</text>"
    )
    return _svg(width, height + 6, "alias timeline", body)


def look_plot(
    name: str,
    points: Sequence[tuple[int, float | None, float | None, str]],
    boundaries: Sequence[int] = (),
) -> str:
    """One check over a rollout's looks: what each look measured (coloured by its status)
    against the check's threshold; dashed lines where a step began."""
    width, height, left, bottom, top = 420, 180, 48, 24, 22
    measured = [(n, m, s) for n, m, _, s in points if m is not None and math.isfinite(m)]
    thresholds = [t for _, _, t, _ in points if t is not None and math.isfinite(t)]
    values = [m for _, m, _ in measured] + thresholds
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    pad = 0.05 * (high - low)
    # A measure that cannot go below zero (a rate, a latency, a distance) is not drawn as if.
    low, high = (max(0.0, low - pad) if low >= 0 else low - pad), high + pad
    looks = max((n for n, *_ in points), default=1)

    def x(number: float) -> float:
        return left + (width - left - 10) * ((number - 1) / max(looks - 1, 1))

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - (value - low) / (high - low))

    body = [
        f'<text x="{left}" y="14" font-size="12" font-weight="bold">{escape(name)}</text>',
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="#999"/>',
        f'<line x1="{left}" x2="{width - 10}" y1="{height - bottom}" y2="{height - bottom}" '
        'stroke="#999"/>',
        f'<text x="{left - 4}" y="{y(high) + 10:.1f}" font-size="10" text-anchor="end">'
        f"{high:.3g}</text>",
        f'<text x="{left - 4}" y="{y(low):.1f}" font-size="10" text-anchor="end">{low:.3g}</text>',
        f'<text x="{width - 10}" y="{height - 6}" font-size="10" text-anchor="end">'
        f"look {looks}</text>",
        f'<text x="{left}" y="{height - 6}" font-size="10">look 1</text>',
    ]
    for number in boundaries:
        body.append(
            f'<line x1="{x(number - 0.5):.1f}" x2="{x(number - 0.5):.1f}" y1="{top}" '
            f'y2="{height - bottom}" stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    if thresholds:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{x(n):.1f},{y(t):.1f}"
            for i, (n, t) in enumerate((n, t) for n, _, t, _ in points if t is not None)
        )
        body.append(
            f'<path d="{path}" fill="none" stroke="#D55E00" stroke-dasharray="6 3">'
            "<title>threshold</title></path>"
        )
    if measured:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{x(n):.1f},{y(m):.1f}" for i, (n, m, _) in enumerate(measured)
        )
        body.append(f'<path d="{path}" fill="none" stroke="#0072B2"/>')
        for number, value, status in measured:
            body.append(
                f'<circle class="look" cx="{x(number):.1f}" cy="{y(value):.1f}" r="3" '
                f'fill="{STATUS.get(status, "#0072B2")}"><title>look {number}: {value:.4g} '
                f"({escape(status)})</title></circle>"
            )
    return _svg(width, height, f"{name} at each look against its threshold", body)
