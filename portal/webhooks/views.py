"""Webhook endpoints: verify on the raw body, record each event once, act in the same transaction.

Nothing slow happens while a transaction is open: what an event is about is read from Stripe
(the source of truth, never the event body) before the event is recorded, and the runs it
decides are queued in the outbox and started by the portal's sender after the commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import stripe
from flask import current_app
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clients.stripe import verify_webhook
from core.db import utcnow
from core.models import Domain
from core.models import Provision
from core.models import WebhookEvent
from core.vendor_events import domain_of_vendor_event
from core.vendor_events import wait_fully_announced
from portal import fulfilment
from portal import orchestration
from portal import outbox_sender
from portal.billing import BillingError
from portal.db import get_db
from portal.webhooks import bp
from portal.webhooks import stripe_events

log = logging.getLogger(__name__)

ZAPMAIL_TOLERANCE_S = 300


def _bad(reason: str) -> ResponseReturnValue:
    return jsonify(error="bad_request", reason=reason), 400


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_json(payload: bytes) -> Any:
    """Parse a body as standard JSON: NaN and Infinity (which the DB cannot store) are refused."""
    return json.loads(payload, parse_constant=_refuse_constant)


def _record(
    db: Session, provider: str, event_id: str, event_type: str, created: Any, payload: Any
) -> bool:
    """Insert the event row; False when this (provider, id) was already recorded."""
    db.add(
        WebhookEvent(
            provider=provider,
            # PostgreSQL text cannot hold NUL; a vendor-chosen type string may (Zapmail's body).
            event_id=event_id.replace("\x00", "")[:255],
            event_type=event_type.replace("\x00", "")[:100],
            event_created_at=created,
            payload=payload,
        )
    )
    try:
        db.flush()
    except IntegrityError:
        # Unique (provider, event_id): a duplicate, possibly delivered concurrently. On PostgreSQL
        # the second insert waits for the first transaction, so it only fails once that committed.
        db.rollback()
        return False
    return True


# Zapmail body fields the code reads (core/vendor_events.py) or an admin needs to identify the
# subject; nothing else is stored (mailbox rows may carry an appPassword, M3).
ZAPMAIL_KEPT = ("id", "domainId", "mailboxId", "domainName", "domain", "email", "status")


def _seen(db: Session, provider: str, event_id: str) -> bool:
    """Whether the event was recorded already (a cheap check before reading Stripe)."""
    found = db.scalar(
        select(WebhookEvent.id).where(
            WebhookEvent.provider == provider, WebhookEvent.event_id == event_id
        )
    )
    db.rollback()  # end the read transaction before any call to Stripe
    return found is not None


@bp.post("/stripe")
def stripe_webhook() -> ResponseReturnValue:
    """Verify a Stripe event on the raw body, record it once and apply it; 400 writes nothing."""
    payload = request.get_data()
    signature = request.headers.get("Stripe-Signature", "")
    if not signature:
        return _bad("missing Stripe-Signature header")
    secret = current_app.extensions["settings"].stripe_webhook_secret
    if secret is None:
        log.error("stripe webhook received but APP_STRIPE_WEBHOOK_SECRET is not set")
        return jsonify(error="not_configured", reason="webhook secret not configured"), 503
    try:
        event = verify_webhook(payload, signature, secret.get_secret_value())
    except stripe.SignatureVerificationError:
        return _bad("invalid signature")
    except (ValueError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack.
        return _bad("invalid JSON body")
    except (AttributeError, KeyError, TypeError):
        # Signed, valid JSON, but not an event object (e.g. a list).
        return _bad("malformed event")
    try:
        event_id, event_type = str(event.id), str(event.type)
        created = fulfilment.event_time(event)
        event.data.object  # noqa: B018  (an event without an object is malformed)
        body = _strict_json(payload)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError, OSError):
        # OSError: a "created" beyond what the platform's time functions can represent.
        return _bad("malformed event")
    if not event_id.startswith("evt_") or not (event_id + event_type).isprintable():
        return _bad("malformed event id")
    if event_type in stripe_events.HANDLED and not stripe_events.has_object_id(event):
        return _bad("malformed event object")

    db = get_db()
    if _seen(db, "stripe", event_id):
        return jsonify(status="duplicate"), 200
    try:
        truth = stripe_events.read_truth(event) if event_type in stripe_events.HANDLED else None
    except stripe_events.StripeUnavailableError as exc:
        log.error("stripe event %s (%s): Stripe unreadable: %s", event_id, event_type, exc)
        return jsonify(error="unavailable", reason="Stripe unavailable; retry later"), 503
    if not _record(db, "stripe", event_id, event_type, created, body):
        return jsonify(status="duplicate"), 200
    try:
        outcome = stripe_events.dispatch(db, event, truth)
        db.execute(
            WebhookEvent.__table__.update()
            .where(WebhookEvent.provider == "stripe", WebhookEvent.event_id == event_id)
            .values(processed_at=utcnow())
        )
        db.commit()
    except BillingError as exc:
        # Not recorded: Stripe retries, and the same idempotency keys make the retry harmless.
        db.rollback()
        outbox_sender.discard_enqueued(db)
        log.error("stripe event %s (%s) not processed: %s", event_id, event_type, exc)
        return jsonify(error="unavailable", reason="processing failed; retry later"), 503
    except IntegrityError as exc:
        db.rollback()
        outbox_sender.discard_enqueued(db)
        log.error("stripe event %s (%s) conflicted: %s", event_id, event_type, exc)
        return jsonify(error="conflict", reason="processing conflicted; retry later"), 503
    except (AttributeError, KeyError, TypeError, ValueError):
        # A signed event whose object lacks what its type promises: refuse it, keep nothing.
        db.rollback()
        outbox_sender.discard_enqueued(db)
        log.exception("stripe event %s (%s) malformed", event_id, event_type)
        return _bad("malformed event object")
    # Committed: now start the runs it decided (off the request; the watchdog covers a loss).
    outbox_sender.send_committed(db)
    log.info("stripe event %s %s: %s", event_id, event_type, outcome)
    return jsonify(status="ok", outcome=outcome), 200


def _verify_zapmail(secret: str, body: bytes, header: str) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > ZAPMAIL_TOLERANCE_S:
        return False
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@bp.post("/zapmail")
def zapmail_webhook() -> ResponseReturnValue:
    """Verify a signed Zapmail event and resume the provision waiting on that domain early."""
    secret = current_app.config.get("ZAPMAIL_WEBHOOK_SECRET")
    if not secret:
        return jsonify(error="not_found", reason="Zapmail webhooks are not enabled"), 404
    payload = request.get_data()
    if not _verify_zapmail(secret, payload, request.headers.get("X-Zapmail-Signature", "")):
        return _bad("invalid signature")
    try:
        body = _strict_json(payload)
        event_type = str(body["event"])
        data = body["data"]
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
    except (ValueError, KeyError, TypeError):
        return _bad("malformed event")
    # Zapmail sends no event id: the body's hash identifies a delivery.
    event_id = hashlib.sha256(payload).hexdigest()
    db = get_db()
    if not _record(db, "zapmail", event_id, event_type, None, _minimal_zapmail(event_type, data)):
        return jsonify(status="duplicate"), 200
    # Committed before looking at what else was announced: deliveries for one provision's
    # domains often arrive together, and each must see the others once they are committed, or
    # none of them would find the wait fully announced.
    db.commit()
    domain = domain_of_vendor_event(data)
    resumed = 0
    provision = None
    if domain and event_type in ("domain.updated", "mailbox.updated"):
        provision = db.scalar(
            select(Provision)
            .join(Domain)
            .where(Domain.name == domain, Provision.waiting_for.is_not(None))
        )
    # One resume once every domain (or mailbox) of the wait is announced, not one per event.
    run_id = None
    if (
        provision is not None
        and provision.current_flow_run_id
        and wait_fully_announced(db, provision)
    ):
        run_id = provision.current_flow_run_id
    db.rollback()  # read-only lookups: end their transaction before calling Prefect
    if run_id is not None and provision is not None:
        try:
            resumed = int(orchestration.resume_run(run_id))
        except orchestration.OrchestrationError as exc:
            # The sweeper resumes it anyway; an early resume is only a bonus.
            log.warning("could not resume run of provision %s: %s", provision.id, exc)
    return jsonify(status="ok", resumed=resumed), 200


def _minimal_zapmail(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The part of a Zapmail body worth keeping: its type and the subject's ids and status."""
    kept = {
        key: data[key]
        for key in ZAPMAIL_KEPT
        if isinstance(data.get(key), str | int | bool) and not isinstance(data.get(key), float)
    }
    return {"event": event_type, "data": kept}
