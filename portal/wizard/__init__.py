"""Wizard blueprint: package, domains, mailboxes, review and pay."""

from __future__ import annotations

from flask import Blueprint

from core.domains import MAX_BRAND_LENGTH

bp = Blueprint("wizard", __name__, url_prefix="/wizard")
# The brand field's maxlength (the wizard's and the upgrade's domain step share the template).
bp.add_app_template_global(MAX_BRAND_LENGTH, "max_brand_length")

# Imported for their side effect: each registers its routes on bp.
from portal.wizard import checkout  # noqa: E402,F401
from portal.wizard import views  # noqa: E402,F401
