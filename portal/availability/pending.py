"""Pending checks shared by every worker: queueing names, claiming a batch, settling waiters.

A request queues its uncached names in ``pending_checks`` (shared by every gunicorn worker through
the DB). Whoever holds the drain lock (a process lock, plus a PostgreSQL advisory lock across
processes) claims the oldest free names of any student for one call, and marks each queued row
answered, paused or failed so that every waiting request hears the outcome.
"""

from __future__ import annotations

import contextlib
import math
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.orm import Session

from clients.zapmail import MAX_AVAILABILITY_NAMES
from core.db import utcnow
from core.models import PendingCheck
from portal.availability.answers import VENDOR_DOWN
from portal.availability.answers import CheckResult
from portal.availability.config import AvailabilityConfig

_PROCESS_LOCK = threading.Lock()
# Arbitrary constant naming the advisory lock that serializes availability calls.
_ADVISORY_KEY = 0x5A4D_4156


def enqueue(db: Session, names: list[str]) -> str:
    """Queue ``names`` for the next call and return the request's token."""
    token = uuid.uuid4().hex
    now = utcnow()
    db.execute(
        insert(PendingCheck),
        [{"token": token, "name": name, "requested_at": now} for name in names],
    )
    # Committed at once: requests in other workers drain our names with theirs.
    db.commit()
    return token


def withdraw(db: Session, token: str) -> None:
    """Remove the request's queued rows, whatever their outcome."""
    db.rollback()
    db.execute(delete(PendingCheck).where(PendingCheck.token == token))
    db.commit()


def settled(db: Session, token: str, outcome: CheckResult) -> bool:
    """Whether every queued name of ``token`` has an outcome; if so, report it."""
    rows = db.execute(
        select(PendingCheck.outcome, PendingCheck.paused_until).where(PendingCheck.token == token)
    ).all()
    if any(row.outcome is None for row in rows):
        return False
    now = utcnow()
    pauses = [row.paused_until for row in rows if row.outcome == "paused" and row.paused_until]
    if pauses:
        outcome.paused_s = max(1, math.ceil((max(pauses) - now).total_seconds()))
    if any(row.outcome == "error" for row in rows):
        outcome.error = VENDOR_DOWN
    return True


def free(now: datetime, config: AvailabilityConfig) -> ColumnElement[bool]:
    """Queued names nobody is asking about (never claimed, or claimed by a dead worker)."""
    stale = now - timedelta(seconds=config.claim_timeout_s)
    return and_(
        PendingCheck.outcome.is_(None),
        or_(PendingCheck.claimed_at.is_(None), PendingCheck.claimed_at < stale),
    )


def due(db: Session, config: AvailabilityConfig) -> bool:
    """Whether the queue is worth a call now: 20 names, or the oldest waited the window."""
    now = utcnow()
    count, oldest = db.execute(
        select(func.count(PendingCheck.name.distinct()), func.min(PendingCheck.requested_at)).where(
            free(now, config)
        )
    ).one()
    if count >= MAX_AVAILABILITY_NAMES:
        return True
    return oldest is not None and oldest <= now - timedelta(milliseconds=config.gather_ms)


def drop_abandoned(db: Session, now: datetime, config: AvailabilityConfig) -> None:
    """Delete rows whose request gave up long ago (its worker died before cleaning up)."""
    abandoned = now - timedelta(seconds=2 * config.max_wait_s)
    db.execute(
        delete(PendingCheck)
        .where(PendingCheck.requested_at < abandoned)
        .execution_options(synchronize_session=False)
    )


def queued(db: Session, where_free: ColumnElement[bool]) -> list[str]:
    """The free queued names, oldest request first."""
    first = func.min(PendingCheck.requested_at)
    return list(
        db.scalars(
            select(PendingCheck.name)
            .where(where_free)
            .group_by(PendingCheck.name)
            .order_by(first, PendingCheck.name)
        )
    )


def busy(db: Session, where_free: ColumnElement[bool], names: list[str]) -> set[str]:
    """Names of ``names`` already in a live worker's call."""
    return set(
        db.scalars(
            select(PendingCheck.name).where(
                PendingCheck.outcome.is_(None), ~where_free, PendingCheck.name.in_(names)
            )
        )
    )


def claim(
    db: Session, where_free: ColumnElement[bool], batch: list[str], now: datetime
) -> ColumnElement[bool]:
    """Claim the free rows of ``batch`` for one call; return the condition naming them."""
    token = uuid.uuid4().hex
    db.execute(
        update(PendingCheck)
        .where(where_free, PendingCheck.name.in_(batch))
        .values(claim_token=token, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return PendingCheck.claim_token == token


def settle(db: Session, where: ColumnElement[bool], result: str) -> None:
    """Give the waiting rows matching ``where`` their outcome ("answered" or "error")."""
    _mark(db, where, outcome=result)


def pause(db: Session, where: ColumnElement[bool], until: datetime) -> None:
    """Tell the waiting rows matching ``where`` that checks are paused until ``until``."""
    _mark(db, where, outcome="paused", paused_until=until)


def _mark(db: Session, where: ColumnElement[bool], **values: object) -> None:
    db.execute(
        update(PendingCheck)
        .where(PendingCheck.outcome.is_(None), where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


@contextlib.contextmanager
def serialized(db: Session) -> Iterator[None]:
    """One drainer at a time: a process lock, and on PostgreSQL an advisory lock."""
    with _PROCESS_LOCK:
        bind = db.get_bind()
        try:
            if bind.dialect.name != "postgresql":
                yield
                return
            # On its own connection and transaction, so the drainer can commit claims, the
            # ledger and answers while holding it; closing the connection releases it.
            with bind.connect() as lock:
                lock.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})
                yield
        except BaseException:
            db.rollback()
            raise
