"""Disputes: a cardholder disputes a charge, the dispute closes won or lost (GET /v1/disputes)."""

from __future__ import annotations

from typing import Any

from sandbox.vendors.stripe import params as allowed
from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.store import State
from sandbox.vendors.stripe.store import retriever

# Stripe's terminal dispute statuses (won: money kept; lost: money returned to the cardholder).
CLOSED = ("won", "lost")


def open_dispute(state: State, charge_id: str, reason: str = "fraudulent") -> dict[str, Any]:
    """Open a dispute on a succeeded charge (what a cardholder's bank does); emit the event."""
    charge = state.get(charge_id, "charge", param="charge")
    if charge["status"] != "succeeded":
        raise invalid(f"Charge {charge_id} has not succeeded and cannot be disputed.", "charge")
    dispute = state.add(
        state.base(
            "dp_",
            "dispute",
            amount=charge["amount"],
            balance_transactions=[],
            charge=charge["id"],
            currency=charge["currency"],
            evidence={},
            is_charge_refundable=False,
            metadata={},
            payment_intent=charge["payment_intent"],
            reason=reason,
            status="needs_response",
        )
    )
    before = state.snapshot(charge)
    charge["disputed"] = True
    state.emit("charge.dispute.created", dispute)
    state.emit("charge.updated", charge, before)
    return dispute


def close_dispute(state: State, dispute_id: str, outcome: str) -> dict[str, Any]:
    """Close an open dispute as won or lost; a lost one records the money going back."""
    if outcome not in CLOSED:
        raise invalid("outcome must be won or lost", "outcome")
    dispute = state.get(dispute_id, "dispute", param="dispute")
    if dispute["status"] in CLOSED:
        raise invalid(f"Dispute {dispute_id} is already closed ({dispute['status']}).", "dispute")
    before = state.snapshot(dispute)
    dispute["status"] = outcome
    if outcome == "lost":
        charge = state.objects[dispute["charge"]]
        state.ctx.ledger.record(
            "stripe",
            "dispute_lost",
            dispute["id"],
            str(dispute["amount"]),
            currency=dispute["currency"],
            customer=charge["customer"],
            charge=charge["id"],
        )
    state.emit("charge.dispute.closed", dispute, before)
    return dispute


ROUTES = [
    ("GET", "/v1/disputes/{id}", allowed.RETRIEVE, retriever("dispute")),
]
