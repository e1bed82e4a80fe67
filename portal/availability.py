"""Domain availability for the wizard: a shared cache in front of Zapmail's scarce budget.

Zapmail allows 100 availability checks per 30 minutes for the whole operator account, shared by
every student and by the flows' re-checks before buying. So answers are cached in
``domain_checks`` for every student, and uncached names are coalesced across students: a request
queues its names in ``pending_checks`` (shared by every gunicorn worker through the DB), and
whoever holds the drain lock (a process lock, plus a PostgreSQL advisory lock across processes)
sends the oldest queued names of any student, 20 per call, as soon as 20 are queued or the oldest
has waited the gathering window. Every call is counted in ``availability_calls`` before it is
sent; the portal stops at its share of the budget, or earlier when Zapmail answers 429 with
Retry-After, and tells every waiting request.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

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

from clients.errors import RateLimitError
from clients.errors import VendorError
from clients.zapmail import MAX_AVAILABILITY_NAMES
from clients.zapmail import ZapmailClient
from core.db import utcnow
from core.domains import DomainNameError
from core.domains import validate_domain
from core.models import AvailabilityCall
from core.models import Domain
from core.models import DomainCheck
from core.models import PendingCheck
from core.pricing import MAX_INCLUDED_DOMAIN_PRICE_CENTS
from core.pricing import cents_from_decimal
from core.pricing import format_money

log = logging.getLogger(__name__)

_PROCESS_LOCK = threading.Lock()
# Arbitrary constant naming the advisory lock that serializes availability calls.
_ADVISORY_KEY = 0x5A4D_4156

AVAILABLE = "available"
TAKEN = "taken"
CLAIMED = "claimed"
PREMIUM = "premium"
TOO_EXPENSIVE = "too_expensive"
INVALID = "invalid"
UNKNOWN = "unknown"

# How often a waiting request looks at its queued names (one small query each time).
_POLL_S = 0.1
_VENDOR_DOWN = (
    "We could not reach our domain provider to check availability. "
    "Try again in a minute; your choices are kept."
)
_TOO_SLOW = (
    "Checking availability is taking longer than usual. Try again in a minute; "
    "your choices are kept."
)


@dataclass
class Availability:
    """What the student sees for one name."""

    name: str
    status: str
    reason: str
    price_cents: int | None = None
    renew_cents: int | None = None
    checked_at: datetime | None = None
    stale: bool = False

    @property
    def selectable(self) -> bool:
        """Whether the student may add this name to their order."""
        return self.status == AVAILABLE


@dataclass
class CheckResult:
    """The answers for a set of names, and whether checks are paused."""

    results: dict[str, Availability] = field(default_factory=dict)
    paused_s: int = 0
    error: str | None = None
    calls: int = 0

    @property
    def message(self) -> str | None:
        """Plain words about paused or failed checks, if any."""
        if self.paused_s:
            minutes = max(1, math.ceil(self.paused_s / 60))
            return (
                f"Availability checks are paused for {minutes} minute{'s' if minutes != 1 else ''} "
                "because of our domain provider's limit; your choices are kept. Names checked "
                "recently are still shown."
            )
        return self.error


@dataclass(frozen=True)
class AvailabilityConfig:
    """Budget, cache lifetimes and the coalescing windows (from the Flask config)."""

    budget: int = 90
    window_s: int = 1800
    ttl_available_s: int = 900
    ttl_taken_s: int = 6 * 3600
    default_pause_s: int = 300
    # A partial batch (fewer than 20 names) waits this long for other students' names. 2 s packs
    # a launch minute into ~1.2 calls per student (1 s: ~1.45, 3 s: ~1.15; availability bench).
    gather_ms: int = 2000
    # A name in a call for longer than this belongs to a worker that died: taken over.
    claim_timeout_s: int = 60
    # A request gives up (and says so) after this; must exceed claim_timeout_s.
    max_wait_s: int = 90

    @classmethod
    def from_mapping(cls, config: Any) -> AvailabilityConfig:
        """Read the AVAILABILITY_* keys of a Flask config."""
        return cls(
            budget=int(config["AVAILABILITY_BUDGET"]),
            window_s=int(config["AVAILABILITY_WINDOW_S"]),
            ttl_available_s=int(config["AVAILABILITY_TTL_AVAILABLE_S"]),
            ttl_taken_s=int(config["AVAILABILITY_TTL_TAKEN_S"]),
            default_pause_s=int(config["AVAILABILITY_DEFAULT_PAUSE_S"]),
            gather_ms=int(config["AVAILABILITY_GATHER_MS"]),
            claim_timeout_s=int(config["AVAILABILITY_CLAIM_TIMEOUT_S"]),
            max_wait_s=int(config["AVAILABILITY_MAX_WAIT_S"]),
        )


def _from_cache(row: DomainCheck, now: datetime, config: AvailabilityConfig) -> Availability:
    ttl = config.ttl_available_s if row.available else config.ttl_taken_s
    stale = (now - row.checked_at).total_seconds() > ttl
    if not row.available:
        result = Availability(row.name, TAKEN, "Taken: someone already owns this domain.")
    elif row.is_premium:
        result = Availability(
            row.name, PREMIUM, "Premium name: priced above what your package includes."
        )
    elif row.price_cents is None or row.price_cents <= 0:
        result = Availability(row.name, UNKNOWN, "The provider gave no price for this name.")
    elif row.price_cents > MAX_INCLUDED_DOMAIN_PRICE_CENTS:
        result = Availability(
            row.name,
            TOO_EXPENSIVE,
            f"Costs {format_money(row.price_cents)} a year: above the "
            f"{format_money(MAX_INCLUDED_DOMAIN_PRICE_CENTS)} your package includes per domain.",
        )
    else:
        result = Availability(row.name, AVAILABLE, "Available: included in your package.")
    result.price_cents = row.price_cents
    result.renew_cents = row.renew_price_cents
    result.checked_at = row.checked_at
    result.stale = stale
    return result


class AvailabilityService:
    """Check names against the cache first and Zapmail second, within the shared budget."""

    def __init__(
        self,
        db: Session,
        config: AvailabilityConfig,
        client_factory: Any,
    ) -> None:
        self.db = db
        self.config = config
        self._client_factory = client_factory

    def lookup(
        self, names: Iterable[str], *, user_id: int | None = None
    ) -> dict[str, Availability]:
        """Answer from the cache only (no vendor call); unknown names say so."""
        now = utcnow()
        valid, results = self._validate(names)
        cached = self._cached(valid)
        claimed = self._claimed(valid, user_id)
        for name in valid:
            if name in claimed:
                results[name] = Availability(
                    name, CLAIMED, "Already chosen by another student; pick another name."
                )
            elif name in cached:
                results[name] = _from_cache(cached[name], now, self.config)
            else:
                results[name] = Availability(name, UNKNOWN, "Not checked yet.")
        return results

    def check(self, names: Iterable[str], *, user_id: int | None = None) -> CheckResult:
        """Answer every name, asking Zapmail about the uncached ones in calls shared by students."""
        wanted = list(dict.fromkeys(names))
        outcome = CheckResult()
        valid, _ = self._validate(wanted)
        missing = self._needs_check(valid)
        if missing:
            left, wait = self.budget_left()
            if wait or left <= 0:
                # Nothing will be asked until then: answer now instead of queueing.
                outcome.paused_s = max(wait, 60)
            else:
                self._wait_for(missing, outcome)
        self.db.commit()
        outcome.results = self.lookup(wanted, user_id=user_id)
        return outcome

    def budget_left(self) -> tuple[int, int]:
        """Return (calls left in the window, seconds until calls are allowed again)."""
        now = utcnow()
        since = now - timedelta(seconds=self.config.window_s)
        used, oldest = self.db.execute(
            select(func.count(), func.min(AvailabilityCall.called_at)).where(
                AvailabilityCall.called_at > since
            )
        ).one()
        blocked_until = self.db.scalar(
            select(func.max(AvailabilityCall.blocked_until)).where(
                AvailabilityCall.blocked_until.is_not(None)
            )
        )
        wait = 0
        if blocked_until is not None and blocked_until > now:
            wait = math.ceil((blocked_until - now).total_seconds())
        left = max(self.config.budget - used, 0)
        if left == 0 and oldest is not None:
            wait = max(
                wait,
                math.ceil((oldest + timedelta(seconds=self.config.window_s) - now).total_seconds()),
            )
        return left, wait

    def _validate(self, names: Iterable[str]) -> tuple[list[str], dict[str, Availability]]:
        valid: list[str] = []
        invalid: dict[str, Availability] = {}
        for raw in names:
            try:
                name = validate_domain(raw)
            except DomainNameError as exc:
                invalid[raw] = Availability(raw, INVALID, str(exc))
                continue
            if name not in valid:
                valid.append(name)
        return valid, invalid

    def _cached(self, names: list[str]) -> dict[str, DomainCheck]:
        if not names:
            return {}
        # populate_existing: another request (or worker) may have answered since we last looked.
        rows = self.db.scalars(
            select(DomainCheck)
            .where(DomainCheck.name.in_(names))
            .execution_options(populate_existing=True)
        )
        return {row.name: row for row in rows}

    def _claimed(self, names: list[str], user_id: int | None) -> set[str]:
        if not names:
            return set()
        from core.models import Provision

        query = select(Domain.name).join(Provision).where(Domain.name.in_(names))
        if user_id is not None:
            query = query.where(Provision.user_id != user_id)
        return set(self.db.scalars(query))

    def _needs_check(self, names: list[str]) -> list[str]:
        now = utcnow()
        cached = self._cached(names)
        claimed = self._claimed(names, None)
        return [
            n
            for n in names
            if n not in claimed
            and (n not in cached or _from_cache(cached[n], now, self.config).stale)
        ]

    def _wait_for(self, names: list[str], outcome: CheckResult) -> None:
        """Queue ``names`` and wait until they are answered, paused or failed."""
        token = uuid.uuid4().hex
        now = utcnow()
        self.db.execute(
            insert(PendingCheck),
            [{"token": token, "name": name, "requested_at": now} for name in names],
        )
        # Committed at once: requests in other workers drain our names with theirs.
        self.db.commit()
        give_up = time.monotonic() + self.config.max_wait_s
        try:
            while not self._settled(token, outcome):
                if time.monotonic() > give_up:
                    outcome.error = _TOO_SLOW
                    return
                if self._due():
                    with self._serialized():
                        # Re-check under the lock: the previous holder may have answered us.
                        if self._settled(token, outcome):
                            return
                        if self._due() and self._drain(outcome):
                            continue
                # End the read transaction while sleeping (no snapshot or connection held).
                self.db.commit()
                time.sleep(_POLL_S)
        finally:
            self.db.rollback()
            self.db.execute(delete(PendingCheck).where(PendingCheck.token == token))
            self.db.commit()

    def _settled(self, token: str, outcome: CheckResult) -> bool:
        """Whether every queued name of ``token`` has an outcome; if so, report it."""
        rows = self.db.execute(
            select(PendingCheck.outcome, PendingCheck.paused_until).where(
                PendingCheck.token == token
            )
        ).all()
        if any(row.outcome is None for row in rows):
            return False
        now = utcnow()
        pauses = [row.paused_until for row in rows if row.outcome == "paused" and row.paused_until]
        if pauses:
            outcome.paused_s = max(1, math.ceil((max(pauses) - now).total_seconds()))
        if any(row.outcome == "error" for row in rows):
            outcome.error = _VENDOR_DOWN
        return True

    def _free(self, now: datetime) -> ColumnElement[bool]:
        """Queued names nobody is asking about (never claimed, or claimed by a dead worker)."""
        stale = now - timedelta(seconds=self.config.claim_timeout_s)
        return and_(
            PendingCheck.outcome.is_(None),
            or_(PendingCheck.claimed_at.is_(None), PendingCheck.claimed_at < stale),
        )

    def _due(self) -> bool:
        """Whether the queue is worth a call now: 20 names, or the oldest waited the window."""
        now = utcnow()
        count, oldest = self.db.execute(
            select(
                func.count(PendingCheck.name.distinct()), func.min(PendingCheck.requested_at)
            ).where(self._free(now))
        ).one()
        if count >= MAX_AVAILABILITY_NAMES:
            return True
        return oldest is not None and oldest <= now - timedelta(milliseconds=self.config.gather_ms)

    def _drain(self, outcome: CheckResult) -> bool:
        """Ask Zapmail about the oldest queued names (anyone's, up to 20); False if none."""
        now = utcnow()
        # Rows whose request gave up long ago (its worker died before cleaning up).
        abandoned = now - timedelta(seconds=2 * self.config.max_wait_s)
        self.db.execute(
            delete(PendingCheck)
            .where(PendingCheck.requested_at < abandoned)
            .execution_options(synchronize_session=False)
        )
        free = self._free(now)
        first = func.min(PendingCheck.requested_at)
        queued = list(
            self.db.scalars(
                select(PendingCheck.name)
                .where(free)
                .group_by(PendingCheck.name)
                .order_by(first, PendingCheck.name)
            )
        )
        if not queued:
            self.db.commit()
            return False
        busy = set(
            self.db.scalars(
                select(PendingCheck.name).where(
                    PendingCheck.outcome.is_(None), ~free, PendingCheck.name.in_(queued)
                )
            )
        )
        wanted = set(self._needs_check(queued))
        # Cached since they were queued (another call, a flow's re-check) or chosen by a student.
        done = [n for n in queued if n not in wanted]
        if done:
            self._settle(and_(free, PendingCheck.name.in_(done)), "answered")
        batch = [n for n in queued if n in wanted and n not in busy][:MAX_AVAILABILITY_NAMES]
        if not batch:
            self.db.commit()
            return bool(done)
        claim = uuid.uuid4().hex
        mine = PendingCheck.claim_token == claim
        # The claim comes first: on SQLite this UPDATE takes the write lock, so the budget read
        # and the ledger row below are one decision across processes there too.
        self.db.execute(
            update(PendingCheck)
            .where(free, PendingCheck.name.in_(batch))
            .values(claim_token=claim, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        left, wait = self.budget_left()
        if wait or left <= 0:
            self._pause(or_(mine, free), now + timedelta(seconds=max(wait, 60)))
            self.db.commit()
            return True
        # Counted before it is sent: a worker dying mid-call still leaves the call counted.
        call = AvailabilityCall(name_count=len(batch), outcome="sent")
        self.db.add(call)
        self.db.commit()
        outcome.calls += 1
        client: ZapmailClient | None = None
        try:
            client = self._client_factory()
            rows = client.check_availability(batch)
        except RateLimitError as exc:
            pause = max(int(exc.retry_after or self.config.default_pause_s), 1)
            call.outcome = "rate_limited"
            call.blocked_until = utcnow() + timedelta(seconds=pause)
            self._pause(or_(mine, self._free(utcnow())), call.blocked_until)
            self.db.commit()
            return True
        except VendorError as exc:
            log.warning("availability check failed: %s", exc)
            call.outcome = "error"
            # Everyone waiting hears it now rather than each spending a call on a failing vendor.
            self._settle(or_(mine, self._free(utcnow())), "error")
            self.db.commit()
            return True
        except Exception:
            # A bug, not the vendor: release our names to their waiters before failing loudly.
            self.db.rollback()
            call.outcome = "error"
            self._settle(mine, "error")
            self.db.commit()
            raise
        finally:
            if client is not None:
                client.close()
        call.outcome = "ok"
        self._store(rows)
        # Also the rows queued for these names while the call was in flight.
        self._settle(
            or_(mine, and_(PendingCheck.name.in_(batch), PendingCheck.claimed_at.is_(None))),
            "answered",
        )
        self.db.commit()
        left, wait = self.budget_left()
        if wait or left <= 0:
            # The budget is spent: tell the other waiting requests now instead of letting them wait.
            self._pause(self._free(utcnow()), utcnow() + timedelta(seconds=max(wait, 60)))
            self.db.commit()
        return True

    def _settle(self, where: ColumnElement[bool], result: str) -> None:
        self.db.execute(
            update(PendingCheck)
            .where(PendingCheck.outcome.is_(None), where)
            .values(outcome=result)
            .execution_options(synchronize_session=False)
        )

    def _pause(self, where: ColumnElement[bool], until: datetime) -> None:
        self.db.execute(
            update(PendingCheck)
            .where(PendingCheck.outcome.is_(None), where)
            .values(outcome="paused", paused_until=until)
            .execution_options(synchronize_session=False)
        )

    @contextlib.contextmanager
    def _serialized(self) -> Iterator[None]:
        """One drainer at a time: a process lock, and on PostgreSQL an advisory lock."""
        with _PROCESS_LOCK:
            bind = self.db.get_bind()
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
                self.db.rollback()
                raise

    def _store(self, rows: list[Any]) -> None:
        now = utcnow()
        names = [row.domain_name.strip().lower() for row in rows]
        existing = self._cached(names)
        for row, name in zip(rows, names, strict=True):
            cache = existing.get(name)
            if cache is None:
                cache = DomainCheck(name=name)
                self.db.add(cache)
                existing[name] = cache
            cache.available = bool(row.available)
            cache.price_cents = cents_from_decimal(row.domain_price) if row.available else None
            cache.renew_price_cents = cents_from_decimal(row.renew_price) if row.available else None
            cache.is_premium = bool(row.is_premium_domain)
            cache.checked_at = now
        self.db.flush()


def service_for(db: Session, config: Any, settings: Any) -> AvailabilityService:
    """Build the service from the Flask config and the app settings."""
    return AvailabilityService(
        db, AvailabilityConfig.from_mapping(config), lambda: ZapmailClient.from_settings(settings)
    )
