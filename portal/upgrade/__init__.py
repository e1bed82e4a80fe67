"""Upgrade blueprint: a larger package in three steps (package, new domains, review and pay)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("upgrade", __name__, url_prefix="/upgrade")

# Imported for their side effect: each registers its routes on bp.
from portal.upgrade import views  # noqa: E402,F401
