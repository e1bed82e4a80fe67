"""Wizard blueprint: package, domains, mailboxes, review and pay."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("wizard", __name__, url_prefix="/wizard")

# Imported for their side effect: each registers its routes on bp.
from portal.wizard import checkout  # noqa: E402,F401
from portal.wizard import views  # noqa: E402,F401
