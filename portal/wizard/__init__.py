"""Wizard blueprint: package, domains, mailboxes, review and pay."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("wizard", __name__, url_prefix="/wizard")

from portal.wizard import views  # noqa: E402,F401  (registers the routes on bp)
