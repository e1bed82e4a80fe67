"""Auth blueprint: sign in and sign out."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/auth")

from portal.auth import views  # noqa: E402,F401  (registers the routes on bp)
