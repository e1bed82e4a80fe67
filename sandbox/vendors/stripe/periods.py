"""Billing-period arithmetic: calendar intervals and per-second proration (pure functions)."""

from __future__ import annotations

import calendar
from datetime import UTC
from datetime import datetime
from datetime import timedelta


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    """Return ts moved forward by count intervals (day, week, month, year), in UTC."""
    when = datetime.fromtimestamp(ts, tz=UTC)
    if interval == "day":
        return int((when + timedelta(days=count)).timestamp())
    if interval == "week":
        return int((when + timedelta(weeks=count)).timestamp())
    months = count * (12 if interval == "year" else 1)
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    # Stripe keeps the anchor day, clamped to the month's last day (Jan 31 -> Feb 28).
    day = min(when.day, calendar.monthrange(year, month)[1])
    return int(when.replace(year=year, month=month, day=day).timestamp())


def remaining_fraction(start: int, end: int, at: int) -> float:
    """Share of the period [start, end) still unused at time `at`, between 0 and 1."""
    if end <= start:
        return 0.0
    return min(1.0, max(0.0, (end - at) / (end - start)))


def prorate(unit_amount: int, quantity: int, fraction: float) -> int:
    """Amount for `fraction` of a period at unit_amount x quantity, rounded to the cent."""
    return round(unit_amount * quantity * fraction)


def day_label(ts: int) -> str:
    """Format a timestamp the way Stripe's proration descriptions do (e.g. 26 Nov 2026)."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%d %b %Y").lstrip("0")
