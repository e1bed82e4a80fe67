"""What Zapmail's webhooks announced: which domains and mailboxes changed, for the waits.

A run waiting on domains or mailboxes is resumed when every one of them has been announced
(portal/webhooks), not at each announcement: a Starter order has 3 domains and 6 mailboxes, and
each resume is a process start that replays the run's finished steps. Only the event's subject
(the domain, or the mailbox's address) is relied on, not its status field, which Zapmail does
not document: the resumed run still asks Zapmail before it goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Mailbox
from core.models import Provision
from core.models import PurchaseState
from core.models import WebhookEvent

# Zapmail's webhooks count as arriving if one came within this long.
WEBHOOKS_FRESH = timedelta(hours=24)
# Waits that Zapmail's webhooks cover, and the event type that announces each item.
ANNOUNCED_BY = {"domains_active": "domain.updated", "mailboxes_active": "mailbox.updated"}
# An item may be announced a little before the run records that it waits (it checked, found
# it not ready, and the event came before its suspend).
LOOKBACK = timedelta(hours=1)


def webhooks_flowing(session: Session, now: datetime) -> bool:
    """Whether Zapmail's webhooks reach us (one arrived within ``WEBHOOKS_FRESH``)."""
    last = session.scalar(
        select(func.max(WebhookEvent.received_at)).where(WebhookEvent.provider == "zapmail")
    )
    return last is not None and now - last < WEBHOOKS_FRESH


def domain_of_vendor_event(data: Mapping[str, Any]) -> str | None:
    """The domain a vendor webhook's ``data`` is about (its name, or a mailbox's domain)."""
    for key in ("domainName", "domain"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value.strip().lower()
    email = data.get("email")
    if isinstance(email, str) and "@" in email:
        return email.rsplit("@", 1)[1].lower()
    return None


def event_subject(event_type: str, data: Mapping[str, Any]) -> str | None:
    """The item an event announces: a domain name for domains, an address for mailboxes."""
    if event_type == "mailbox.updated":
        email = data.get("email")
        return email.strip().lower() if isinstance(email, str) and "@" in email else None
    return domain_of_vendor_event(data)


def waited_items(session: Session, provision: Provision) -> tuple[list[str], list[str]]:
    """The provision's live purchased domains and their mailbox addresses (what its waits check).

    A domain retired by a replacement is left out: its mailboxes are being removed and it
    lapses at renewal, so it is nothing a run waits for.
    """
    domains = [
        d
        for d in provision.domains
        if d.purchase_state == PurchaseState.PURCHASED and d.retired_at is None
    ]
    addresses = session.scalars(
        select(Mailbox.address).where(Mailbox.domain_id.in_([d.id for d in domains]))
    )
    return sorted(d.name for d in domains), sorted(addresses)


def announced_since(session: Session, event_type: str, since: datetime) -> set[str]:
    """Subjects of Zapmail events of ``event_type`` received since ``since``."""
    payloads = session.scalars(
        select(WebhookEvent.payload).where(
            WebhookEvent.provider == "zapmail",
            WebhookEvent.event_type == event_type,
            WebhookEvent.received_at > since,
        )
    )
    subjects = (
        event_subject(event_type, p.get("data") or {}) for p in payloads if isinstance(p, dict)
    )
    return {subject for subject in subjects if subject}


def wait_fully_announced(session: Session, provision: Provision) -> bool:
    """Whether every item the provision's current wait is about has been announced."""
    event_type = ANNOUNCED_BY.get(provision.waiting_for or "")
    if event_type is None or provision.waiting_since is None:
        return False
    domains, addresses = waited_items(session, provision)
    items = addresses if provision.waiting_for == "mailboxes_active" else domains
    announced = announced_since(session, event_type, provision.waiting_since - LOOKBACK)
    return bool(items) and set(items) <= announced
