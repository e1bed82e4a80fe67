"""Small server-rendered SVG charts (no JavaScript, no inline styles: CSP-friendly)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from markupsafe import Markup
from markupsafe import escape

WIDTH = 320
HEIGHT = 120
PAD_LEFT = 28
PAD_RIGHT = 8
PAD_TOP = 10
PAD_BOTTOM = 20


def _x(index: int, count: int) -> float:
    span = WIDTH - PAD_LEFT - PAD_RIGHT
    return PAD_LEFT + (span * index / (count - 1) if count > 1 else span / 2)


def _y(value: float, top: float) -> float:
    span = HEIGHT - PAD_TOP - PAD_BOTTOM
    return PAD_TOP + span * (1 - min(max(value, 0.0), top) / top)


def _polyline(points: list[tuple[float, float] | None], css: str) -> str:
    """Draw runs of consecutive points; a None (no data that day) breaks the line."""
    out, run = [], []
    for point in [*points, None]:
        if point is None:
            if len(run) == 1:
                x, y = run[0]
                out.append(f'<circle class="{css}" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>')
            elif run:
                coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                out.append(f'<polyline class="{css}" points="{coords}"/>')
            run = []
        else:
            run.append(point)
    return "".join(out)


def warmup_chart(
    days: Sequence[date],
    health: Sequence[float | None],
    reply_rate: Sequence[float | None],
    *,
    title: str,
) -> Markup:
    """Health (0-100) and reply rate (%) per day as an accessible inline SVG."""
    count = len(days)
    label = escape(title)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">',
        f"<title>{label}</title>",
    ]
    for tick in (0, 50, 100):
        y = _y(tick, 100)
        parts.append(
            f'<line class="chart-grid" x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH - PAD_RIGHT}" y2="{y:.1f}"/>'
            f'<text class="chart-axis" x="{PAD_LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{tick}</text>'
        )
    if count == 0:
        parts.append(
            f'<text class="chart-empty" x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle">'
            "No warmup data yet</text></svg>"
        )
        return Markup("".join(parts))
    if health[-1] is not None and count > 1:
        # Shade the area under the health line to make the trend readable at a glance.
        area = [(_x(i, count), _y(v, 100)) for i, v in enumerate(health) if v is not None]
        if len(area) > 1:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in area)
            base = _y(0, 100)
            parts.append(
                f'<polygon class="chart-area" points="{area[0][0]:.1f},{base:.1f} {coords} {area[-1][0]:.1f},{base:.1f}"/>'
            )
    parts.append(
        _polyline(
            [None if v is None else (_x(i, count), _y(v, 100)) for i, v in enumerate(health)],
            "chart-health",
        )
    )
    parts.append(
        _polyline(
            [None if v is None else (_x(i, count), _y(v, 100)) for i, v in enumerate(reply_rate)],
            "chart-reply",
        )
    )
    first, last = days[0], days[-1]
    parts.append(
        f'<text class="chart-axis" x="{PAD_LEFT}" y="{HEIGHT - 5}">{first:%d %b}</text>'
        f'<text class="chart-axis" x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 5}" text-anchor="end">{last:%d %b}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(
    values: Sequence[float | None], *, top: float | None = None, title: str = ""
) -> Markup:
    """A tiny line for tables (e.g. daily sends), scaled to its own maximum."""
    width, height = 90, 24
    known = [v for v in values if v is not None]
    top = top or (max(known) if known else 1.0) or 1.0
    count = len(values)
    points = []
    for i, v in enumerate(values):
        if v is None:
            continue
        x = 2 + (width - 4) * (i / (count - 1) if count > 1 else 0.5)
        y = height - 2 - (height - 4) * min(v, top) / top
        points.append(f"{x:.1f},{y:.1f}")
    label = escape(title)
    line = f'<polyline class="spark" points="{" ".join(points)}"/>' if len(points) > 1 else ""
    return Markup(
        f'<svg class="sparkline" viewBox="0 0 {width} {height}" role="img" aria-label="{label}">'
        f"<title>{label}</title>{line}</svg>"
    )
