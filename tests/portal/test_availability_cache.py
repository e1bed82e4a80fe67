"""Availability: one shared cache, at most 20 names per call, the 100-per-30-min budget, 429s."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import AvailabilityCall
from core.models import DomainCheck
from core.models import Tier
from tests.factories import make_user
from tests.factories import tiers
from tests.portal.helpers import signed_in

ROUTE = "POST /v2/domains/available-bulk"


def _bulk_calls(sandbox: Any) -> int:
    routes = sandbox.stats().get("vendors", {}).get("zapmail", {}).get("routes", {})
    return sum(routes.get(ROUTE, {}).values())


def _student_client(app: Flask, session: Session, email: str) -> Any:
    make_user(session, email)
    session.commit()
    client = signed_in(app, email)
    tier_id = session.scalars(select(Tier.id).where(Tier.slug == "starter")).one()
    client.post("/wizard/package", data={"tier_id": tier_id})
    return client


def _search(client: Any, brand: str, *, follow_redirects: bool = False) -> Any:
    """Submit the domain step's brand search."""
    return client.post(
        "/wizard/domains",
        data={"action": "search", "brand": brand},
        follow_redirects=follow_redirects,
    )


@pytest.fixture(autouse=True)
def ready(session: Session) -> None:
    """Default tiers exist."""
    tiers(session)
    session.commit()


def test_a_brand_search_costs_one_call_and_a_repeat_costs_none(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    client = _student_client(app, session, "ann@example.com")
    _search(client, "cachetest")
    assert _bulk_calls(portal_sandbox) == 1
    assert session.scalar(select(func.count()).select_from(DomainCheck)) == 20
    _search(client, "cachetest")
    client.get("/wizard/domains")
    assert _bulk_calls(portal_sandbox) == 1


def test_the_cache_is_shared_by_every_student(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    _search(_student_client(app, session, "ann@example.com"), "sharedbrand")
    bob = _student_client(app, session, "bob@example.com")
    page = _search(bob, "sharedbrand", follow_redirects=True)
    assert "getsharedbrand.com" in page.get_data(as_text=True)
    assert _bulk_calls(portal_sandbox) == 1


def test_a_manual_check_of_a_cached_name_costs_nothing(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    client = _student_client(app, session, "ann@example.com")
    _search(client, "manualco")
    client.post("/wizard/domains", data={"action": "check", "name": "GetManualCo.com"})
    assert _bulk_calls(portal_sandbox) == 1


def test_expired_answers_are_checked_again(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    client = _student_client(app, session, "ann@example.com")
    _search(client, "oldnews")
    session.execute(update(DomainCheck).values(checked_at=utcnow() - timedelta(days=1)))
    session.commit()
    _search(client, "oldnews")
    assert _bulk_calls(portal_sandbox) == 2


def test_concurrent_identical_searches_make_one_call(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    clients = [_student_client(app, session, f"s{i}@example.com") for i in range(4)]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def search(client: Any) -> None:
        barrier.wait()
        statuses.append(_search(client, "rushhour").status_code)

    threads = [threading.Thread(target=search, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [302] * 4
    assert _bulk_calls(portal_sandbox) == 1


def test_our_budget_stops_calls_and_says_when_checks_resume(
    app_factory: Any, session: Session, portal_sandbox: Any
) -> None:
    app = app_factory(AVAILABILITY_BUDGET=1)
    client = _student_client(app, session, "ann@example.com")
    _search(client, "firstbrand")
    page = _search(client, "secondbrand", follow_redirects=True).get_data(as_text=True)
    assert _bulk_calls(portal_sandbox) == 1
    assert "Availability checks are paused for 30 minutes" in page
    assert "your choices are kept" in page
    # Names checked before are still shown with their answers.
    _search(client, "firstbrand")
    assert "/yr · included" in client.get("/wizard/domains").get_data(as_text=True)


def test_vendor_429_pauses_checks_for_retry_after(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    portal_sandbox.configure(rate_limits_enabled=True, zapmail_checks_per_30min=1)
    client = _student_client(app, session, "ann@example.com")
    _search(client, "limitone")
    page = _search(client, "limittwo", follow_redirects=True).get_data(as_text=True)
    assert "Availability checks are paused for" in page
    blocked = session.scalars(
        select(AvailabilityCall).where(AvailabilityCall.outcome == "rate_limited")
    ).one()
    assert blocked.blocked_until is not None and blocked.blocked_until > utcnow()
    calls = _bulk_calls(portal_sandbox)
    # While blocked, nothing is sent to Zapmail at all.
    _search(client, "limitthree")
    assert _bulk_calls(portal_sandbox) == calls == 2


def test_vendor_errors_are_explained_and_not_cached(
    app: Flask, session: Session, portal_sandbox: Any
) -> None:
    portal_sandbox.add_fault(
        vendor="zapmail", path="/v2/domains/available-bulk", kind="status", status=503
    )
    client = _student_client(app, session, "ann@example.com")
    page = _search(client, "brokenco", follow_redirects=True).get_data(as_text=True)
    assert "could not reach our domain provider" in page
    assert session.scalar(select(func.count()).select_from(DomainCheck)) == 0
