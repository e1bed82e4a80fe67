"""Admin blueprint: tiers, the cohort, provision detail with retry, cancel and refund."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from portal.admin import views  # noqa: E402,F401  (registers the routes on bp)
