"""The availability service: answer names from the cache, asking Zapmail in shared calls.

Uncached names are coalesced across students: a request queues them (``pending``) and whoever
holds the drain lock sends the oldest queued names of any student, 20 per call, as soon as 20 are
queued or the oldest has waited the gathering window (``vendor``), within the budget (``budget``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_
from sqlalchemy import or_
from sqlalchemy.orm import Session

from clients.zapmail import MAX_AVAILABILITY_NAMES
from clients.zapmail import ZapmailClient
from core.db import utcnow
from core.models import PendingCheck
from portal.availability import budget
from portal.availability import cache
from portal.availability import pending
from portal.availability import vendor
from portal.availability.answers import CLAIMED
from portal.availability.answers import TOO_SLOW
from portal.availability.answers import UNKNOWN
from portal.availability.answers import Availability
from portal.availability.answers import CheckResult
from portal.availability.config import AvailabilityConfig

# How often a waiting request looks at its queued names (one small query each time).
_POLL_S = 0.1


class AvailabilityService:
    """Check names against the cache first and Zapmail second, within the shared budget."""

    def __init__(
        self,
        db: Session,
        config: AvailabilityConfig,
        client_factory: Callable[[], ZapmailClient],
    ) -> None:
        self.db = db
        self.config = config
        self._client_factory = client_factory

    def lookup(
        self, names: Iterable[str], *, user_id: int | None = None
    ) -> dict[str, Availability]:
        """Answer from the cache only (no vendor call); unknown names say so."""
        now = utcnow()
        valid, results = cache.validate(names)
        cached = cache.cached(self.db, valid)
        claimed = cache.claimed(self.db, valid, user_id)
        for name in valid:
            if name in claimed:
                results[name] = Availability(
                    name, CLAIMED, "Already chosen by another student; pick another name."
                )
            elif name in cached:
                results[name] = cache.from_cache(cached[name], now, self.config)
            else:
                results[name] = Availability(name, UNKNOWN, "Not checked yet.")
        return results

    def check(self, names: Iterable[str], *, user_id: int | None = None) -> CheckResult:
        """Answer every name, asking Zapmail about the uncached ones in calls shared by students."""
        wanted = list(dict.fromkeys(names))
        outcome = CheckResult()
        valid, _ = cache.validate(wanted)
        missing = cache.needs_check(self.db, valid, self.config)
        if missing:
            pause_s = budget.spent_pause_s(self.db, self.config)
            if pause_s:
                # Nothing will be asked until then: answer now instead of queueing.
                outcome.paused_s = pause_s
            else:
                self._wait_for(missing, outcome)
        self.db.commit()
        outcome.results = self.lookup(wanted, user_id=user_id)
        return outcome

    def budget_left(self) -> tuple[int, int]:
        """Return (calls left in the window, seconds until calls are allowed again)."""
        return budget.budget_left(self.db, self.config)

    def _wait_for(self, names: list[str], outcome: CheckResult) -> None:
        """Queue ``names`` and wait until they are answered, paused or failed."""
        token = pending.enqueue(self.db, names)
        give_up = time.monotonic() + self.config.max_wait_s
        try:
            while not pending.settled(self.db, token, outcome):
                if time.monotonic() > give_up:
                    outcome.error = TOO_SLOW
                    return
                if pending.due(self.db, self.config):
                    with pending.serialized(self.db):
                        # Re-check under the lock: the previous holder may have answered us.
                        if pending.settled(self.db, token, outcome):
                            return
                        if pending.due(self.db, self.config) and self._drain(outcome):
                            continue
                # End the read transaction while sleeping (no snapshot or connection held).
                self.db.commit()
                time.sleep(_POLL_S)
        finally:
            pending.withdraw(self.db, token)

    def _drain(self, outcome: CheckResult) -> bool:
        """Ask Zapmail about the oldest queued names (anyone's, up to 20); False if none."""
        now = utcnow()
        pending.drop_abandoned(self.db, now, self.config)
        free = pending.free(now, self.config)
        queued = pending.queued(self.db, free)
        if not queued:
            self.db.commit()
            return False
        busy = pending.busy(self.db, free, queued)
        wanted = set(cache.needs_check(self.db, queued, self.config))
        # Cached since they were queued (another call, a flow's re-check) or chosen by a student.
        done = [n for n in queued if n not in wanted]
        if done:
            pending.settle(self.db, and_(free, PendingCheck.name.in_(done)), "answered")
        batch = [n for n in queued if n in wanted and n not in busy][:MAX_AVAILABILITY_NAMES]
        if not batch:
            self.db.commit()
            return bool(done)
        # The claim comes first: on SQLite this UPDATE takes the write lock, so the budget read
        # and the ledger row below are one decision across processes there too.
        mine = pending.claim(self.db, free, batch, now)
        pause_s = budget.spent_pause_s(self.db, self.config)
        if pause_s:
            pending.pause(self.db, or_(mine, free), now + timedelta(seconds=pause_s))
            self.db.commit()
            return True
        vendor.ask(self.db, self.config, self._client_factory, batch, mine, outcome)
        return True


def service_for(db: Session, config: Any, settings: Any) -> AvailabilityService:
    """Build the service from the Flask config and the app settings."""
    return AvailabilityService(
        db, AvailabilityConfig.from_mapping(config), lambda: ZapmailClient.from_settings(settings)
    )
