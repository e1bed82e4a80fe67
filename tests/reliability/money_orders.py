"""The order side of the money state machine: students, the portal, Stripe's sandbox, the outbox.

Students use the real portal through Flask test clients (wizard, Pay, the success page); they
pay on the Stripe sandbox's checkout; Stripe's events are held in a queue and delivered, signed,
whenever the machine says (so late, twice or out of order). Nothing is started by a Prefect
worker: :meth:`OrderWorld.drain` sends the outbox itself, recording each run start, and performs
the refund and stop-billing effects by calling their task functions directly, as their runs would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy import select

from core import outbox
from core.cancellation import request_cancellation
from core.db import make_sessionmaker
from core.models import Domain
from core.models import OrderSnapshot
from core.models import OutboxMessage
from core.models import Provision
from core.models import Tier
from core.settings import Settings
from portal import create_app
from portal import outbox_sender
from tests.factories import make_user
from tests.factories import tiers
from tests.portal.conftest import portal_settings
from tests.portal.helpers import sign
from tests.portal.helpers import signed_in
from tests.reliability.money_world import delete_all_rows

PROVISION_DEPLOYMENT = "provision/on-demand"
REFUND_DEPLOYMENT = "refund-order/on-demand"
_ADD = re.compile(r'value="add"><input type="hidden" name="name" value="([^"]+)"')


@dataclass
class Student:
    """One signed-in student with their own browser (cookies) and the sessions they opened."""

    user_id: int
    email: str
    client: FlaskClient
    sessions: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)


@dataclass
class Start:
    """One run started by draining the outbox."""

    key: str
    deployment: str
    parameters: dict[str, Any]


@dataclass
class OrderWorld:
    """The portal app on the test DB and the sandbox, with the effects it queued."""

    sandbox: Any
    engine: Engine
    settings: Settings
    app: Flask
    starts: list[Start] = field(default_factory=list)
    pending_events: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    effect_errors: list[str] = field(default_factory=list)
    _seen_events: set[str] = field(default_factory=set)
    _serial: int = 0

    @classmethod
    def build(cls, sandbox: Any, engine: Engine, db_url: str, tmp_path: Path) -> OrderWorld:
        """The app (no Prefect, no CSRF) on the test DB and the sandbox."""
        settings = portal_settings(db_url, sandbox.url, tmp_path)
        app = create_app(settings, TESTING=True, WTF_CSRF_ENABLED=False)
        return cls(sandbox=sandbox, engine=engine, settings=settings, app=app)

    def close(self) -> None:
        """Dispose of the app's engine."""
        self.app.extensions["portal_db"].dispose()

    def reset(self) -> None:
        """A fresh Stripe and Zapmail sandbox, an empty database, the default tiers."""
        self.sandbox.reset(config=True)
        self.sandbox.configure(rate_limits_enabled=False)
        delete_all_rows(self.engine)
        with self.db() as session:
            tiers(session)
            session.commit()
        self.starts.clear()
        self.pending_events.clear()
        self.delivered.clear()
        self.effect_errors.clear()
        self._seen_events.clear()

    def db(self) -> Any:
        """A new ORM session on the app database (caller closes it)."""
        return make_sessionmaker(self.engine)()

    def stripe(self) -> stripe.StripeClient:
        """The SDK on the Stripe sandbox (Stripe's truth, as the portal reads it)."""
        return stripe.StripeClient(
            "sk_test_sandbox",
            base_addresses={"api": self.sandbox.stripe_url},
            max_network_retries=0,
        )

    # --- students ---------------------------------------------------------------------------

    def new_student(self) -> Student:
        """A student account, signed in on its own test client."""
        self._serial += 1
        email = f"buyer{self._serial}@student.test"
        with self.db() as session:
            user = make_user(session, email)
            session.commit()
            user_id = user.id
        client = signed_in(self.app, email)
        return Student(user_id=user_id, email=email, client=client)

    def tier_id(self, slug: str) -> int:
        """The id of a tier by slug."""
        with self.db() as session:
            return int(session.scalar(select(Tier.id).where(Tier.slug == slug)))

    def order(self, student: Student, slug: str, brand: str) -> str | None:
        """Walk the wizard (tier, domains, mailboxes) and press Pay; the new session id, or None."""
        client = student.client
        with self.db() as session:
            count = session.scalar(select(Tier.domain_count).where(Tier.slug == slug))
        client.post("/wizard/package", data={"tier_id": self.tier_id(slug)})
        for name in student.domains:
            client.post("/wizard/domains", data={"action": "remove", "name": name})
        client.post("/wizard/domains", data={"action": "search", "brand": brand})
        page = client.get("/wizard/domains").get_data(as_text=True)
        chosen = _ADD.findall(page)[: int(count or 0)]
        for name in chosen:
            client.post("/wizard/domains", data={"action": "add", "name": name})
        student.domains = chosen
        client.post("/wizard/domains", data={"action": "continue"})
        client.post(
            "/wizard/mailboxes",
            data={
                "first_name": "Zoë",
                "last_name": "O'Neil",
                "pattern_0": "{first}",
                "pattern_1": "{first}.{last}",
                "action": "continue",
            },
        )
        response = client.post("/wizard/review")
        location = response.headers.get("Location", "")
        if response.status_code not in (302, 303) or "/checkout/" not in location:
            return None
        session_id = location.rstrip("/").rsplit("/", 1)[1]
        student.sessions.append(session_id)
        return session_id

    def pay(self, session_id: str, method: str = "card") -> int:
        """Pay a Checkout Session on the sandbox (as its hosted page would); the HTTP status."""
        return self.sandbox.control(
            "POST", f"/stripe/checkout/{session_id}/complete", json={"method": method}
        ).status_code

    def settle_bank_debit(self, session_id: str, succeeded: bool) -> int:
        """A delayed bank debit settles (or fails) now."""
        outcome = "succeeded" if succeeded else "failed"
        return self.sandbox.control(
            "POST", f"/stripe/checkout/{session_id}/async_payment", json={"outcome": outcome}
        ).status_code

    def success_page(self, student: Student, session_id: str) -> int:
        """The student lands back on the success page for ``session_id``."""
        return student.client.get(f"/wizard/success?session_id={session_id}").status_code

    def provision_of(self, student: Student) -> int | None:
        """The student's provision (order) id, if any."""
        with self.db() as session:
            return session.scalar(
                select(Provision.id).where(Provision.user_id == student.user_id).limit(1)
            )

    def cancel(self, provision_id: int) -> bool:
        """Cancel the order the one way there is (core.cancellation)."""
        with self.db() as session:
            done = request_cancellation(
                session, provision_id, reason="cancelled by the state machine"
            )
            session.commit()
            return done

    def renewal_fails(self, subscription_id: str) -> int:
        """The subscription's renewal payment is declined (past_due, then unpaid)."""
        return self.sandbox.control(
            "POST", f"/stripe/subscriptions/{subscription_id}/advance", json={"fail": True}
        ).status_code

    def subscription_deleted(self, subscription_id: str) -> None:
        """The student cancels the subscription in Stripe's billing portal."""
        try:
            self.stripe().v1.subscriptions.cancel(subscription_id)
        except stripe.InvalidRequestError:
            pass  # already cancelled

    # --- Stripe's events --------------------------------------------------------------------

    def fetch_events(self) -> None:
        """Queue the sandbox's new events (oldest first) for delivery."""
        events = self.sandbox.control("GET", "/stripe/events").json()["events"]
        for event in reversed(events):
            if event["id"] not in self._seen_events:
                self._seen_events.add(event["id"])
                self.pending_events.append(event)

    def post_event(self, event: dict[str, Any]) -> int:
        """Deliver one event, signed as Stripe signs it; the webhook's status."""
        body = json.dumps(event).encode()
        with self.app.test_client() as client:
            response = client.post(
                "/webhooks/stripe",
                data=body,
                headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"},
            )
        return response.status_code

    def deliver(self, index: int) -> int | None:
        """Deliver the pending event at ``index`` (any order); a 5xx leaves it to be retried."""
        self.fetch_events()
        if not self.pending_events:
            return None
        event = self.pending_events.pop(index % len(self.pending_events))
        status = self.post_event(event)
        if status >= 500:
            self.pending_events.append(event)  # Stripe retries an error answer
        else:
            self.delivered.append(event)
        return status

    def redeliver(self, index: int) -> int | None:
        """Deliver an already delivered event again (Stripe's at-least-once)."""
        if not self.delivered:
            return None
        return self.post_event(self.delivered[index % len(self.delivered)])

    def deliver_all(self) -> None:
        """Deliver every pending event in order, retrying error answers a few times."""
        for _ in range(5):
            self.fetch_events()
            if not self.pending_events:
                return
            while self.pending_events:
                self.deliver(0)

    # --- the outbox -------------------------------------------------------------------------

    def drain(self) -> dict[str, str]:
        """Send every due outbox row: record run starts; refund and stop billing by the tasks."""
        scope = outbox_sender.scope_of(make_sessionmaker(self.engine))
        sent = outbox.send_due(scope, self._perform)
        self._stop_billing_cancelled()
        return sent

    def _perform(self, message: outbox.Message) -> str:
        self.starts.append(Start(message.key, message.deployment, dict(message.parameters)))
        if message.deployment == REFUND_DEPLOYMENT:
            self._refund(int(message.parameters["order_id"]))
        return f"run-{len(self.starts)}"

    def _refund(self, order_id: int) -> None:
        # What flows/refund_order.py does, task by task (no Prefect worker in this test).
        from tasks import refunds

        try:
            order = refunds.load_order.fn(order_id)
            refund_id = refunds.refund_payment.fn(order_id, order["session_id"])
            refunds.cancel_subscription.fn(order["session_id"], order["live_subscription"])
            refunds.finish_refund.fn(order_id, refund_id)
        except Exception as exc:  # noqa: BLE001 - recorded; the final check judges Stripe's state
            self.effect_errors.append(f"refund {order_id}: {type(exc).__name__}: {exc}")
            raise

    def _stop_billing_cancelled(self) -> None:
        # The watchdog's "a cancelled order whose subscription still bills" pass.
        from tasks import billing_guard

        try:
            billing_guard.stop_billing_cancelled.fn()
        except Exception as exc:  # noqa: BLE001
            self.effect_errors.append(f"stop billing: {type(exc).__name__}: {exc}")

    def unsent(self) -> list[str]:
        """Keys of outbox rows not sent yet."""
        with self.db() as session:
            return outbox.unsent_keys(session)

    # --- reading the truth ------------------------------------------------------------------

    def provisions(self) -> list[Provision]:
        """Every provision (detached copies)."""
        with self.db() as session:
            rows = list(session.scalars(select(Provision)))
            session.expunge_all()
            return rows

    def snapshots(self) -> list[OrderSnapshot]:
        """Every order snapshot (detached copies)."""
        with self.db() as session:
            rows = list(session.scalars(select(OrderSnapshot)))
            session.expunge_all()
            return rows

    def domains_of(self, provision_id: int) -> set[str]:
        """Domain names the provision will buy."""
        with self.db() as session:
            return set(
                session.scalars(select(Domain.name).where(Domain.provision_id == provision_id))
            )

    def start_rows(self) -> list[tuple[str, dict[str, Any]]]:
        """(key, parameters) of every outbox row that starts a provisioning run, sent or not."""
        with self.db() as session:
            rows = session.execute(select(OutboxMessage.key, OutboxMessage.payload)).all()
        return [
            (key, dict(payload.get("parameters") or {}))
            for key, payload in rows
            if (payload or {}).get("deployment") == PROVISION_DEPLOYMENT
        ]

    def checkout(self, session_id: str) -> Any:
        """Stripe's Checkout Session."""
        return self.stripe().v1.checkout.sessions.retrieve(session_id)

    def paid_sessions(self) -> list[Any]:
        """Every Checkout Session Stripe holds as paid."""
        found = self.stripe().v1.checkout.sessions.list({"limit": 100})
        return [s for s in found.data if s.payment_status == "paid"]

    def refunded(self, session: Any) -> bool:
        """Whether the session's payment was refunded in full at Stripe."""
        client = self.stripe()
        invoice = client.v1.invoices.retrieve(str(session.invoice), {"expand": ["payments"]})
        for payment in invoice.payments.data:
            intent = payment.payment.payment_intent
            intent_id = intent if isinstance(intent, str) else intent.id
            refunds = client.v1.refunds.list({"payment_intent": intent_id, "limit": 100}).data
            if sum(r.amount for r in refunds if r.status == "succeeded") >= invoice.amount_paid:
                return True
        return False

    def subscription_status(self, subscription_id: str | None) -> str | None:
        """The subscription's status at Stripe (None when there is none)."""
        if not subscription_id:
            return None
        return str(self.stripe().v1.subscriptions.retrieve(subscription_id).status)
