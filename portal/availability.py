"""Domain availability for the wizard: a shared cache in front of Zapmail's scarce budget.

Zapmail allows 100 availability checks per 30 minutes for the whole operator account, shared by
every student and by the flows' re-checks before buying. So answers are cached in
``domain_checks`` for every student; only uncached names are asked, at most 20 per call; calls
are serialized (a process lock, plus a PostgreSQL advisory lock across processes) so concurrent
identical searches cost one call; every call is counted in ``availability_calls`` and the portal
stops at its share of the budget, or earlier when Zapmail answers 429 with Retry-After.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
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
    """Budget and cache lifetimes (from the Flask config)."""

    budget: int = 90
    window_s: int = 1800
    ttl_available_s: int = 900
    ttl_taken_s: int = 6 * 3600
    default_pause_s: int = 300

    @classmethod
    def from_mapping(cls, config: Any) -> AvailabilityConfig:
        """Read the AVAILABILITY_* keys of a Flask config."""
        return cls(
            budget=int(config["AVAILABILITY_BUDGET"]),
            window_s=int(config["AVAILABILITY_WINDOW_S"]),
            ttl_available_s=int(config["AVAILABILITY_TTL_AVAILABLE_S"]),
            ttl_taken_s=int(config["AVAILABILITY_TTL_TAKEN_S"]),
            default_pause_s=int(config["AVAILABILITY_DEFAULT_PAUSE_S"]),
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
        """Answer every name, asking Zapmail about the uncached ones if the budget allows."""
        wanted = list(dict.fromkeys(names))
        outcome = CheckResult()
        valid, _ = self._validate(wanted)
        with self._serialized():
            # Re-read under the lock: a concurrent request may just have cached these names.
            missing = self._needs_check(valid)
            if missing:
                self._ask_zapmail(missing, outcome)
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
        rows = self.db.scalars(select(DomainCheck).where(DomainCheck.name.in_(names)))
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

    @contextlib.contextmanager
    def _serialized(self) -> Iterator[None]:
        with _PROCESS_LOCK:
            if self.db.get_bind().dialect.name == "postgresql":
                # Held until the commit at the end of check(): one caller at a time across workers.
                self.db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})
            try:
                yield
            except BaseException:
                self.db.rollback()
                raise

    def _ask_zapmail(self, names: list[str], outcome: CheckResult) -> None:
        batches = [
            names[i : i + MAX_AVAILABILITY_NAMES]
            for i in range(0, len(names), MAX_AVAILABILITY_NAMES)
        ]
        client: ZapmailClient | None = None
        try:
            for batch in batches:
                left, wait = self.budget_left()
                if wait or left <= 0:
                    outcome.paused_s = max(wait, 60)
                    return
                if client is None:
                    client = self._client_factory()
                try:
                    rows = client.check_availability(batch)
                except RateLimitError as exc:
                    pause = int(exc.retry_after or self.config.default_pause_s)
                    self.db.add(
                        AvailabilityCall(
                            name_count=len(batch),
                            outcome="rate_limited",
                            blocked_until=utcnow() + timedelta(seconds=max(pause, 1)),
                        )
                    )
                    outcome.paused_s = max(pause, 1)
                    outcome.calls += 1
                    return
                except VendorError as exc:
                    log.warning("availability check failed: %s", exc)
                    self.db.add(AvailabilityCall(name_count=len(batch), outcome="error"))
                    outcome.error = (
                        "We could not reach our domain provider to check availability. "
                        "Try again in a minute; your choices are kept."
                    )
                    outcome.calls += 1
                    return
                outcome.calls += 1
                self.db.add(AvailabilityCall(name_count=len(batch), outcome="ok"))
                self._store(rows)
        finally:
            if client is not None:
                client.close()

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
