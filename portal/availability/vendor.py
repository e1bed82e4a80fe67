"""The Zapmail call for one claimed batch: counted in the ledger first, its outcome told to all.

A 429 pauses every waiting request until its Retry-After; a vendor failure is reported to every
waiter at once rather than each spending a call on a failing vendor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import or_
from sqlalchemy.orm import Session

from clients.errors import RateLimitError
from clients.errors import VendorError
from clients.zapmail import ZapmailClient
from core.db import utcnow
from core.models import PendingCheck
from portal.availability import budget
from portal.availability import pending
from portal.availability.answers import CheckResult
from portal.availability.cache import store
from portal.availability.config import AvailabilityConfig

log = logging.getLogger(__name__)


def ask(
    db: Session,
    config: AvailabilityConfig,
    client_factory: Callable[[], ZapmailClient],
    batch: list[str],
    mine: ColumnElement[bool],
    outcome: CheckResult,
) -> None:
    """Send ``batch`` (claimed by ``mine``) to Zapmail, cache the answers and settle waiters."""
    # Counted before it is sent: a worker dying mid-call still leaves the call counted.
    call = budget.record_call(db, len(batch))
    db.commit()
    outcome.calls += 1
    client: ZapmailClient | None = None
    try:
        client = client_factory()
        rows = client.check_availability(batch)
    except RateLimitError as exc:
        until = budget.block(call, max(int(exc.retry_after or config.default_pause_s), 1))
        pending.pause(db, or_(mine, pending.free(utcnow(), config)), until)
        db.commit()
        return
    except VendorError as exc:
        log.warning("availability check failed: %s", exc)
        call.outcome = "error"
        # Everyone waiting hears it now rather than each spending a call on a failing vendor.
        pending.settle(db, or_(mine, pending.free(utcnow(), config)), "error")
        db.commit()
        return
    except Exception:
        # A bug, not the vendor: release our names to their waiters before failing loudly.
        db.rollback()
        call.outcome = "error"
        pending.settle(db, mine, "error")
        db.commit()
        raise
    finally:
        if client is not None:
            client.close()
    call.outcome = "ok"
    store(db, rows)
    # Also the rows queued for these names while the call was in flight.
    pending.settle(
        db,
        or_(mine, and_(PendingCheck.name.in_(batch), PendingCheck.claimed_at.is_(None))),
        "answered",
    )
    db.commit()
    pause_s = budget.spent_pause_s(db, config)
    if pause_s:
        # The budget is spent: tell the other waiting requests now instead of letting them wait.
        pending.pause(db, pending.free(utcnow(), config), utcnow() + timedelta(seconds=pause_s))
        db.commit()
