"""PaymentIntents, Charges and Refunds: simulated money movement, with ledger entries."""

from __future__ import annotations

from typing import Any

from sandbox.vendors.stripe import params as allowed
from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.errors import missing
from sandbox.vendors.stripe.forms import as_int
from sandbox.vendors.stripe.forms import as_str
from sandbox.vendors.stripe.forms import merge_metadata
from sandbox.vendors.stripe.store import State
from sandbox.vendors.stripe.store import retriever

DECLINE = {
    "code": "card_declined",
    "decline_code": "generic_decline",
    "message": "Your card was declined.",
    "type": "card_error",
}


def _method_details(method: str, currency: str, declined: bool) -> dict[str, Any]:
    if method == "card":
        last4 = "0002" if declined else "4242"
        card = {"brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2034}
        return {"type": "card", "card": {**card, "funding": "credit", "last4": last4}}
    if currency == "eur":
        return {"type": "sepa_debit", "sepa_debit": {"country": "DE", "last4": "3000"}}
    bank = {"account_type": "checking", "bank_name": "STRIPE TEST BANK", "last4": "6789"}
    return {"type": "us_bank_account", "us_bank_account": bank}


def collect(
    state: State,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    description: str | None,
    ledger_item: str | None = None,
    method: str = "card",
    outcome: str = "succeeded",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Create a PaymentIntent and its Charge; outcome is succeeded, failed or processing."""
    details = _method_details(method, currency, outcome == "failed")
    pm_id = state.new_id("pm_")
    intent = state.add(
        state.base(
            "pi_",
            "payment_intent",
            amount=amount,
            amount_capturable=0,
            amount_received=0,
            canceled_at=None,
            cancellation_reason=None,
            capture_method="automatic",
            client_secret=None,
            confirmation_method="automatic",
            currency=currency,
            customer=customer,
            description=description,
            last_payment_error=None,
            latest_charge=None,
            metadata=dict(metadata or {}),
            next_action=None,
            payment_method=pm_id,
            payment_method_types=[details["type"]],
            receipt_email=None,
            status="processing",
            _ledger_item=ledger_item,
        )
    )
    intent["client_secret"] = f"{intent['id']}_secret_{state.new_id('')[:16]}"
    charge = state.add(
        state.base(
            "ch_",
            "charge",
            amount=amount,
            amount_captured=0,
            amount_refunded=0,
            balance_transaction=None,
            billing_details={"email": None, "name": None},
            captured=False,
            currency=currency,
            customer=customer,
            description=description,
            disputed=False,
            failure_code=None,
            failure_message=None,
            metadata=dict(metadata or {}),
            outcome=None,
            paid=False,
            payment_intent=intent["id"],
            payment_method=pm_id,
            payment_method_details=details,
            receipt_url=None,
            refunded=False,
            status="pending",
        )
    )
    intent["latest_charge"] = charge["id"]
    state.emit("payment_intent.created", intent)
    if outcome == "processing":
        state.emit("payment_intent.processing", intent)
        state.emit("charge.pending", charge)
    else:
        settle(state, intent, outcome == "succeeded")
    return intent


def settle(state: State, intent: dict[str, Any], succeeded: bool) -> None:
    """Finish a PaymentIntent: record the money on success, the decline on failure."""
    charge = state.objects[intent["latest_charge"]]
    if succeeded:
        intent.update(status="succeeded", amount_received=intent["amount"])
        charge.update(
            status="succeeded",
            paid=True,
            captured=True,
            amount_captured=charge["amount"],
            outcome={"network_status": "approved_by_network", "type": "authorized"},
        )
        if intent["amount"] > 0:
            state.ctx.ledger.record(
                "stripe",
                "payment",
                intent.get("_ledger_item") or intent["id"],
                str(intent["amount"]),
                currency=intent["currency"],
                customer=intent["customer"],
                payment_intent=intent["id"],
                charge=charge["id"],
            )
        state.emit("charge.succeeded", charge)
        state.emit("payment_intent.succeeded", intent)
    else:
        error = {**DECLINE, "charge": charge["id"], "payment_method": None}
        intent.update(status="requires_payment_method", last_payment_error=error)
        charge.update(
            status="failed",
            failure_code="card_declined",
            failure_message="Your card was declined.",
            outcome={"network_status": "declined_by_network", "type": "issuer_declined"},
        )
        state.emit("charge.failed", charge)
        state.emit("payment_intent.payment_failed", intent)


def create_refund(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/refunds: refund all or part of a charge (by payment_intent or charge)."""
    if params.get("payment_intent") and params.get("charge"):
        raise invalid("You may only specify one of these parameters: charge, payment_intent.")
    if params.get("payment_intent"):
        intent = state.get(params["payment_intent"], "payment_intent", param="payment_intent")
        if intent["status"] != "succeeded":
            raise invalid(
                f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                "payment_intent",
            )
        charge = state.objects[intent["latest_charge"]]
    elif params.get("charge"):
        charge = state.get(params["charge"], "charge", param="charge")
    else:
        raise missing("charge")
    if charge["status"] != "succeeded":
        raise invalid(f"Charge {charge['id']} has not succeeded and cannot be refunded.", "charge")
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise invalid(
            f"Charge {charge['id']} has already been refunded.",
            "charge",
            "charge_already_refunded",
        )
    amount = as_int(params, "amount")
    if amount is None:
        amount = remaining
    if amount <= 0:
        raise invalid("Invalid positive integer", "amount")
    if amount > remaining:
        raise invalid(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
            "amount",
            "amount_too_large",
        )
    refund = state.add(
        state.base(
            "re_",
            "refund",
            amount=amount,
            balance_transaction=None,
            charge=charge["id"],
            currency=charge["currency"],
            destination_details=None,
            metadata=merge_metadata({}, params.get("metadata")),
            payment_intent=charge["payment_intent"],
            reason=as_str(params, "reason"),
            receipt_number=None,
            status="succeeded",
        )
    )
    before = state.snapshot(charge)
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    state.ctx.ledger.record(
        "stripe",
        "refund",
        refund["id"],
        str(amount),
        currency=charge["currency"],
        customer=charge["customer"],
        charge=charge["id"],
        payment_intent=charge["payment_intent"],
    )
    state.emit("refund.created", refund)
    state.emit("charge.refunded", charge, before)
    return refund


def list_refunds(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/refunds (filters: charge, payment_intent)."""

    def keep(r: dict[str, Any]) -> bool:
        return (not params.get("charge") or r["charge"] == params["charge"]) and (
            not params.get("payment_intent") or r["payment_intent"] == params["payment_intent"]
        )

    return state.paginate(state.all("refund", keep), params, "/v1/refunds")


def list_by_customer(object_type: str, url: str):
    """Return a list handler filtered by customer (and payment_intent for charges)."""

    def handler(state: State, params: dict[str, Any]) -> dict[str, Any]:
        def keep(o: dict[str, Any]) -> bool:
            return (not params.get("customer") or o["customer"] == params["customer"]) and (
                not params.get("payment_intent")
                or o.get("payment_intent") == params["payment_intent"]
            )

        return state.paginate(state.all(object_type, keep), params, url)

    handler.__doc__ = f"GET {url}."
    return handler


ROUTES = [
    ("POST", "/v1/refunds", allowed.REFUND_CREATE, create_refund),
    ("GET", "/v1/refunds", allowed.REFUND_LIST, list_refunds),
    ("GET", "/v1/refunds/{id}", allowed.RETRIEVE, retriever("refund")),
    (
        "GET",
        "/v1/payment_intents",
        allowed.PAYMENT_INTENT_LIST,
        list_by_customer("payment_intent", "/v1/payment_intents"),
    ),
    ("GET", "/v1/payment_intents/{id}", allowed.RETRIEVE, retriever("payment_intent")),
    ("GET", "/v1/charges", allowed.CHARGE_LIST, list_by_customer("charge", "/v1/charges")),
    ("GET", "/v1/charges/{id}", allowed.RETRIEVE, retriever("charge")),
]
