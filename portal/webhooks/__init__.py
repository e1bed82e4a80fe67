"""Webhooks blueprint: Stripe (required) and Zapmail (optional), both signature-verified."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

from portal.webhooks import views  # noqa: E402,F401  (registers the routes on bp)
