"""Checkout Sessions: the API (create, retrieve, list, expire, line items) and their completion."""

from __future__ import annotations

from typing import Any

from sandbox.vendors.stripe import invoices
from sandbox.vendors.stripe import params as allowed
from sandbox.vendors.stripe import payments
from sandbox.vendors.stripe import subscriptions
from sandbox.vendors.stripe.catalog import new_customer
from sandbox.vendors.stripe.catalog import new_price
from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.errors import missing
from sandbox.vendors.stripe.forms import as_dict
from sandbox.vendors.stripe.forms import as_int
from sandbox.vendors.stripe.forms import as_list
from sandbox.vendors.stripe.forms import as_str
from sandbox.vendors.stripe.forms import merge_metadata
from sandbox.vendors.stripe.store import State

DEFAULT_TTL_S = 24 * 3600
SUBSCRIPTION_DATA = frozenset({"metadata", "billing_mode", "description"})
# Accepted by Stripe but not simulated: refuse rather than pretend.
NOT_SIMULATED = ("discounts", "setup_intent_data", "shipping_options", "optional_items")


def _line_items(state: State, params: dict[str, Any]) -> list[dict[str, Any]]:
    raw_items = as_list(params, "line_items")
    if not raw_items:
        raise missing("line_items")
    items = []
    for i, raw in enumerate(raw_items):
        where = f"line_items[{i}]"
        if not isinstance(raw, dict):
            raise invalid("Invalid object", where)
        if raw.get("price") and raw.get("price_data"):
            raise invalid("You may only specify one of these parameters: price, price_data.", where)
        if raw.get("price"):
            price = state.get(raw["price"], "price", param=f"{where}[price]")
            if not price["active"]:
                raise invalid(
                    "The price specified is inactive. This field only accepts active prices.",
                    f"{where}[price]",
                )
        elif raw.get("price_data"):
            price = new_price(state, as_dict(raw, "price_data"), f"{where}[price_data]")
        else:
            raise missing(f"{where}[price]")
        quantity = as_int(raw, "quantity")
        if quantity is None:
            raise missing(f"{where}[quantity]")
        if quantity < 1:
            raise invalid("This value must be greater than or equal to 1.", f"{where}[quantity]")
        items.append(_line_item(state, price, quantity))
    return items


def _line_item(state: State, price: dict[str, Any], quantity: int) -> dict[str, Any]:
    amount = price["unit_amount"] * quantity
    return {
        "id": state.new_id("li_"),
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": price["currency"],
        "description": state.product_name(price["product"]),
        "metadata": {},
        "price": state.render(price),
        "quantity": quantity,
    }


def _check_mode(mode: str, items: list[dict[str, Any]]) -> None:
    recurring = [li for li in items if li["price"]["type"] == "recurring"]
    if mode == "payment" and len(items) > 100:
        raise invalid("`payment` mode accepts at most 100 line items.", "line_items")
    if mode == "subscription" and max(len(recurring), len(items) - len(recurring)) > 20:
        raise invalid(
            "`subscription` mode accepts at most 20 recurring and 20 one-time line items.",
            "line_items",
        )
    if mode == "subscription" and not recurring:
        raise invalid(
            "You must provide at least one recurring price in `subscription` mode when using "
            "prices.",
            "line_items",
        )
    if mode == "payment" and recurring:
        raise invalid(
            "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices.",
            "line_items",
        )
    if len({li["currency"] for li in items}) > 1:
        raise invalid("All line items must use the same currency.", "line_items")
    intervals = {
        (li["price"]["recurring"]["interval"], li["price"]["recurring"]["interval_count"])
        for li in recurring
    }
    if len(intervals) > 1:
        raise invalid(
            "Checkout does not support multiple prices with different billing intervals.",
            "line_items",
        )


def _subscription_data(params: dict[str, Any], mode: str) -> dict[str, Any]:
    data = as_dict(params, "subscription_data")
    if data and mode != "subscription":
        raise invalid(
            f"You can not pass `subscription_data` in `{mode}` mode.", "subscription_data"
        )
    for key in data:
        if key not in SUBSCRIPTION_DATA:
            raise invalid(
                f"The Stripe sandbox does not simulate subscription_data[{key}].",
                f"subscription_data[{key}]",
            )
    kind = as_dict(data, "billing_mode").get("type") or "flexible"
    if kind not in ("classic", "flexible"):
        raise invalid(
            "Invalid subscription_data[billing_mode][type]: must be one of classic, flexible",
            "subscription_data[billing_mode][type]",
        )
    return {
        "metadata": merge_metadata({}, data.get("metadata"), "subscription_data[metadata]"),
        "billing_mode": kind,
    }


def create_session(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/checkout/sessions (modes payment and subscription, hosted UI)."""
    mode = as_str(params, "mode", required=True)
    if mode not in ("payment", "subscription", "setup"):
        raise invalid("Invalid mode: must be one of payment, setup, subscription", "mode")
    if mode == "setup":
        raise invalid("The Stripe sandbox does not simulate `setup` mode.", "mode")
    if (params.get("ui_mode") or "hosted_page") != "hosted_page":
        raise invalid(
            "The Stripe sandbox only simulates the hosted Checkout page (ui_mode=hosted_page).",
            "ui_mode",
        )
    for name in NOT_SIMULATED:
        if params.get(name) not in (None, ""):
            raise invalid(f"The Stripe sandbox does not simulate `{name}`.", name)
    items = _line_items(state, params)
    _check_mode(mode, items)
    sub_data = _subscription_data(params, mode)
    customer = None
    if params.get("customer"):
        if params.get("customer_email"):
            raise invalid(
                "You may only specify one of these parameters: customer, customer_email.",
                "customer_email",
            )
        customer = state.get(params["customer"], "customer", param="customer")
    creation = as_str(params, "customer_creation")
    if creation is not None:
        if mode == "subscription":
            raise invalid(
                "`customer_creation` can only be used in `payment` and `setup` mode.",
                "customer_creation",
            )
        if creation not in ("always", "if_required"):
            raise invalid(
                "Invalid customer_creation: must be one of always, if_required",
                "customer_creation",
            )
    if as_dict(params, "invoice_creation").get("enabled") == "true":
        raise invalid("The Stripe sandbox does not simulate invoice_creation.", "invoice_creation")
    reference = as_str(params, "client_reference_id")
    if reference is not None and len(reference) > 200:
        raise invalid("client_reference_id must be at most 200 characters.", "client_reference_id")
    now = state.now()
    expires_at = as_int(params, "expires_at") or now + DEFAULT_TTL_S
    if not now + 1800 <= expires_at <= now + DEFAULT_TTL_S:
        raise invalid(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from now.",
            "expires_at",
        )
    total = sum(li["amount_total"] for li in items)
    session = state.base(
        "cs_test_",
        "checkout.session",
        adaptive_pricing=None,
        after_expiration=None,
        allow_promotion_codes=None,
        amount_subtotal=total,
        amount_total=total,
        automatic_tax={"enabled": False, "liability": None, "provider": None, "status": None},
        billing_address_collection=None,
        cancel_url=as_str(params, "cancel_url"),
        client_reference_id=reference,
        client_secret=None,
        collected_information=None,
        consent=None,
        consent_collection=None,
        currency=items[0]["currency"],
        custom_fields=[],
        custom_text={
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        customer=customer["id"] if customer else None,
        customer_creation=None if mode == "subscription" else (creation or "if_required"),
        customer_details=None,
        customer_email=as_str(params, "customer_email"),
        discounts=[],
        expires_at=expires_at,
        invoice=None,
        invoice_creation=None,
        locale=as_str(params, "locale"),
        metadata=merge_metadata({}, params.get("metadata")),
        mode=mode,
        payment_intent=None,
        payment_link=None,
        payment_method_collection="always" if mode == "subscription" else None,
        payment_method_types=as_list(params, "payment_method_types") or ["card"],
        payment_status="unpaid",
        phone_number_collection={"enabled": False},
        recovered_from=None,
        saved_payment_method_options=None,
        setup_intent=None,
        shipping_address_collection=None,
        shipping_cost=None,
        shipping_options=[],
        status="open",
        submit_type=None,
        subscription=None,
        success_url=as_str(params, "success_url"),
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        ui_mode="hosted_page",
        url=None,
        _line_items=items,
        _subscription_data=sub_data,
        _async_due=None,
        _declines=0,
    )
    session["url"] = f"{state.ctx.public_url}/stripe/checkout/{session['id']}"
    if session["success_url"]:
        session["success_url"] = session["success_url"].replace(
            "{CHECKOUT_SESSION_ID}", session["id"]
        )
    return state.add(session)


def complete(
    state: State, session: dict[str, Any], *, method: str, email: str | None, name: str | None
):
    """Pay a session from the hosted page: method is card or bank_debit (settles later)."""
    customer = state.objects.get(session["customer"]) if session["customer"] else None
    email = email or session["customer_email"] or (customer or {}).get("email")
    if customer is None and (
        session["mode"] == "subscription" or session["customer_creation"] == "always"
    ):
        customer = new_customer(state, email, name)
        session["customer"] = customer["id"]
    session["customer_details"] = {
        "address": None,
        "email": email,
        "name": name or (customer or {}).get("name"),
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }
    items = session["_line_items"]
    if session["mode"] == "subscription":
        prices = [(state.objects[li["price"]["id"]], li["quantity"]) for li in items]
        sub, invoice = subscriptions.create_from_checkout(
            state,
            customer=customer,
            recurring=[p for p in prices if p[0]["type"] == "recurring"],
            one_time=[p for p in prices if p[0]["type"] == "one_time"],
            metadata=session["_subscription_data"]["metadata"],
            mode=session["_subscription_data"]["billing_mode"],
            method=method,
        )
        session.update(subscription=sub["id"], invoice=invoice["id"])
        paid = invoice["status"] == "paid"
    else:
        intent = payments.collect(
            state,
            amount=session["amount_total"],
            currency=session["currency"],
            customer=session["customer"],
            description=None,
            method=method,
            outcome="succeeded" if method == "card" else "processing",
            metadata=session["metadata"],
        )
        session["payment_intent"] = intent["id"]
        paid = intent["status"] == "succeeded"
    # Stripe's `url` is only present while the session is open.
    session.update(status="complete", payment_status="paid" if paid else "unpaid", url=None)
    if not paid and state.async_payment_delay_s is not None:
        session["_async_due"] = state.now() + state.async_payment_delay_s
    state.emit("checkout.session.completed", session)


def settle_async(state: State, session: dict[str, Any], succeeded: bool) -> bool:
    """Finish a delayed (bank debit) payment; return False when none is pending."""
    if session["status"] != "complete" or session["payment_status"] != "unpaid":
        return False
    session["_async_due"] = None
    if session["mode"] == "subscription":
        invoice = state.objects[session["invoice"]]
        if invoice["status"] != "open":
            return False
        invoices.settle_payment(state, invoice, succeeded)
    else:
        intent = state.objects[session["payment_intent"]]
        if intent["status"] != "processing":
            return False
        payments.settle(state, intent, succeeded)
    if succeeded:
        session["payment_status"] = "paid"
        state.emit("checkout.session.async_payment_succeeded", session)
    else:
        state.emit("checkout.session.async_payment_failed", session)
    return True


def expire(state: State, session: dict[str, Any]) -> None:
    """Close an open session (emitting checkout.session.expired)."""
    session.update(status="expired", url=None)
    state.emit("checkout.session.expired", session)


def expire_session(state: State, params: dict[str, Any], session_id: str) -> dict[str, Any]:
    """POST /v1/checkout/sessions/{id}/expire."""
    del params
    session = state.get(session_id, "checkout.session", status=404)
    if session["status"] != "open":
        raise invalid(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This session '
            f"has a status of `{session['status']}`.",
            "session",
        )
    expire(state, session)
    return session


def retrieve_session(state: State, params: dict[str, Any], session_id: str) -> dict[str, Any]:
    """GET /v1/checkout/sessions/{id} (expand[]=line_items supported)."""
    del params
    return state.get(session_id, "checkout.session", status=404)


def list_line_items(state: State, params: dict[str, Any], session_id: str) -> dict[str, Any]:
    """GET /v1/checkout/sessions/{id}/line_items."""
    session = state.get(session_id, "checkout.session", status=404)
    url = f"/v1/checkout/sessions/{session_id}/line_items"
    return state.paginate(list(session["_line_items"]), params, url)


def list_sessions(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/checkout/sessions (customer, subscription, payment_intent, status)."""

    def keep(s: dict[str, Any]) -> bool:
        return all(
            not params.get(field) or s[field] == params[field]
            for field in ("customer", "subscription", "payment_intent", "status")
        )

    return state.paginate(state.all("checkout.session", keep), params, "/v1/checkout/sessions")


ROUTES = [
    ("POST", "/v1/checkout/sessions", allowed.SESSION_CREATE, create_session),
    ("GET", "/v1/checkout/sessions", allowed.SESSION_LIST, list_sessions),
    ("GET", "/v1/checkout/sessions/{id}", allowed.RETRIEVE, retrieve_session),
    ("POST", "/v1/checkout/sessions/{id}/expire", allowed.SESSION_EXPIRE, expire_session),
    (
        "GET",
        "/v1/checkout/sessions/{id}/line_items",
        allowed.RETRIEVE | {"limit", "starting_after", "ending_before"},
        list_line_items,
    ),
]
