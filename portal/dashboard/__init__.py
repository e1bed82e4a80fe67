"""Dashboard blueprint: home, live progress, dashboard, upgrade and billing for students."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from portal.dashboard import views  # noqa: E402,F401  (registers the routes on bp)
