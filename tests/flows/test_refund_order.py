"""The refund flow against the Stripe sandbox: a second tab's payment that lost is refunded in
full, its subscription cancelled, the student told why; the live order is untouched; a rerun
changes nothing."""

from __future__ import annotations

import json
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter
from prefect.client.schemas.filters import ArtifactFilterKey
from sqlalchemy import select

from core.models import OrderSnapshot
from core.models import Provision
from flows.refund_order import refund_order
from portal import create_app
from portal import orders
from tasks.refunds import NotRefundableError
from tests.factories import make_user
from tests.factories import tiers
from tests.flows.conftest import Pipeline
from tests.portal.conftest import portal_settings
from tests.portal.helpers import EventFeed
from tests.portal.helpers import keep_payable
from tests.portal.helpers import pay
from tests.portal.helpers import post_event
from tests.portal.helpers import signed_in
from tests.portal.helpers import wizard_to_checkout

pytestmark = pytest.mark.prefect

EMAIL = "tab@student.test"


def _stripe(pipeline: Pipeline, path: str, **params: Any) -> dict[str, Any]:
    import httpx

    response = httpx.get(
        f"{pipeline.sandbox.stripe_url}/v1/{path}",
        params=params,
        headers={"Authorization": "Bearer sk_test_sandbox"},
        timeout=10,
    )
    response.raise_for_status()
    return dict(response.json())


def _deliver(web: Any, feed: EventFeed) -> dict[str, str]:
    outcomes = {}
    for ev in feed.new():
        response = post_event(web, json.dumps(ev).encode())
        assert response.status_code == 200, response.get_data(as_text=True)
        outcomes[ev["type"]] = response.json.get("outcome", "")
    return outcomes


def _mails(pipeline: Pipeline) -> list[Any]:
    folder = Path(pipeline.settings.instance_dir) / "outbox"
    return [message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


def _refunds(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [
        e for e in pipeline.sandbox.ledger() if e["vendor"] == "stripe" and e["kind"] == "refund"
    ]


def test_a_losing_second_tab_payment_is_refunded_its_subscription_cancelled_and_a_rerun_is_harmless(
    pipeline: Pipeline,
) -> None:
    session = pipeline.session
    pipeline.sandbox.configure(rate_limits_enabled=False)
    tiers(session)
    make_user(session, EMAIL)
    session.commit()
    settings = portal_settings(
        pipeline.settings.database_url, pipeline.sandbox.url, pipeline.settings.instance_dir
    )
    app = create_app(settings, TESTING=True, WTF_CSRF_ENABLED=False)
    try:
        web = signed_in(app, EMAIL)
        feed = EventFeed(pipeline.sandbox)
        # Tab one opens a payment page; its expiry fails, so it stays payable.
        first = wizard_to_checkout(web, session, "secondtab")
        keep_payable(pipeline.sandbox, first)
        # Tab two changes the address patterns and pays first.
        web.post(
            "/wizard/mailboxes",
            data={
                "first_name": "Ann",
                "last_name": "Lee",
                "pattern_0": "{first}",
                "pattern_1": "{f}{last}",
                "action": "continue",
            },
        )
        second = web.post("/wizard/review").headers["Location"].rsplit("/", 1)[1]
        assert second != first
        winner = pay(pipeline.sandbox, second)
        assert _deliver(web, feed)["checkout.session.completed"] == "started"
        loser = pay(pipeline.sandbox, first)
        assert _deliver(web, feed)["checkout.session.completed"] == "refund_queued"

        session.expire_all()
        snapshot = session.scalars(
            select(OrderSnapshot).where(OrderSnapshot.checkout_session_id == first)
        ).one()
        assert snapshot.status == "superseded"
        ledger_before = len(pipeline.sandbox.ledger())

        outcome = refund_order(snapshot.id)

        # At the sandbox: one full refund of the losing payment, its subscription canceled,
        # the winner's subscription still active.
        refunds = _refunds(pipeline)
        assert len(refunds) == 1
        assert refunds[0]["amount"] == str(snapshot.setup_cents + snapshot.monthly_cents)
        assert refunds[0]["item"] == outcome["refund_id"]
        assert outcome["subscription"] == "cancelled"
        assert _stripe(pipeline, f"subscriptions/{loser['subscription']}")["status"] == "canceled"
        assert _stripe(pipeline, f"subscriptions/{winner['subscription']}")["status"] == "active"
        refund = _stripe(pipeline, f"refunds/{outcome['refund_id']}")
        assert refund["metadata"]["order_id"] == str(snapshot.id)

        session.expire_all()
        snapshot = session.get(OrderSnapshot, snapshot.id)
        assert snapshot is not None
        assert (snapshot.status, snapshot.stripe_refund_id) == ("refunded", outcome["refund_id"])
        mails = _mails(pipeline)
        assert len(mails) == 1
        assert mails[0]["To"] == EMAIL
        assert "already been paid in another window" in mails[0].get_payload(decode=True).decode()
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[f"refund-order-{snapshot.id}"])
                )
            )
        text = str(artifacts[-1].data)
        assert outcome["refund_id"] in text and first in text and EMAIL not in text

        # The refund's own events (charge.refunded, subscription deleted) reach the webhook and
        # leave the live order alone.
        _deliver(web, feed)
        session.expire_all()
        live = session.scalars(select(Provision)).one()
        assert live.status == "provisioning"
        assert live.stripe_subscription_id == winner["subscription"]

        # A rerun (UI retry, a second outbox send) refunds and cancels nothing more.
        ledger_after = len(pipeline.sandbox.ledger())
        assert ledger_after > ledger_before
        again = refund_order(snapshot.id)
        assert again["refund_id"] == outcome["refund_id"]
        assert again["subscription"] == "already_ended"
        assert len(pipeline.sandbox.ledger()) == ledger_after
        assert len(_mails(pipeline)) == 1
        session.expire_all()
        assert session.get(OrderSnapshot, snapshot.id).status == "refunded"  # type: ignore[union-attr]

        # The winning order is never refunded.
        paid = session.scalars(
            select(OrderSnapshot).where(OrderSnapshot.checkout_session_id == second)
        ).one()
        assert paid.status == "paid"
        with pytest.raises(NotRefundableError):
            refund_order(paid.id)
        assert len(_refunds(pipeline)) == 1
        assert orders.refund_key(first) == f"refund:{first}"
    finally:
        app.extensions["portal_db"].dispose()
