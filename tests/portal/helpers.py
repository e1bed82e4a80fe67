"""Test helpers that drive the portal over HTTP: sign-ins, the wizard walk, Stripe payments and events."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from core.models import Provision
from tests.factories import PASSWORD
from tests.factories import tiers
from tests.portal import two_factor_support

WEBHOOK_SECRET = "whsec_sandbox"


class AuthActions:
    """Sign in and out through the real form."""

    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def login(self, email: str, password: str = PASSWORD, **kwargs: Any) -> Any:
        """POST the sign-in form; an admin then passes the second step (returns the first answer)."""
        response = self._client.post(
            "/auth/login", data={"email": email, "password": password, **kwargs}
        )
        # Admin 2FA: enrol or enter a code on the real pages, as the admin's authenticator would.
        two_factor_support.pass_second_step(self._client, email, response)
        return response

    def logout(self) -> Any:
        """POST the sign-out form."""
        return self._client.post("/auth/logout")


def signed_in(app: Flask, email: str, **kwargs: Any) -> FlaskClient:
    """A new client of ``app`` that signed in as ``email`` through the real form."""
    client = app.test_client()
    AuthActions(client).login(email, **kwargs)
    return client


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


def add_found_domains(client: Any, url: str, brand: str, count: int) -> list[str]:
    """Search ``brand`` on a domains page (wizard or upgrade) and add the first ``count`` names."""
    client.post(url, data={"action": "search", "brand": brand})
    page = client.get(url).get_data(as_text=True)
    names = re.findall(r'value="add"><input type="hidden" name="name" value="([^"]+)"', page)
    for name in names[:count]:
        client.post(url, data={"action": "add", "name": name})
    return names[:count]


def wizard_to_checkout(client: Any, session: Session, brand: str) -> str:
    """Walk a signed-in student through the wizard; return the Checkout Session id."""
    starter = tiers(session)["starter"]
    session.commit()
    client.post("/wizard/package", data={"tier_id": starter.id})
    add_found_domains(client, "/wizard/domains", brand, starter.domain_count)
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


def pay(sandbox: Any, checkout_id: str, method: str = "card") -> dict[str, Any]:
    """Complete a Checkout Session at the sandbox's Stripe as the student would; return its answer."""
    response = sandbox.control(
        "POST", f"/stripe/checkout/{checkout_id}/complete", json={"method": method}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def keep_payable(sandbox: Any, checkout_id: str) -> None:
    """Stripe does not answer the best-effort expiry of this session (it stays payable)."""
    sandbox.add_fault(
        vendor="stripe",
        method="POST",
        path=f"/v1/checkout/sessions/{checkout_id}/expire",
        kind="status",
        status=500,
        times=None,
    )


def paid_order(client: Any, session: Session, sandbox: Any, brand: str) -> str:
    """Walk the wizard, pay by card and deliver Stripe's events; return the Checkout Session id."""
    checkout_id = wizard_to_checkout(client, session, brand)
    pay(sandbox, checkout_id)
    EventFeed(sandbox).deliver(client)
    return checkout_id


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
