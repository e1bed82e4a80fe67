"""Jinja filters shared by every page: money, durations, dates."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from core.db import utcnow
from core.pricing import format_money


def duration(seconds: float | int | None) -> str:
    """Describe a duration in words a student reads at a glance ("1 h 20 min", "45 s")."""
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(moment: datetime | None) -> str:
    """Describe how long ago ``moment`` was."""
    if moment is None:
        return "never"
    return f"{duration((utcnow() - moment).total_seconds())} ago"


def when(moment: datetime | None) -> str:
    """Format an aware datetime in UTC for tables."""
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def money(cents: int | None, currency: str = "usd") -> str:
    """Format cents as money."""
    return "—" if cents is None else format_money(cents, currency)


def init_app(app: Flask) -> None:
    """Register the filters."""
    app.add_template_filter(duration)
    app.add_template_filter(ago)
    app.add_template_filter(when)
    app.add_template_filter(money)
