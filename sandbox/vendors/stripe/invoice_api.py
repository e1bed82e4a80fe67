"""Invoice and invoice item API: create, update, finalize, pay, void, list (one-off fee path)."""

from __future__ import annotations

from typing import Any

from sandbox.vendors.stripe import invoices
from sandbox.vendors.stripe import params as allowed
from sandbox.vendors.stripe.errors import card_declined
from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.errors import missing
from sandbox.vendors.stripe.forms import as_bool
from sandbox.vendors.stripe.forms import as_dict
from sandbox.vendors.stripe.forms import as_int
from sandbox.vendors.stripe.forms import as_str
from sandbox.vendors.stripe.forms import merge_metadata
from sandbox.vendors.stripe.store import State
from sandbox.vendors.stripe.store import retriever


def create_invoice(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/invoices: a draft; pending items only when asked."""
    customer_id = as_str(params, "customer", required=True)
    customer = state.get(customer_id, "customer", param="customer")
    behavior = params.get("pending_invoice_items_behavior") or "exclude"
    if behavior not in ("include", "exclude"):
        raise invalid(
            "Invalid pending_invoice_items_behavior: must be one of include, exclude",
            "pending_invoice_items_behavior",
        )
    subscription = None
    if params.get("subscription"):
        subscription = state.get(params["subscription"], "subscription", param="subscription")
    currency = (params.get("currency") or (subscription or {}).get("currency") or "usd").lower()
    invoice = invoices.new_invoice(
        state,
        customer,
        currency=currency,
        billing_reason="manual",
        subscription=subscription,
        metadata=merge_metadata({}, params.get("metadata")),
        auto_advance=bool(as_bool(params, "auto_advance", False)),
        description=as_str(params, "description"),
    )
    if behavior == "include" or subscription is not None:
        invoices.sweep_pending(
            state,
            invoice,
            subscription=subscription["id"] if subscription else None,
            only_subscription=False,
        )
    return invoice


def update_invoice(state: State, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """POST /v1/invoices/{id}: metadata, description, auto_advance."""
    invoice = state.get(invoice_id, "invoice", status=404)
    before = state.snapshot(invoice)
    if "description" in params:
        if invoice["status"] != "draft":
            raise invalid("You can only update the description of a draft invoice.", "description")
        invoice["description"] = as_str(params, "description")
    if "auto_advance" in params:
        invoice["auto_advance"] = as_bool(params, "auto_advance")
    invoice["metadata"] = merge_metadata(invoice["metadata"], params.get("metadata"))
    state.emit("invoice.updated", invoice, before)
    return invoice


def finalize_invoice(state: State, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """POST /v1/invoices/{id}/finalize."""
    invoice = state.get(invoice_id, "invoice", status=404)
    if invoice["status"] != "draft":
        raise invalid(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice."
        )
    if "auto_advance" in params:
        invoice["auto_advance"] = as_bool(params, "auto_advance")
    invoices.finalize(state, invoice)
    return invoice


def pay_invoice(state: State, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """POST /v1/invoices/{id}/pay: finalizes a draft first; a decline answers 402."""
    invoice = state.get(invoice_id, "invoice", status=404)
    if invoice["status"] == "paid":
        raise invalid("Invoice is already paid.")
    if invoice["status"] == "void":
        raise invalid("This invoice has been voided and can no longer be paid.")
    if invoice["status"] == "draft":
        invoices.finalize(state, invoice)
    if invoice["status"] == "paid":
        return invoice
    if as_bool(params, "paid_out_of_band", False):
        invoices.mark_paid(state, invoice, None)
        return invoice
    if invoices.attempt_payment(state, invoice) == "failed":
        intent = state.objects[invoice["_intent"]]
        raise card_declined(
            {"charge": intent["latest_charge"], "payment_intent": state.render(intent)}
        )
    return invoice


def void_invoice(state: State, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """POST /v1/invoices/{id}/void."""
    del params
    invoice = state.get(invoice_id, "invoice", status=404)
    if invoice["status"] != "open":
        raise invalid("You can only void open invoices.")
    invoices.void(state, invoice)
    return invoice


def list_invoices(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/invoices (filters: customer, subscription, status)."""

    def keep(inv: dict[str, Any]) -> bool:
        sub = ((inv["parent"] or {}).get("subscription_details") or {}).get("subscription")
        return (
            (not params.get("customer") or inv["customer"] == params["customer"])
            and (not params.get("subscription") or sub == params["subscription"])
            and (not params.get("status") or inv["status"] == params["status"])
        )

    return state.paginate(state.all("invoice", keep), params, "/v1/invoices")


def list_lines(state: State, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """GET /v1/invoices/{id}/lines."""
    invoice = state.get(invoice_id, "invoice", status=404)
    lines = list(invoice["lines"]["data"])
    page = state.paginate(lines, params, f"/v1/invoices/{invoice_id}/lines")
    return page


def create_invoiceitem(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/invoiceitems: pricing[price], price_data, or amount + currency."""
    invoice = None
    if params.get("invoice"):
        invoice = state.get(params["invoice"], "invoice", param="invoice")
        if invoice["status"] != "draft":
            raise invalid(
                f"Invoice {invoice['id']} is no longer editable: you can only add items to "
                "draft invoices.",
                "invoice",
                "invoice_not_editable",
            )
    customer_id = as_str(params, "customer") or (invoice or {}).get("customer")
    if not customer_id:
        raise missing("customer")
    customer = state.get(customer_id, "customer", param="customer")
    if invoice is not None and invoice["customer"] != customer["id"]:
        raise invalid("The invoice belongs to a different customer.", "invoice")
    quantity = as_int(params, "quantity") or 1
    price = None
    pricing = as_dict(params, "pricing")
    price_data = as_dict(params, "price_data")
    if pricing.get("price"):
        price = state.get(pricing["price"], "price", param="pricing[price]")
        unit_amount, currency = price["unit_amount"], price["currency"]
        description = state.product_name(price["product"])
    elif price_data:
        if not price_data.get("product"):
            raise missing("price_data[product]")
        product = state.get(price_data["product"], "product", param="price_data[product]")
        currency = (price_data.get("currency") or "").lower()
        if not currency:
            raise missing("price_data[currency]")
        unit_amount = as_int(price_data, "unit_amount")
        if unit_amount is None:
            raise missing("price_data[unit_amount]")
        description = product["name"]
    else:
        amount = as_int(params, "amount")
        if amount is None:
            raise missing("amount")
        currency = (params.get("currency") or "").lower()
        if not currency:
            raise missing("currency")
        unit_amount, quantity = amount, 1
        description = "Invoice item"
    if invoice is not None and currency != invoice["currency"]:
        raise invalid("The invoice item's currency must match the invoice's currency.", "currency")
    sub_id = None
    if params.get("subscription"):
        sub_id = state.get(params["subscription"], "subscription", param="subscription")["id"]
    period = as_dict(params, "period")
    item = invoices.new_item(
        state,
        customer=customer["id"],
        currency=currency,
        unit_amount=unit_amount,
        quantity=quantity,
        description=as_str(params, "description") or description,
        price=price,
        period=(as_int(period, "start"), as_int(period, "end")) if period else None,
        subscription=sub_id,
        metadata=merge_metadata({}, params.get("metadata")),
    )
    if invoice is not None:
        invoices.attach_item(state, invoice, item)
    return item


def delete_invoiceitem(state: State, params: dict[str, Any], item_id: str) -> dict[str, Any]:
    """DELETE /v1/invoiceitems/{id} (only while pending or on a draft)."""
    del params
    item = state.get(item_id, "invoiceitem", status=404)
    if item["invoice"] is not None:
        invoice = state.objects[item["invoice"]]
        if invoice["status"] != "draft":
            raise invalid("You can only delete invoice items on draft invoices.")
        invoice["lines"]["data"] = [
            line
            for line in invoice["lines"]["data"]
            if ((line["parent"] or {}).get("invoice_item_details") or {}).get("invoice_item")
            != item_id
        ]
        invoices.recompute(invoice)
    item["deleted"] = True
    state.emit("invoiceitem.deleted", item)
    return {"id": item_id, "object": "invoiceitem", "deleted": True}


def list_invoiceitems(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/invoiceitems (filters: customer, invoice, pending)."""
    pending = as_bool(params, "pending")

    def keep(ii: dict[str, Any]) -> bool:
        return (
            (not params.get("customer") or ii["customer"] == params["customer"])
            and (not params.get("invoice") or ii["invoice"] == params["invoice"])
            and (pending is None or (ii["invoice"] is None) == pending)
        )

    return state.paginate(state.all("invoiceitem", keep), params, "/v1/invoiceitems")


ROUTES = [
    ("POST", "/v1/invoices", allowed.INVOICE_CREATE, create_invoice),
    ("GET", "/v1/invoices", allowed.INVOICE_LIST, list_invoices),
    ("GET", "/v1/invoices/{id}", allowed.RETRIEVE, retriever("invoice")),
    ("POST", "/v1/invoices/{id}", allowed.INVOICE_UPDATE, update_invoice),
    (
        "GET",
        "/v1/invoices/{id}/lines",
        allowed.RETRIEVE | {"limit", "starting_after", "ending_before"},
        list_lines,
    ),
    ("POST", "/v1/invoices/{id}/finalize", allowed.INVOICE_FINALIZE, finalize_invoice),
    ("POST", "/v1/invoices/{id}/pay", allowed.INVOICE_PAY, pay_invoice),
    ("POST", "/v1/invoices/{id}/void", allowed.RETRIEVE, void_invoice),
    ("POST", "/v1/invoiceitems", allowed.INVOICEITEM_CREATE, create_invoiceitem),
    ("GET", "/v1/invoiceitems", allowed.INVOICEITEM_LIST, list_invoiceitems),
    ("GET", "/v1/invoiceitems/{id}", allowed.RETRIEVE, retriever("invoiceitem")),
    ("DELETE", "/v1/invoiceitems/{id}", frozenset(), delete_invoiceitem),
]
