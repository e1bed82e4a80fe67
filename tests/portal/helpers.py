"""Test helpers for the portal: users with real passwords, signed Stripe events, DB rows."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import date
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from core.crud import seed_default_tiers
from core.db import utcnow
from core.models import Domain
from core.models import Mailbox
from core.models import Provision
from core.models import ProvisioningStep
from core.models import Role
from core.models import Tier
from core.models import User
from core.models import WarmupSnapshot
from core.pipeline import PROVISION_STEPS

PASSWORD = "correct-horse-battery"
# Real scrypt hashes, with cheap parameters: werkzeug reads them from the hash, so sign-ins in tests
# run the production check without its deliberate cost.
_HASH = generate_password_hash(PASSWORD, method="scrypt:1024:8:1")
WEBHOOK_SECRET = "whsec_sandbox"


def make_user(session: Session, email: str, *, role: Role = Role.STUDENT, name: str = "") -> User:
    """A user who can sign in with PASSWORD."""
    user = User(email=email, password_hash=_HASH, role=role.value, name=name)
    session.add(user)
    session.flush()
    return user


def tiers(session: Session) -> dict[str, Tier]:
    """The default tiers, created if missing."""
    seed_default_tiers(session=session)
    session.flush()
    return {t.slug: t for t in session.scalars(select(Tier))}


def make_provision(
    session: Session,
    user: User,
    *,
    tier: str = "starter",
    status: str = "active",
    domains: list[str] | None = None,
    **fields: Any,
) -> Provision:
    """A provision with domains (and two mailboxes per domain when it is past payment)."""
    tier_row = tiers(session)[tier]
    provision = Provision(
        user_id=user.id,
        tier_id=tier_row.id,
        status=status,
        sender_first_name="Tim",
        sender_last_name="Keen",
        username_patterns=["{first}", "{first}.{last}"],
        **fields,
    )
    session.add(provision)
    session.flush()
    slug = user.email.split("@")[0].replace(".", "").replace("+", "")
    names = domains or [f"try{slug}{i}.com" for i in range(tier_row.domain_count)]
    for name in names:
        domain = Domain(provision_id=provision.id, name=name)
        session.add(domain)
        session.flush()
        if status != "pending_payment":
            domain.status = "ACTIVE"
            domain.purchase_state = "purchased"
            domain.dmarc_email = "dmarc@example.com"
            for username in ("tim", "tim.keen"):
                session.add(
                    Mailbox(
                        domain_id=domain.id,
                        address=f"{username}@{name}",
                        username=username,
                        first_name="Tim",
                        last_name="Keen",
                        status="ACTIVE",
                        warmup_enabled=True,
                    )
                )
    session.flush()
    return provision


def add_snapshots(
    session: Session, provision: Provision, *, days: int = 20, health: float = 96.0
) -> None:
    """Daily warmup numbers for every mailbox, ending today."""
    today = utcnow().date()
    boxes = session.scalars(select(Mailbox).join(Domain).where(Domain.provision_id == provision.id))
    for box in boxes:
        for offset in range(days):
            day: date = today - timedelta(days=days - 1 - offset)
            session.add(
                WarmupSnapshot(
                    mailbox_id=box.id,
                    day=day,
                    health=min(100.0, health - (days - offset) * 0.2),
                    reply_rate=28.0 + (offset % 5),
                    sent=2 + 2 * offset if offset < 14 else 30,
                    warmup_sent=2 + 2 * offset,
                )
            )
    session.flush()


def set_steps(
    session: Session, provision: Provision, statuses: dict[str, str], **extra: Any
) -> None:
    """Write the step mirror rows as the provisioning flow would."""
    now = utcnow()
    for position, key in enumerate(PROVISION_STEPS):
        status = statuses.get(key, "pending")
        row = session.scalar(
            select(ProvisioningStep).where(
                ProvisioningStep.provision_id == provision.id, ProvisioningStep.step_key == key
            )
        )
        if row is None:
            row = ProvisioningStep(provision_id=provision.id, step_key=key, position=position)
            session.add(row)
        row.status = status
        if status != "pending":
            row.attempt = max(row.attempt or 0, 1)
            row.started_at = row.started_at or now - timedelta(minutes=5)
        if status in ("completed", "failed"):
            row.finished_at = now
        if status == "failed":
            row.error_message = extra.get("error_message", "We could not create your mailboxes.")
            row.error_detail = extra.get("error_detail", "ZapmailServerError: 500 boom")
    session.flush()


def sign(body: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for ``body`` (the scheme of docs/stripe.md 2.2)."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def event(
    event_type: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None
) -> bytes:
    """A Stripe event body as JSON bytes."""
    payload = {
        "id": event_id
        or f"evt_test_{hashlib.sha1(repr((event_type, obj, time.time_ns())).encode()).hexdigest()[:20]}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created if created is not None else int(time.time()),
        "type": event_type,
        "livemode": False,
        "data": {"object": obj},
    }
    return json.dumps(payload).encode()


def checkout_session(
    provision: Provision,
    *,
    session_id: str = "cs_test_1",
    paid: bool = True,
    subscription: str = "sub_1",
    customer: str = "cus_1",
) -> dict[str, Any]:
    """A minimal Checkout Session object for ``provision``."""
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": "subscription",
        "status": "complete",
        "payment_status": "paid" if paid else "unpaid",
        "client_reference_id": str(provision.id),
        "customer": customer,
        "subscription": subscription,
        "metadata": {
            "provision_id": str(provision.id),
            "user_id": str(provision.user_id),
            "kind": "provision",
        },
    }


def post_event(client: Any, body: bytes, **kwargs: Any) -> Any:
    """POST a signed event to the webhook."""
    return client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": sign(body, **kwargs), "Content-Type": "application/json"},
    )


def wizard_to_checkout(client: Any, session: Session, brand: str) -> str:
    """Walk a signed-in student through the wizard; return the Checkout Session id."""
    import re

    starter = tiers(session)["starter"]
    session.commit()
    client.post("/wizard/package", data={"tier_id": starter.id})
    client.post("/wizard/domains", data={"action": "search", "brand": brand})
    page = client.get("/wizard/domains").get_data(as_text=True)
    pattern = r'value="add"><input type="hidden" name="name" value="([^"]+)"'
    for name in re.findall(pattern, page)[: starter.domain_count]:
        client.post("/wizard/domains", data={"action": "add", "name": name})
    client.post("/wizard/domains", data={"action": "continue"})
    client.post(
        "/wizard/mailboxes",
        data={
            "first_name": "Ann",
            "last_name": "Lee",
            "pattern_0": "{first}",
            "pattern_1": "{first}.{last}",
            "action": "continue",
        },
    )
    location = client.post("/wizard/review").headers["Location"]
    return str(location.rsplit("/", 1)[1])


class EventFeed:
    """Deliver the sandbox's Stripe events to the portal, each once, in the order given."""

    def __init__(self, sandbox: Any) -> None:
        self._sandbox = sandbox
        self._seen: set[str] = set()

    def new(self) -> list[dict[str, Any]]:
        """Events not delivered yet."""
        events = self._sandbox.control("GET", "/stripe/events").json()["events"]
        fresh = [e for e in events if e["id"] not in self._seen]
        self._seen.update(e["id"] for e in fresh)
        return fresh

    def deliver(self, client: Any) -> list[Any]:
        """POST every new event to the webhook; return the responses."""
        return [post_event(client, json.dumps(e).encode()) for e in self.new()]
