"""Admin blueprint: tiers, the cohort, provision detail and its actions, the audit log."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Each module registers its routes on bp: one module per resource.
from portal.admin import accounts  # noqa: E402,F401
from portal.admin import audit  # noqa: E402,F401
from portal.admin import capacity  # noqa: E402,F401
from portal.admin import cohort  # noqa: E402,F401
from portal.admin import cohorts  # noqa: E402,F401
from portal.admin import provisions  # noqa: E402,F401
from portal.admin import replacements  # noqa: E402,F401
from portal.admin import tiers  # noqa: E402,F401
