"""A shuffled stream of Stripe webhook deliveries for many checkouts, good and bad, signed for real.

Each checkout is a real order (wizard, snapshot, Checkout Session on the Stripe sandbox) that
``end_at_sandbox`` finishes the intended way on Stripe's side (hosted page, bank debit settled,
session expired). The stream is made of the events Stripe itself recorded for them (so every body
is Stripe's own copy of its object at that moment), plus correctly signed lies (sessions Stripe
never created; real unpaid sessions claimed paid), redeliveries, bad signatures, stale timestamps
and malformed bodies, so a test can post it and compare the outcome with what each checkout's
payment says should happen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import httpx
import stripe

# How each checkout ends, and whether that means "provision exactly once".
PAID = "paid"  # card: completed with payment_status=paid
ASYNC_OK = "async_ok"  # bank debit: completed unpaid, then async_payment_succeeded
ASYNC_FAILED = "async_failed"  # bank debit: completed unpaid, then async_payment_failed
ABANDONED = "abandoned"  # never paid: the session expires
PAID_KINDS = frozenset({PAID, ASYNC_OK})
MIX = ((PAID, 0.55), (ASYNC_OK, 0.15), (ASYNC_FAILED, 0.15), (ABANDONED, 0.15))

# Shares of the delivery stream (the rest are first deliveries of good events).
DUPLICATE_SHARE = 0.30
BAD_SIGNATURE_SHARE = 0.05
STALE_SHARE = 0.02
MALFORMED_SHARE = 0.03
TOLERANCE_S = 300
STRIPE_KEY = "sk_test_sandbox"


@dataclass(frozen=True)
class Checkout:
    """One student's order: a provision, its snapshot and a real Checkout Session on the sandbox."""

    provision_id: int
    user_id: int
    session_id: str
    kind: str

    @property
    def paid(self) -> bool:
        """Whether this checkout's money arrives (so it must be provisioned exactly once)."""
        return self.kind in PAID_KINDS


@dataclass(frozen=True)
class Delivery:
    """One POST to the webhook: body, headers, what kind it is and what must happen."""

    body: bytes
    headers: dict[str, str]
    kind: str  # first | duplicate | bad_signature | stale | malformed
    event_id: str | None = None
    # Correctly signed but untrue (Stripe never sent it): "stranger" names a session Stripe never
    # created; "unpaid_as_paid" claims a real, unpaid session was paid.
    forgery: str | None = None

    @property
    def good(self) -> bool:
        """Whether Stripe would really have sent this (so it must get a 2xx)."""
        return self.kind in ("first", "duplicate")


@dataclass
class Stream:
    """The deliveries in posting order, plus what they contain."""

    deliveries: list[Delivery]
    unique_events: int
    event_types: Counter[str] = field(default_factory=Counter)
    stripe_events: int = 0  # of unique_events, how many Stripe itself recorded
    forged_paid: list[Checkout] = field(default_factory=list)  # unpaid sessions claimed paid

    def count(self, kind: str) -> int:
        """Number of deliveries of one kind."""
        return sum(1 for d in self.deliveries if d.kind == kind)


def signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header made by the SDK's own generator (the real scheme)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=ts)


def raw_signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The same scheme over raw bytes (for bodies that are not UTF-8, which the SDK cannot sign)."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def _headers(sig: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["Stripe-Signature"] = sig
    return headers


class _Events:
    """Builds forged event bodies (Stripe's envelope) with unique ids and increasing times."""

    def __init__(self) -> None:
        self._clock = int(time.time()) - 3600
        self.bodies: list[dict[str, Any]] = []
        self.forgeries: dict[str, str] = {}  # event id -> forgery kind

    def add(self, event_type: str, obj: dict[str, Any], forgery: str) -> None:
        self._clock += 1
        event_id = f"evt_chaos_{uuid.uuid4().hex[:24]}"
        self.forgeries[event_id] = forgery
        self.bodies.append(
            {
                "id": event_id,
                "object": "event",
                "api_version": "2026-10-28.endive",
                "created": self._clock,
                "type": event_type,
                "livemode": False,
                "pending_webhooks": 1,
                "data": {"object": obj},
            }
        )


def end_at_sandbox(sandbox: Any, c: Checkout) -> None:
    """Finish one checkout its intended way on Stripe's side, as the student and the bank would.

    Card and bank debit are the hosted page's buttons; a bank debit is then settled through the
    sandbox's control endpoint; an abandoned session is expired through Stripe's API (as the
    portal's ``billing.expire_checkout`` does). Bank debits must not settle on the sandbox's own
    clock meanwhile: the caller sets ``async_payment_delay_s`` to null first.
    """
    if c.kind == ABANDONED:
        answer = httpx.post(
            f"{sandbox.stripe_url}/v1/checkout/sessions/{c.session_id}/expire",
            headers={"Authorization": f"Bearer {STRIPE_KEY}"},
        )
        answer.raise_for_status()
        return
    action = "card" if c.kind == PAID else "bank_debit"
    answer = httpx.post(
        f"{sandbox.stripe_url}/checkout/{c.session_id}/pay", data={"action": action}
    )
    # The hosted page answers a payment with a 303 to the portal's success page.
    assert answer.status_code == 303, (c, answer.status_code, answer.text[:200])
    if c.kind in (ASYNC_OK, ASYNC_FAILED):
        outcome = "succeeded" if c.kind == ASYNC_OK else "failed"
        sandbox.control(
            "POST", f"/stripe/checkout/{c.session_id}/async_payment", json={"outcome": outcome}
        ).raise_for_status()


def stripe_session(sandbox: Any, session_id: str) -> dict[str, Any]:
    """Stripe's own copy of a Checkout Session, as ``GET /v1/checkout/sessions/{id}`` returns it."""
    answer = httpx.get(
        f"{sandbox.stripe_url}/v1/checkout/sessions/{session_id}",
        headers={"Authorization": f"Bearer {STRIPE_KEY}"},
    )
    answer.raise_for_status()
    return dict(answer.json())


def stripe_events(sandbox: Any) -> list[dict[str, Any]]:
    """Every event the Stripe sandbox recorded (oldest first): what Stripe would deliver."""
    answer = sandbox.control("GET", "/stripe/events")
    answer.raise_for_status()
    return list(answer.json()["events"])


def _strangers(events: _Events, checkouts: list[Checkout], count: int) -> None:
    """Paid events for sessions Stripe never created, some naming a real order of another student."""
    unpaid = [c for c in checkouts if not c.paid] or checkouts
    for i in range(count):
        sid = f"cs_test_unknown_{uuid.uuid4().hex[:16]}"
        obj: dict[str, Any] = {
            "id": sid,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "complete",
            "payment_status": "paid",
            "customer": f"cus_{sid[-12:]}",
            "subscription": f"sub_{sid[-12:]}",
            "metadata": {},
            "client_reference_id": None,
        }
        if i % 2:
            # Names a real unpaid order, and another student (must not be fulfilled).
            victim = unpaid[i % len(unpaid)]
            obj["metadata"] = {"provision_id": str(victim.provision_id), "user_id": "999999999"}
            obj["client_reference_id"] = str(victim.provision_id)
        events.add("checkout.session.completed", obj, "stranger")


def forged_paid_targets(checkouts: list[Checkout], count: int) -> list[Checkout]:
    """The real but unpaid checkouts that forged "paid" events name (failed and abandoned alike)."""
    unpaid = [c for c in checkouts if not c.paid]
    failed = [c for c in unpaid if c.kind == ASYNC_FAILED]
    abandoned = [c for c in unpaid if c.kind == ABANDONED]
    mixed = [c for pair in zip(failed, abandoned, strict=False) for c in pair]
    mixed += [c for c in unpaid if c not in mixed]
    return mixed[: max(0, count)]


def _unpaid_as_paid(events: _Events, sandbox: Any, targets: list[Checkout]) -> None:
    """Correctly signed events whose body says a real, unpaid session was completed and paid.

    The body is Stripe's own copy of the session with only its status and payment changed: every
    id and all metadata are genuine, so only asking Stripe tells the lie apart.
    """
    for i, c in enumerate(targets):
        obj = stripe_session(sandbox, c.session_id)
        obj.update(status="complete", payment_status="paid")
        kind = (
            "checkout.session.completed"
            if i % 2 == 0
            else "checkout.session.async_payment_succeeded"
        )
        events.add(kind, obj, "unpaid_as_paid")


def malformed_bodies() -> list[bytes]:
    """Bodies that are not usable events (each is sent correctly signed)."""
    good_session = {"id": "cs_test_x", "object": "checkout.session", "payment_status": "paid"}
    shapes: list[bytes] = [
        b"{not json",
        b"",
        b"[1, 2, 3]",
        b'"evt_string"',
        b"null",
        json.dumps({"id": "evt_chaos_notype", "object": "event"}).encode(),
        json.dumps({"id": "nope_1", "type": "customer.created", "created": 1, "data": {}}).encode(),
        json.dumps(
            {"id": "evt_chaos_noobj", "type": "checkout.session.completed", "created": 1}
        ).encode(),
        json.dumps(
            {
                "id": "evt_chaos_badtime",
                "type": "checkout.session.completed",
                "created": "yesterday",
                "data": {"object": good_session},
            }
        ).encode(),
        json.dumps(
            {
                "id": f"evt_chaos_nullobj_{uuid.uuid4().hex[:8]}",
                "type": "checkout.session.completed",
                "created": int(time.time()),
                "data": {"object": None},
            }
        ).encode(),
        json.dumps(
            {
                "id": f"evt_chaos_emptyobj_{uuid.uuid4().hex[:8]}",
                "type": "checkout.session.completed",
                "created": int(time.time()),
                "data": {"object": {}},
            }
        ).encode(),
        json.dumps(
            {
                "id": f"evt_chaos_strobj_{uuid.uuid4().hex[:8]}",
                "type": "customer.subscription.updated",
                "created": int(time.time()),
                "data": {"object": "sub_1"},
            }
        ).encode(),
        b"\xff\xfe\x00garbage",
        b'{"id": "evt_chaos_deep", "type": "x", "created": 1, "data": {"object": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}}",
    ]
    # Right envelope, wrong object: each handler must refuse it, not crash on a missing field.
    for kind, obj in (
        ("checkout.session.completed", []),
        ("checkout.session.async_payment_failed", {"object": "checkout.session"}),
        ("checkout.session.expired", 42),
        ("customer.subscription.updated", {}),
        ("invoice.paid", {"id": ["in_x"], "metadata": "not-a-dict"}),
        ("invoice.payment_failed", None),
    ):
        shapes.append(
            json.dumps(
                {
                    "id": f"evt_chaos_shape_{uuid.uuid4().hex[:8]}",
                    "type": kind,
                    "created": int(time.time()),
                    "data": {"object": obj},
                }
            ).encode()
        )
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        shapes.append(
            b'{"id": "evt_chaos_nan", "type": "customer.created", "created": 1, "data": '
            b'{"object": {"id": "cus_x", "balance": ' + constant + b"}}}"
        )
    for event_id, kind in (
        ("evt_nul\x00x", "customer.created"),
        ("evt_ok", "customer.\x00created"),
    ):
        body = {"id": event_id, "type": kind, "created": 1, "data": {"object": {"id": "cus_x"}}}
        shapes.append(json.dumps(body).encode())
    for created in (10**20, -(10**20), 253402300800, 67768036191676800, "soon", None, [1]):
        shapes.append(
            json.dumps(
                {
                    "id": f"evt_chaos_time_{uuid.uuid4().hex[:8]}",
                    "type": "customer.created",
                    "created": created,
                    "data": {"object": {"id": "cus_x"}},
                }
            ).encode()
        )
    return shapes


def _malformed(rng: random.Random, secret: str) -> Delivery:
    """A correctly signed body that is not a usable event."""
    shapes = malformed_bodies()
    body = shapes[rng.randrange(len(shapes))]
    return Delivery(body, _headers(raw_signature(body, secret)), "malformed")


def _bad_signature(rng: random.Random, body: bytes, secret: str) -> Delivery:
    """A real event with a signature Stripe did not make (or a body changed after signing)."""
    choice = rng.randrange(5)
    if choice == 0:
        sig: str | None = signature(body, "whsec_attacker")
    elif choice == 1:
        sig = None
    elif choice == 2:
        sig = "t=1,v1=deadbeef"
    elif choice == 3:
        sig = signature(body, secret).replace("v1=", "v0=")
    else:
        # Tampered after signing: an unpaid checkout turned "paid".
        sig = signature(body, secret)
        body = body.replace(b'"unpaid"', b'"paid"') + b" "
    return Delivery(body, _headers(sig), "bad_signature")


def build_stream(checkouts: list[Checkout], sandbox: Any, secret: str, *, seed: int) -> Stream:
    """Every event Stripe recorded, forgeries, then redeliveries and bad deliveries, shuffled.

    Call it once every checkout has ended at the sandbox (``end_at_sandbox``).
    """
    rng = random.Random(seed)
    real = stripe_events(sandbox)
    lies = _Events()
    _strangers(lies, checkouts, max(2, len(checkouts) // 10))
    targets = forged_paid_targets(checkouts, max(2, len(checkouts) // 10))
    _unpaid_as_paid(lies, sandbox, targets)
    bodies = real + lies.bodies
    unique = [json.dumps(e).encode() for e in bodies]
    forgery = [lies.forgeries.get(e["id"]) for e in bodies]
    good_share = 1 - DUPLICATE_SHARE - BAD_SIGNATURE_SHARE - STALE_SHARE - MALFORMED_SHARE
    total = round(len(unique) / good_share)

    deliveries = [
        Delivery(b, _headers(signature(b, secret)), "first", e["id"], f)
        for b, e, f in zip(unique, bodies, forgery, strict=True)
    ]
    for _ in range(round(total * DUPLICATE_SHARE)):
        i = rng.randrange(len(unique))
        # A redelivery is signed again at send time, like Stripe's retries.
        deliveries.append(
            Delivery(
                unique[i],
                _headers(signature(unique[i], secret)),
                "duplicate",
                bodies[i]["id"],
                forgery[i],
            )
        )
    for _ in range(round(total * BAD_SIGNATURE_SHARE)):
        deliveries.append(_bad_signature(rng, unique[rng.randrange(len(unique))], secret))
    for _ in range(round(total * STALE_SHARE)):
        body = unique[rng.randrange(len(unique))]
        old = int(time.time()) - TOLERANCE_S - rng.randrange(5, 3 * 86400)
        deliveries.append(Delivery(body, _headers(signature(body, secret, old)), "stale"))
    for _ in range(round(total * MALFORMED_SHARE)):
        deliveries.append(_malformed(rng, secret))
    rng.shuffle(deliveries)
    return Stream(
        deliveries,
        len(unique),
        Counter(e["type"] for e in bodies),
        stripe_events=len(real),
        forged_paid=targets,
    )


def verifies(delivery: Delivery, secret: str) -> bool:
    """Whether the SDK accepts the signature (good deliveries also parse with construct_event)."""
    header = delivery.headers.get("Stripe-Signature", "")
    try:
        text = delivery.body.decode()
    except UnicodeDecodeError:
        # The SDK only verifies text; for raw bytes compare with the same scheme directly.
        ts = header.partition("t=")[2].partition(",")[0]
        return ts.isdigit() and hmac.compare_digest(
            header, raw_signature(delivery.body, secret, int(ts))
        )
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, TOLERANCE_S)
        if delivery.good:
            stripe.Webhook.construct_event(delivery.body, header, secret)
    except stripe.SignatureVerificationError:
        return False
    return True


def assign_kinds(count: int, *, seed: int) -> list[str]:
    """The outcome of each of ``count`` checkouts, in MIX proportions, shuffled."""
    kinds: list[str] = []
    for kind, share in MIX:
        kinds += [kind] * round(count * share)
    kinds = (kinds + [PAID] * count)[:count]
    random.Random(seed).shuffle(kinds)
    return kinds
