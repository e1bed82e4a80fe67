"""Subscriptions: creation from Checkout, renewal, cancellation and status follow-up on payments."""

from __future__ import annotations

from typing import Any

from sandbox.vendors.stripe import invoices
from sandbox.vendors.stripe.periods import add_interval
from sandbox.vendors.stripe.store import State

ENDED = ("canceled", "incomplete_expired")


def billing_mode(kind: str, now: int) -> dict[str, Any]:
    """Return the billing_mode hash (flexible is the default since 2025-09-30.clover)."""
    flexible = {"proration_discounts": "included"} if kind == "flexible" else None
    return {"type": kind, "flexible": flexible, "updated_at": now}


def new_item(state: State, sub: dict[str, Any], price: dict[str, Any], quantity: int, start: int):
    """Return a subscription item for a recurring price, its period starting at `start`."""
    recurring = price["recurring"]
    return {
        "id": state.new_id("si_"),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": state.now(),
        "current_period_end": add_interval(
            start, recurring["interval"], recurring["interval_count"]
        ),
        "current_period_start": start,
        "discounts": [],
        "metadata": {},
        "plan": _plan(price),
        "price": state.render(price),
        "quantity": quantity,
        "subscription": sub["id"],
        "tax_rates": [],
    }


def _plan(price: dict[str, Any]) -> dict[str, Any]:
    # The legacy Plan view Stripe still embeds next to `price`.
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": str(price["unit_amount"]),
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "interval": price["recurring"]["interval"],
        "interval_count": price["recurring"]["interval_count"],
        "livemode": False,
        "metadata": dict(price["metadata"]),
        "nickname": price["nickname"],
        "product": price["product"],
        "usage_type": "licensed",
    }


def set_price(item: dict[str, Any], state: State, price: dict[str, Any]) -> None:
    """Point a subscription item at another price (the item id stays)."""
    item["price"] = state.render(price)
    item["plan"] = _plan(price)


def period(sub: dict[str, Any]) -> tuple[int, int]:
    """The subscription's current period (its first item's, as all items share it here)."""
    first = sub["items"]["data"][0]
    return first["current_period_start"], first["current_period_end"]


def create_from_checkout(
    state: State,
    *,
    customer: dict[str, Any],
    recurring: list[tuple[dict[str, Any], int]],
    one_time: list[tuple[dict[str, Any], int]],
    metadata: dict[str, str],
    mode: str,
    method: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create the subscription and its first invoice (recurring + one-time lines), and pay it."""
    now = state.now()
    currency = recurring[0][0]["currency"]
    sub = state.base(
        "sub_",
        "subscription",
        application=None,
        application_fee_percent=None,
        automatic_tax={"disabled_reason": None, "enabled": False, "liability": None},
        billing_cycle_anchor=now,
        billing_cycle_anchor_config=None,
        billing_mode=billing_mode(mode, now),
        billing_thresholds=None,
        cancel_at=None,
        cancel_at_period_end=False,
        canceled_at=None,
        cancellation_details={"comment": None, "feedback": None, "reason": None},
        collection_method="charge_automatically",
        currency=currency,
        customer=customer["id"],
        days_until_due=None,
        default_payment_method=state.new_id("pm_"),
        default_source=None,
        default_tax_rates=[],
        description=None,
        discounts=[],
        ended_at=None,
        invoice_settings={"account_tax_ids": None, "issuer": {"type": "self"}},
        items=None,
        latest_invoice=None,
        metadata=dict(metadata),
        next_pending_invoice_item_invoice=None,
        on_behalf_of=None,
        pause_collection=None,
        payment_settings={
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        pending_invoice_item_interval=None,
        pending_setup_intent=None,
        pending_update=None,
        schedule=None,
        start_date=now,
        status="incomplete",
        test_clock=None,
        transfer_data=None,
        trial_end=None,
        trial_settings={"end_behavior": {"missing_payment_method": "create_invoice"}},
        trial_start=None,
    )
    sub["items"] = {
        "object": "list",
        "data": [new_item(state, sub, price, qty, now) for price, qty in recurring],
        "has_more": False,
        "total_count": len(recurring),
        "url": f"/v1/subscription_items?subscription={sub['id']}",
    }
    state.add(sub)
    invoice = invoices.new_invoice(
        state,
        customer,
        currency=currency,
        billing_reason="subscription_create",
        subscription=sub,
        emit=False,
    )
    for item in sub["items"]["data"]:
        invoices.add_subscription_line(state, invoice, item, period(sub))
    for price, qty in one_time:
        ii = invoices.new_item(
            state,
            customer=customer["id"],
            currency=currency,
            unit_amount=price["unit_amount"],
            quantity=qty,
            description=state.product_name(price["product"]),
            price=price,
            subscription=sub["id"],
        )
        invoices.attach_item(state, invoice, ii)
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.created", sub)
    state.emit("invoice.created", invoice)
    invoices.finalize(state, invoice)
    if invoice["status"] != "paid":
        invoices.attempt_payment(state, invoice, method=method, decline=False)
    return sub, invoice


def on_invoice(state: State, invoice: dict[str, Any], paid: bool) -> None:
    """Move a subscription's status after one of its invoices was paid or failed."""
    sub_id = ((invoice["parent"] or {}).get("subscription_details") or {}).get("subscription")
    sub = state.find(sub_id, "subscription")
    if sub is None or sub["status"] in ENDED:
        return
    before = state.snapshot(sub)
    pending = sub.get("_pending_change")
    if paid:
        if pending and pending["invoice"] == invoice["id"]:
            apply_change(state, sub, pending)
            sub["pending_update"] = None
            sub.pop("_pending_change")
        if sub["status"] in ("incomplete", "past_due", "unpaid") and not _open_invoices(state, sub):
            sub["status"] = "active"
    else:
        if invoice["billing_reason"] == "subscription_create" and sub["status"] == "incomplete":
            # Stripe expires it after 23 h; a failed delayed payment ends it at once here.
            now = state.now()
            sub.update(status="incomplete_expired", canceled_at=now, ended_at=now)
            invoices.void(state, invoice)
        elif sub["status"] == "active" and invoice.get("_fail_to_past_due", True):
            sub["status"] = "past_due"
    if state.snapshot(sub) != before:
        state.emit("customer.subscription.updated", sub, before)


def dunning_outcome(state: State, sub: dict[str, Any], outcome: str) -> None:
    """Stripe's own status moves: retries exhausted (unpaid), trial over without a card (paused)."""
    if sub["status"] in ENDED:
        raise ValueError(f"the subscription is {sub['status']}")
    if outcome == "unpaid" and sub["status"] != "past_due":
        raise ValueError("only a past_due subscription becomes unpaid when retries run out")
    before = state.snapshot(sub)
    sub["status"] = outcome
    if state.snapshot(sub) != before:
        state.emit("customer.subscription.updated", sub, before)


def _open_invoices(state: State, sub: dict[str, Any]) -> list[dict[str, Any]]:
    def mine(inv: dict[str, Any]) -> bool:
        details = (inv["parent"] or {}).get("subscription_details") or {}
        return details.get("subscription") == sub["id"] and inv["status"] == "open"

    return state.all("invoice", mine)


def renew(
    state: State, sub: dict[str, Any], *, decline: bool | None = None
) -> dict[str, Any] | None:
    """Start the next period: invoice it and try to collect (or end a cancel-at-period-end sub)."""
    if sub["status"] in ENDED or sub["status"] == "incomplete":
        return None
    _, end = period(sub)
    if sub["cancel_at_period_end"] or (sub["cancel_at"] and sub["cancel_at"] <= end):
        cancel(state, sub, at=end, reason=sub["cancellation_details"]["reason"])
        return None
    before = state.snapshot(sub)
    for item in sub["items"]["data"]:
        recurring = item["price"]["recurring"]
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] = add_interval(
            item["current_period_end"], recurring["interval"], recurring["interval_count"]
        )
    customer = state.objects[sub["customer"]]
    invoice = invoices.new_invoice(
        state,
        customer,
        currency=sub["currency"],
        billing_reason="subscription_cycle",
        subscription=sub,
        emit=False,
    )
    for item in sub["items"]["data"]:
        invoices.add_subscription_line(state, invoice, item, period(sub))
    invoices.sweep_pending(state, invoice, subscription=sub["id"], only_subscription=True)
    sub["latest_invoice"] = invoice["id"]
    state.emit("customer.subscription.updated", sub, before)
    state.emit("invoice.created", invoice)
    invoices.finalize(state, invoice)
    if invoice["status"] != "paid":
        invoices.attempt_payment(state, invoice, decline=decline)
    return invoice


def cancel(
    state: State,
    sub: dict[str, Any],
    *,
    at: int | None = None,
    reason: str | None = "cancellation_requested",
    comment: str | None = None,
) -> None:
    """End a subscription now (or at `at`), emitting customer.subscription.deleted."""
    now = state.now()
    sub.update(
        status="canceled",
        canceled_at=sub["canceled_at"] or now,
        ended_at=at or now,
        cancel_at_period_end=False,
    )
    details = sub["cancellation_details"]
    details["reason"] = reason or "cancellation_requested"
    if comment is not None:
        details["comment"] = comment
    state.emit("customer.subscription.deleted", sub)


def cancel_fields(state: State, sub: dict[str, Any], flag: bool, comment: str | None = None):
    """Set or clear cancel_at_period_end (and the cancel_at / canceled_at that go with it)."""
    _, end = period(sub)
    sub["cancel_at_period_end"] = flag
    sub["cancel_at"] = end if flag else None
    sub["canceled_at"] = state.now() if flag else None
    sub["cancellation_details"] = {
        "comment": comment,
        "feedback": None,
        "reason": "cancellation_requested" if flag else None,
    }


def schedule_cancel(state: State, sub: dict[str, Any], flag: bool, comment: str | None = None):
    """Set or clear cancel_at_period_end, emitting customer.subscription.updated."""
    before = state.snapshot(sub)
    cancel_fields(state, sub, flag, comment)
    if state.snapshot(sub) != before:
        state.emit("customer.subscription.updated", sub, before)


def apply_change(state: State, sub: dict[str, Any], change: dict[str, Any]) -> None:
    """Apply item changes (price, quantity, added, deleted), an anchor reset and metadata."""
    start, _ = period(sub)
    items = sub["items"]["data"]
    for spec in change["items"]:
        existing = next((it for it in items if it["id"] == spec["id"]), None)
        if spec["deleted"]:
            items[:] = [it for it in items if it["id"] != spec["id"]]
        elif existing is not None:
            if spec["price"]:
                set_price(existing, state, state.objects[spec["price"]])
            if spec["quantity"] is not None:
                existing["quantity"] = spec["quantity"]
        else:
            price = state.objects[spec["price"]]
            added = new_item(state, sub, price, spec["quantity"] or 1, start)
            added["id"] = spec["id"]
            items.append(added)
    anchor = change.get("reset_anchor")
    for item in items:
        recurring = item["price"]["recurring"]
        if anchor is not None:
            item["current_period_start"] = anchor
            item["current_period_end"] = add_interval(
                anchor, recurring["interval"], recurring["interval_count"]
            )
    if anchor is not None:
        sub["billing_cycle_anchor"] = anchor
    if change.get("metadata") is not None:
        sub["metadata"] = dict(change["metadata"])
    sub["items"]["total_count"] = len(items)
