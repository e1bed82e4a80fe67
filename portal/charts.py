"""Small server-rendered SVG charts (no JavaScript, no inline styles: CSP-friendly).

During the first two weeks of warmup a chart spans the whole warmup period: the expected health
ramp (core/health.py's allowance for young mailboxes) up to the 14-day target, with the days
measured so far on it, so day one is a ramp and a target rather than a lone dot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from datetime import timedelta

from markupsafe import Markup
from markupsafe import escape

from core.health import HEALTHY_MIN
from core.health import MIN_WARMUP_DAYS
from core.health import early_allowance


@dataclass(frozen=True)
class Frame:
    """A chart's size in SVG units and its padding around the plot."""

    width: int = 320
    height: int = 120
    left: int = 28
    right: int = 8
    top: int = 12
    bottom: int = 20

    def x(self, offset: float, span: float) -> float:
        """Where ``offset`` days into a ``span``-day axis falls (the middle for a single day)."""
        inner = self.width - self.left - self.right
        return self.left + (inner * offset / span if span > 0 else inner / 2)

    def y(self, value: float) -> float:
        """Where a 0-100 value falls."""
        inner = self.height - self.top - self.bottom
        return self.top + inner * (1 - min(max(value, 0.0), 100.0) / 100.0)


CARD = Frame()
# The mailbox page's chart: wider and taller, the same text size.
LARGE = Frame(width=640, height=220)


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


def _ramp(frame: Frame, span: int) -> str:
    """The expected health of a young mailbox per warmup day, and the 14-day target line."""
    points = " ".join(
        f"{frame.x(day, span):.1f},{frame.y(HEALTHY_MIN - early_allowance(day)):.1f}"
        for day in range(MIN_WARMUP_DAYS + 1)
    )
    target = frame.x(MIN_WARMUP_DAYS, span)
    return (
        f'<polyline class="chart-ramp" points="{points}"/>'
        f'<line class="chart-target" x1="{target:.1f}" y1="{frame.top - 4}" x2="{target:.1f}" '
        f'y2="{frame.height - frame.bottom}"/>'
        f'<text class="chart-axis" x="{target - 3:.1f}" y="{frame.top + 4}" text-anchor="end">'
        f"{MIN_WARMUP_DAYS}-day target</text>"
    )


def warmup_chart(
    days: Sequence[date],
    health: Sequence[float | None],
    reply_rate: Sequence[float | None],
    *,
    title: str,
    ramp_from: date | None = None,
    today: date | None = None,
    frame: Frame = CARD,
) -> Markup:
    """Health (0-100) and warmup reply rate (%) per day as an accessible inline SVG.

    With ``ramp_from`` (the day warmup started) before the 14-day target is reached on
    ``today``, the axis runs from that day to the target and the expected ramp is drawn.
    """
    label = escape(title)
    parts = [
        f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" role="img" aria-label="{label}">',
        f"<title>{label}</title>",
    ]
    for tick in (0, 50, 100):
        y = frame.y(tick)
        parts.append(
            f'<line class="chart-grid" x1="{frame.left}" y1="{y:.1f}" x2="{frame.width - frame.right}" y2="{y:.1f}"/>'
            f'<text class="chart-axis" x="{frame.left - 4}" y="{y + 3:.1f}" text-anchor="end">{tick}</text>'
        )
    young = (
        ramp_from is not None
        and today is not None
        and (today - ramp_from).days < MIN_WARMUP_DAYS
        and all(day >= ramp_from for day in days)
    )
    if young:
        assert ramp_from is not None
        first, last = ramp_from, ramp_from + timedelta(days=MIN_WARMUP_DAYS)
        parts.append(_ramp(frame, MIN_WARMUP_DAYS))
    elif days:
        first, last = days[0], days[-1]
    else:
        parts.append(
            f'<text class="chart-empty" x="{frame.width / 2:.0f}" y="{frame.height / 2:.0f}" '
            'text-anchor="middle">No warmup data yet</text></svg>'
        )
        return Markup("".join(parts))
    span = (last - first).days
    xs = [frame.x((day - first).days, span) for day in days]
    if not days:
        parts.append(
            f'<text class="chart-empty" x="{frame.width / 2:.0f}" y="{frame.y(20):.0f}" '
            'text-anchor="middle">First numbers soon</text>'
        )
    elif health[-1] is not None and len(days) > 1:
        # Shade the area under the health line to make the trend readable at a glance.
        area = [(x, frame.y(v)) for x, v in zip(xs, health, strict=True) if v is not None]
        if len(area) > 1:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in area)
            base = frame.y(0)
            parts.append(
                f'<polygon class="chart-area" points="{area[0][0]:.1f},{base:.1f} {coords} {area[-1][0]:.1f},{base:.1f}"/>'
            )
    for values, css in ((health, "chart-health"), (reply_rate, "chart-reply")):
        parts.append(
            _polyline(
                [None if v is None else (x, frame.y(v)) for x, v in zip(xs, values, strict=True)],
                css,
            )
        )
    bottom = frame.height - 5
    parts.append(f'<text class="chart-axis" x="{frame.left}" y="{bottom}">{first:%d %b}</text>')
    if last != first:
        parts.append(
            f'<text class="chart-axis" x="{frame.width - frame.right}" y="{bottom}" '
            f'text-anchor="end">{last:%d %b}</text>'
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
