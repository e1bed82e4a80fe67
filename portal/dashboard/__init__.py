"""Dashboard blueprint: the student's pages after checkout (home, progress, dashboard, billing).

Each module registers one resource's routes on ``bp``; the upgrade has its own blueprint
(portal/upgrade).
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__)

# Imported for their side effect: each registers its routes on bp.
from portal.dashboard import billing_portal  # noqa: E402,F401
from portal.dashboard import dns  # noqa: E402,F401
from portal.dashboard import forwarding  # noqa: E402,F401
from portal.dashboard import home  # noqa: E402,F401
from portal.dashboard import invoices  # noqa: E402,F401
from portal.dashboard import mailboxes  # noqa: E402,F401
from portal.dashboard import overview  # noqa: E402,F401
from portal.dashboard import profile  # noqa: E402,F401
from portal.dashboard import progress_page  # noqa: E402,F401
from portal.dashboard import replace  # noqa: E402,F401
from portal.dashboard import replacement_progress  # noqa: E402,F401
from portal.dashboard import replacement_states  # noqa: E402,F401
