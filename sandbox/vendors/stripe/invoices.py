"""Invoice lifecycle: drafts, invoice items and lines, finalization, payment attempts, events."""

from __future__ import annotations

from typing import Any

from sandbox.vendors.stripe import payments
from sandbox.vendors.stripe.store import State

# Stripe's default Smart Retries schedule is roughly days apart; the first retry is what shows.
RETRY_AFTER_S = 3 * 86400


def new_invoice(
    state: State,
    customer: dict[str, Any],
    *,
    currency: str,
    billing_reason: str,
    subscription: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
    auto_advance: bool = True,
    description: str | None = None,
    emit: bool = True,
) -> dict[str, Any]:
    """Create a draft invoice (emitting invoice.created unless the caller emits it later)."""
    now = state.now()
    invoice = state.base(
        "in_",
        "invoice",
        account_country="US",
        account_name="Sandbox Inc.",
        amount_due=0,
        amount_overpaid=0,
        amount_paid=0,
        amount_remaining=0,
        amount_shipping=0,
        attempt_count=0,
        attempted=False,
        auto_advance=auto_advance,
        automatic_tax={"enabled": False, "liability": None, "provider": None, "status": None},
        automatically_finalizes_at=None,
        billing_reason=billing_reason,
        collection_method="charge_automatically",
        currency=currency,
        customer=customer["id"],
        customer_email=customer.get("email"),
        customer_name=customer.get("name"),
        default_payment_method=None,
        description=description,
        discounts=[],
        due_date=None,
        effective_at=None,
        ending_balance=None,
        footer=None,
        hosted_invoice_url=None,
        invoice_pdf=None,
        issuer={"type": "self"},
        last_finalization_error=None,
        lines=None,
        metadata=dict(metadata or {}),
        next_payment_attempt=None,
        number=None,
        parent=None,
        payments=None,
        period_end=now,
        period_start=now,
        starting_balance=0,
        status="draft",
        status_transitions={
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        subtotal=0,
        subtotal_excluding_tax=0,
        test_clock=None,
        total=0,
        total_discount_amounts=[],
        total_excluding_tax=0,
        total_pretax_credit_amounts=[],
        total_taxes=[],
        webhooks_delivered_at=None,
    )
    invoice["lines"] = state.list_object([], f"/v1/invoices/{invoice['id']}/lines")
    invoice["payments"] = state.list_object([], f"/v1/invoices/{invoice['id']}/payments")
    if subscription is not None:
        invoice["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription["metadata"]),
                "subscription": subscription["id"],
            },
        }
    state.add(invoice)
    if emit:
        state.emit("invoice.created", invoice)
    return invoice


def new_item(
    state: State,
    *,
    customer: str,
    currency: str,
    unit_amount: int,
    quantity: int = 1,
    description: str,
    price: dict[str, Any] | None = None,
    period: tuple[int, int] | None = None,
    subscription: str | None = None,
    subscription_item: str | None = None,
    proration: bool = False,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Create a pending invoice item (emitting invoiceitem.created)."""
    now = state.now()
    start, end = period or (now, now)
    parent = None
    if subscription:
        parent = {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": subscription,
                "subscription_item": subscription_item,
            },
        }
    item = state.add(
        state.base(
            "ii_",
            "invoiceitem",
            amount=unit_amount * quantity,
            currency=currency,
            customer=customer,
            date=now,
            description=description,
            discountable=not proration,
            discounts=[],
            invoice=None,
            metadata=dict(metadata or {}),
            net_amount=unit_amount * quantity,
            parent=parent,
            period={"start": start, "end": end},
            pricing=_pricing(price, unit_amount),
            proration=proration,
            proration_details={"credited_items": None},
            quantity=quantity,
            tax_rates=[],
            test_clock=None,
        )
    )
    state.emit("invoiceitem.created", item)
    return item


def _pricing(price: dict[str, Any] | None, unit_amount: int) -> dict[str, Any] | None:
    if price is None:
        return None
    return {
        "price_details": {"price": price["id"], "product": price["product"]},
        "type": "price_details",
        "unit_amount_decimal": str(unit_amount),
    }


def add_subscription_line(
    state: State,
    invoice: dict[str, Any],
    sub_item: dict[str, Any],
    period: tuple[int, int],
) -> None:
    """Add the recurring line of one subscription item for a period."""
    price = sub_item["price"]
    quantity = sub_item["quantity"]
    name = state.product_name(price["product"])
    unit = money(price["unit_amount"], price["currency"])
    line = _line(
        state,
        invoice,
        amount=price["unit_amount"] * quantity,
        description=f"{quantity} × {name} (at {unit} / {price['recurring']['interval']})",
        period=period,
        pricing=_pricing(price, price["unit_amount"]),
        quantity=quantity,
        subscription=sub_item["subscription"],
    )
    line["parent"] = {
        "type": "subscription_item_details",
        "invoice_item_details": None,
        "subscription_item_details": {
            "invoice_item": None,
            "proration": False,
            "proration_details": {"credited_items": None},
            "subscription": sub_item["subscription"],
            "subscription_item": sub_item["id"],
        },
    }
    recompute(invoice)


def attach_item(state: State, invoice: dict[str, Any], item: dict[str, Any]) -> None:
    """Put a pending invoice item on a draft invoice as a line."""
    item["invoice"] = invoice["id"]
    sub = (item["parent"] or {}).get("subscription_details") or {}
    line = _line(
        state,
        invoice,
        amount=item["amount"],
        description=item["description"],
        period=(item["period"]["start"], item["period"]["end"]),
        pricing=item["pricing"],
        quantity=item["quantity"],
        subscription=sub.get("subscription"),
    )
    if sub.get("subscription_item"):
        line["parent"] = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": item["id"],
                "proration": item["proration"],
                "proration_details": {"credited_items": None},
                "subscription": sub["subscription"],
                "subscription_item": sub["subscription_item"],
            },
        }
    else:
        line["parent"] = {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": item["proration"],
                "proration_details": {"credited_items": None},
                "subscription": sub.get("subscription"),
            },
            "subscription_item_details": None,
        }
    recompute(invoice)


def _line(
    state: State,
    invoice: dict[str, Any],
    *,
    amount: int,
    description: str,
    period: tuple[int, int],
    pricing: dict[str, Any] | None,
    quantity: int,
    subscription: str | None,
) -> dict[str, Any]:
    line = {
        "id": state.new_id("il_"),
        "object": "line_item",
        "amount": amount,
        "currency": invoice["currency"],
        "description": description,
        "discount_amounts": [],
        "discountable": amount >= 0,
        "discounts": [],
        "invoice": invoice["id"],
        "livemode": False,
        "metadata": {},
        "parent": None,
        "period": {"start": period[0], "end": period[1]},
        "pretax_credit_amounts": [],
        "pricing": pricing,
        "quantity": quantity,
        "subscription": subscription,
        "subtotal": amount,
        "taxes": [],
    }
    invoice["lines"]["data"].append(line)
    return line


def recompute(invoice: dict[str, Any]) -> None:
    """Recompute an invoice's totals and period from its lines."""
    lines = invoice["lines"]["data"]
    total = sum(line["amount"] for line in lines)
    invoice.update(subtotal=total, subtotal_excluding_tax=total, total=total)
    invoice["total_excluding_tax"] = total
    invoice["amount_due"] = max(0, total + invoice["starting_balance"])
    invoice["amount_remaining"] = invoice["amount_due"] - invoice["amount_paid"]
    if lines:
        invoice["period_start"] = min(line["period"]["start"] for line in lines)
        invoice["period_end"] = max(line["period"]["end"] for line in lines)


def money(amount: int, currency: str) -> str:
    """Format minor units for people: $29.00, €29.00, or 29.00 SEK."""
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower())
    sign = "-" if amount < 0 else ""
    value = f"{abs(amount) / 100:,.2f}"
    return f"{sign}{symbol}{value}" if symbol else f"{sign}{value} {currency.upper()}"


def sweep_pending(
    state: State, invoice: dict[str, Any], *, subscription: str | None, only_subscription: bool
) -> None:
    """Move the customer's pending invoice items (of a subscription, if given) onto an invoice."""
    pending = [
        ii
        for ii in reversed(state.all("invoiceitem"))
        if ii["customer"] == invoice["customer"]
        and ii["invoice"] is None
        and ii["currency"] == invoice["currency"]
        and item_subscription(ii) == subscription
    ]
    if only_subscription and subscription is None:
        pending = []
    for ii in pending:
        attach_item(state, invoice, ii)


def item_subscription(item: dict[str, Any]) -> str | None:
    """The subscription an invoice item belongs to, if any."""
    return ((item["parent"] or {}).get("subscription_details") or {}).get("subscription")


def finalize(state: State, invoice: dict[str, Any]) -> None:
    """Draft -> open (or straight to paid when nothing is due), emitting invoice.finalized."""
    customer = state.objects[invoice["customer"]]
    now = state.now()
    invoice["starting_balance"] = customer["balance"]
    recompute(invoice)
    # A credit balance pays first; what is left of a negative total becomes credit.
    customer["balance"] = min(0, invoice["total"] + invoice["starting_balance"])
    invoice["ending_balance"] = customer["balance"]
    customer["next_invoice_sequence"] += 1
    # As in Stripe, a finalized invoice gets its hosted page and PDF (served by invoice_pages.py).
    page = f"{state.ctx.public_url}/stripe/invoice/{invoice['id']}"
    invoice.update(
        status="open",
        number=f"{customer['invoice_prefix']}-{customer['next_invoice_sequence'] - 1:04d}",
        effective_at=now,
        hosted_invoice_url=page,
        invoice_pdf=f"{page}/pdf",
    )
    invoice["status_transitions"]["finalized_at"] = now
    state.emit("invoice.finalized", invoice)
    if invoice["amount_due"] == 0:
        mark_paid(state, invoice, None)


def attempt_payment(
    state: State, invoice: dict[str, Any], *, method: str = "card", decline: bool | None = None
) -> str:
    """Try to collect an open invoice; return succeeded, failed or processing."""
    if invoice["status"] == "paid":
        return "succeeded"
    if decline is None:
        decline = state.take_failure(invoice["customer"])
    outcome = "failed" if decline else ("processing" if method != "card" else "succeeded")
    intent = payments.collect(
        state,
        amount=invoice["amount_remaining"],
        currency=invoice["currency"],
        customer=invoice["customer"],
        description=_payment_description(invoice),
        ledger_item=invoice["id"],
        method=method,
        outcome=outcome,
    )
    invoice["_intent"] = intent["id"]
    invoice["payments"]["data"].insert(0, _invoice_payment(state, invoice, intent))
    invoice["attempted"] = True
    if outcome == "succeeded":
        mark_paid(state, invoice, intent)
    elif outcome == "failed":
        _mark_failed(state, invoice)
    return outcome


def settle_payment(state: State, invoice: dict[str, Any], succeeded: bool) -> None:
    """Finish an invoice's processing (bank debit) payment."""
    intent = state.objects[invoice["_intent"]]
    payments.settle(state, intent, succeeded)
    if succeeded:
        mark_paid(state, invoice, intent)
    else:
        invoice["payments"]["data"][0]["status"] = "failed"
        _mark_failed(state, invoice)


def _payment_description(invoice: dict[str, Any]) -> str:
    if invoice["parent"]:
        return (
            "Subscription creation"
            if invoice["billing_reason"] == "subscription_create"
            else "Subscription update"
        )
    return f"Invoice {invoice['number']}"


def _invoice_payment(state: State, invoice: dict[str, Any], intent: dict[str, Any]):
    return {
        "id": state.new_id("inpay_"),
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": intent["amount"],
        "created": state.now(),
        "currency": intent["currency"],
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": intent["id"]},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }


def mark_paid(state: State, invoice: dict[str, Any], intent: dict[str, Any] | None) -> None:
    """Mark an invoice paid (by `intent`, or out of band), emitting invoice.paid events."""
    now = state.now()
    invoice.update(
        status="paid",
        amount_paid=invoice["amount_due"],
        amount_remaining=0,
        next_payment_attempt=None,
    )
    invoice["attempted"] = True
    invoice["status_transitions"]["paid_at"] = now
    if intent is not None:
        payment = invoice["payments"]["data"][0]
        payment.update(status="paid", amount_paid=intent["amount"])
        payment["status_transitions"]["paid_at"] = now
    state.emit("invoice.paid", invoice)
    state.emit("invoice.payment_succeeded", invoice)
    for hook in state.invoice_hooks:
        hook(state, invoice, True)


def _mark_failed(state: State, invoice: dict[str, Any]) -> None:
    invoice["attempt_count"] += 1
    if invoice["parent"]:
        invoice["next_payment_attempt"] = state.now() + RETRY_AFTER_S
    invoice["payments"]["data"][0]["status"] = "failed"
    state.emit("invoice.payment_failed", invoice)
    for hook in state.invoice_hooks:
        hook(state, invoice, False)


def void(state: State, invoice: dict[str, Any]) -> None:
    """Void an open invoice (emitting invoice.voided)."""
    invoice.update(status="void", amount_remaining=0, next_payment_attempt=None)
    invoice["status_transitions"]["voided_at"] = state.now()
    state.emit("invoice.voided", invoice)
