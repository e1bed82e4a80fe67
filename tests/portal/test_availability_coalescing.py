"""Availability checks coalesced across students: shared 20-name calls, pauses, errors, takeovers.

Service-level, on SQLite and PostgreSQL (``backend_engine``), with a recording stand-in for
Zapmail so that every call and every name sent is visible.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from clients.errors import RateLimitError
from clients.errors import VendorError
from core.db import make_sessionmaker
from core.db import utcnow
from core.models import AvailabilityCall
from core.models import DomainCheck
from core.models import PendingCheck
from portal.availability import AVAILABLE
from portal.availability import UNKNOWN
from portal.availability import AvailabilityConfig
from portal.availability import AvailabilityService
from portal.availability import CheckResult

# Long enough that a partial batch never leaves by timeout while a test's threads start.
NEVER_MS = 60_000


class FakeZapmail:
    """Stands in for ZapmailClient: records each call's names; answers "available" or fails."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.error = error
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> FakeZapmail:
        return self

    def check_availability(self, names: list[str]) -> list[Any]:
        self.calls.append(list(names))
        self.started.set()
        self.release.wait(10)
        if self.error is not None:
            raise self.error
        return [
            SimpleNamespace(
                domain_name=name,
                available=True,
                domain_price=Decimal("12.00"),
                renew_price=Decimal("14.00"),
                is_premium_domain=False,
            )
            for name in names
        ]

    def close(self) -> None:
        pass


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}.com" for i in range(count)]


def _service(engine: Engine, zapmail: FakeZapmail, **config: Any) -> AvailabilityService:
    return AvailabilityService(
        make_sessionmaker(engine)(), AvailabilityConfig(**config), client_factory=zapmail
    )


def _together(engine: Engine, zapmail: FakeZapmail, batches: list[list[str]], **config: Any):
    """Run one check() per batch in its own thread (its own session), all at once."""
    barrier = threading.Barrier(len(batches))
    outcomes: dict[int, CheckResult] = {}
    errors: list[BaseException] = []

    def run(index: int, names: list[str]) -> None:
        service = _service(engine, zapmail, **config)
        try:
            barrier.wait()
            outcomes[index] = service.check(names)
        except BaseException as exc:  # surfaced below, on the test's thread
            errors.append(exc)
        finally:
            service.db.close()

    threads = [threading.Thread(target=run, args=(i, b)) for i, b in enumerate(batches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return [outcomes[i] for i in range(len(batches))]


def _count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_two_concurrent_requests_share_one_call(
    backend_engine: Engine, backend_session: Session
) -> None:
    zapmail = FakeZapmail()
    ann, bob = _together(
        backend_engine, zapmail, [_names("ann", 10), _names("bob", 10)], gather_ms=NEVER_MS
    )
    assert len(zapmail.calls) == 1
    assert sorted(zapmail.calls[0]) == sorted(_names("ann", 10) + _names("bob", 10))
    for outcome, prefix in ((ann, "ann"), (bob, "bob")):
        assert outcome.message is None
        assert {r.status for r in outcome.results.values()} == {AVAILABLE}
        assert set(outcome.results) == set(_names(prefix, 10))
    calls = backend_session.scalars(select(AvailabilityCall)).all()
    assert [(c.name_count, c.outcome) for c in calls] == [(20, "ok")]
    assert _count(backend_session, PendingCheck) == 0


def test_a_lone_request_is_checked_after_the_window(
    backend_engine: Engine, backend_session: Session
) -> None:
    zapmail = FakeZapmail()
    service = _service(backend_engine, zapmail, gather_ms=300)
    started = time.monotonic()
    outcome = service.check(["alone.com"])
    assert time.monotonic() - started >= 0.3
    assert outcome.results["alone.com"].status == AVAILABLE
    assert outcome.calls == 1
    assert zapmail.calls == [["alone.com"]]
    assert _count(backend_session, PendingCheck) == 0
    # Cached now: asking again costs nothing and does not wait.
    assert service.check(["alone.com"]).calls == 0
    assert len(zapmail.calls) == 1
    service.db.close()


def test_a_full_batch_leaves_at_once(backend_engine: Engine, backend_session: Session) -> None:
    zapmail = FakeZapmail()
    service = _service(backend_engine, zapmail, gather_ms=NEVER_MS)
    outcome = service.check(_names("brand", 20))
    assert outcome.calls == 1
    assert _count(backend_session, DomainCheck) == 20
    service.db.close()


def test_budget_spent_while_others_wait_pauses_them_all(
    backend_engine: Engine, backend_session: Session
) -> None:
    zapmail = FakeZapmail()
    outcomes = _together(
        backend_engine,
        zapmail,
        [_names("ann", 15), _names("bob", 15)],
        gather_ms=NEVER_MS,
        budget=1,
    )
    # One call of 20 names; the 10 names left are not sent, and their request hears why.
    assert [len(c) for c in zapmail.calls] == [20]
    paused = [o for o in outcomes if o.paused_s]
    assert len(paused) == 1
    assert paused[0].paused_s >= 60
    assert "Availability checks are paused for" in (paused[0].message or "")
    assert "your choices are kept" in (paused[0].message or "")
    statuses = [r.status for o in outcomes for r in o.results.values()]
    assert statuses.count(AVAILABLE) == 20
    assert statuses.count(UNKNOWN) == 10
    assert _count(backend_session, AvailabilityCall) == 1
    assert _count(backend_session, PendingCheck) == 0
    # A later request is told at once, without queueing or calling.
    later = _service(backend_engine, zapmail, gather_ms=NEVER_MS, budget=1)
    started = time.monotonic()
    assert later.check(["later.com"]).paused_s >= 60
    assert time.monotonic() - started < 5
    assert len(zapmail.calls) == 1
    later.db.close()


def test_a_vendor_error_reaches_every_waiter_and_writes_no_answer(
    backend_engine: Engine, backend_session: Session
) -> None:
    zapmail = FakeZapmail(error=VendorError("upstream 503"))
    outcomes = _together(
        backend_engine, zapmail, [_names("ann", 15), _names("bob", 15)], gather_ms=NEVER_MS
    )
    # One failed call; the names it did not carry fail with it instead of spending another call.
    assert len(zapmail.calls) == 1
    for outcome in outcomes:
        assert "could not reach our domain provider" in (outcome.message or "")
        assert {r.status for r in outcome.results.values()} == {UNKNOWN}
    assert _count(backend_session, DomainCheck) == 0
    assert _count(backend_session, PendingCheck) == 0
    calls = backend_session.scalars(select(AvailabilityCall)).all()
    assert [(c.name_count, c.outcome) for c in calls] == [(20, "error")]


def test_a_429_pauses_every_waiter_for_retry_after(
    backend_engine: Engine, backend_session: Session
) -> None:
    zapmail = FakeZapmail(error=RateLimitError("slow down", retry_after=120))
    outcomes = _together(
        backend_engine, zapmail, [_names("ann", 10), _names("bob", 10)], gather_ms=NEVER_MS
    )
    assert len(zapmail.calls) == 1
    assert all(100 <= o.paused_s <= 120 for o in outcomes)
    call = backend_session.scalars(select(AvailabilityCall)).one()
    assert call.outcome == "rate_limited" and call.blocked_until is not None
    assert _count(backend_session, PendingCheck) == 0


def test_a_stale_claim_is_taken_over_and_abandoned_rows_are_dropped(
    backend_engine: Engine, backend_session: Session
) -> None:
    now = utcnow()
    config = {"gather_ms": 0, "claim_timeout_s": 60, "max_wait_s": 90}
    backend_session.add_all(
        [
            # A worker died mid-call 65 s ago: its names are taken over by the next drainer.
            PendingCheck(
                token="dead-waiter",
                name="orphan.com",
                requested_at=now - timedelta(seconds=66),
                claim_token="dead-drainer",
                claimed_at=now - timedelta(seconds=65),
            ),
            # Queued long before any request still waits: dropped, not sent.
            PendingCheck(
                token="gone-waiter", name="ancient.com", requested_at=now - timedelta(hours=1)
            ),
        ]
    )
    backend_session.commit()
    zapmail = FakeZapmail()
    service = _service(backend_engine, zapmail, **config)
    outcome = service.check(["mine.com"])
    assert outcome.results["mine.com"].status == AVAILABLE
    assert zapmail.calls == [["orphan.com", "mine.com"]]
    assert backend_session.execute(
        select(PendingCheck.name, PendingCheck.outcome).order_by(PendingCheck.name)
    ).all() == [("orphan.com", "answered")]
    service.db.close()


def test_a_name_another_worker_is_asking_about_is_not_sent_twice(
    backend_engine: Engine, backend_session: Session
) -> None:
    now = utcnow()
    backend_session.add(
        PendingCheck(
            token="other-waiter",
            name="shared.com",
            requested_at=now,
            claim_token="other-drainer",
            claimed_at=now,
        )
    )
    backend_session.commit()

    def other_worker_answers() -> None:
        time.sleep(0.4)
        with make_sessionmaker(backend_engine)() as session:
            session.add(DomainCheck(name="shared.com", available=False, checked_at=utcnow()))
            session.commit()

    answer = threading.Thread(target=other_worker_answers)
    answer.start()
    zapmail = FakeZapmail()
    service = _service(backend_engine, zapmail, gather_ms=0)
    outcome = service.check(["shared.com"])
    answer.join()
    assert zapmail.calls == []
    assert outcome.results["shared.com"].status == "taken"
    service.db.close()


def test_names_queued_during_a_call_are_answered_by_it(
    backend_engine: Engine, backend_session: Session
) -> None:
    zapmail = FakeZapmail()
    zapmail.release.clear()
    first = _service(backend_engine, zapmail, gather_ms=0)
    caller = threading.Thread(target=first.check, args=(_names("same", 20),))
    caller.start()
    assert zapmail.started.wait(10)
    # While that call is in flight, three more students search the same brand.
    threading.Timer(0.5, zapmail.release.set).start()
    outcomes = _together(backend_engine, zapmail, [_names("same", 20)] * 3, gather_ms=NEVER_MS)
    caller.join(10)
    first.db.close()
    assert len(zapmail.calls) == 1
    for outcome in outcomes:
        assert {r.status for r in outcome.results.values()} == {AVAILABLE}
    assert _count(backend_session, PendingCheck) == 0
