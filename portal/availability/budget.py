"""The call-budget ledger: every Zapmail availability call counted in ``availability_calls``.

Zapmail allows 100 availability checks per 30 minutes for the whole operator account; the portal
stops at its share (``AvailabilityConfig.budget``) or earlier, until the ``blocked_until`` a 429's
Retry-After set.
"""

from __future__ import annotations

import math
from datetime import datetime
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import AvailabilityCall
from portal.availability.config import AvailabilityConfig


def budget_left(db: Session, config: AvailabilityConfig) -> tuple[int, int]:
    """Return (calls left in the window, seconds until calls are allowed again)."""
    now = utcnow()
    since = now - timedelta(seconds=config.window_s)
    used, oldest = db.execute(
        select(func.count(), func.min(AvailabilityCall.called_at)).where(
            AvailabilityCall.called_at > since
        )
    ).one()
    blocked_until = db.scalar(
        select(func.max(AvailabilityCall.blocked_until)).where(
            AvailabilityCall.blocked_until.is_not(None)
        )
    )
    wait = 0
    if blocked_until is not None and blocked_until > now:
        wait = math.ceil((blocked_until - now).total_seconds())
    left = max(config.budget - used, 0)
    if left == 0 and oldest is not None:
        wait = max(
            wait,
            math.ceil((oldest + timedelta(seconds=config.window_s) - now).total_seconds()),
        )
    return left, wait


def spent_pause_s(db: Session, config: AvailabilityConfig) -> int:
    """Seconds to pause checks when no call is allowed now (at least a minute); 0 otherwise."""
    left, wait = budget_left(db, config)
    return max(wait, 60) if wait or left <= 0 else 0


def record_call(db: Session, name_count: int) -> AvailabilityCall:
    """Count a call about to be sent (the caller commits it before sending)."""
    call = AvailabilityCall(name_count=name_count, outcome="sent")
    db.add(call)
    return call


def block(call: AvailabilityCall, pause_s: int) -> datetime:
    """Record Zapmail's 429 on ``call``: no call is sent for ``pause_s`` seconds; return until."""
    until = utcnow() + timedelta(seconds=pause_s)
    call.outcome = "rate_limited"
    call.blocked_until = until
    return until
