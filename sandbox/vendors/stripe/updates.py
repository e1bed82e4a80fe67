"""Subscription API: retrieve, list, cancel, and update with prorations and payment behaviours."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.vendors.stripe import invoices
from sandbox.vendors.stripe import params as allowed
from sandbox.vendors.stripe import subscriptions as subs
from sandbox.vendors.stripe.errors import StripeError
from sandbox.vendors.stripe.errors import card_declined
from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.errors import missing
from sandbox.vendors.stripe.forms import as_bool
from sandbox.vendors.stripe.forms import as_dict
from sandbox.vendors.stripe.forms import as_int
from sandbox.vendors.stripe.forms import as_list
from sandbox.vendors.stripe.forms import as_str
from sandbox.vendors.stripe.forms import merge_metadata
from sandbox.vendors.stripe.periods import add_interval
from sandbox.vendors.stripe.periods import day_label
from sandbox.vendors.stripe.periods import prorate
from sandbox.vendors.stripe.periods import remaining_fraction
from sandbox.vendors.stripe.store import State
from sandbox.vendors.stripe.store import retriever

PAYMENT_BEHAVIORS = (
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
)
PRORATION_BEHAVIORS = ("create_prorations", "always_invoice", "none")
# docs.stripe.com/billing/subscriptions/pending-updates-reference (+ metadata since dahlia)
PENDING_ALLOWED = frozenset(
    {
        "items",
        "proration_behavior",
        "proration_date",
        "billing_cycle_anchor",
        "trial_end",
        "trial_from_plan",
        "add_invoice_items",
        "expand",
        "payment_behavior",
        "metadata",
    }
)
# Accepted by Stripe but not simulated: refuse rather than silently ignore them.
NOT_SIMULATED = (
    "trial_end",
    "trial_from_plan",
    "pause_collection",
    "discounts",
    "billing_schedules",
)
PENDING_TTL_S = 23 * 3600


def _choice(params: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = params.get(name) or choices[0]
    if value not in choices:
        raise invalid(f"Invalid {name}: must be one of {', '.join(choices)}", name)
    return value


def _anchor_reset(params: dict[str, Any]) -> bool:
    raw = params.get("billing_cycle_anchor")
    if raw is None:
        return False
    if not isinstance(raw, dict):
        # 2026-09-30.endive made this a hash; the old string form is refused.
        raise invalid("Invalid object", "billing_cycle_anchor")
    kind = raw.get("type")
    if kind not in ("now", "unchanged"):
        raise invalid(
            "Invalid billing_cycle_anchor[type]: must be one of now, unchanged",
            "billing_cycle_anchor[type]",
        )
    return kind == "now"


def _item_specs(state: State, sub: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    specs = []
    current = {it["id"]: it for it in sub["items"]["data"]}
    for i, raw in enumerate(as_list(params, "items")):
        where = f"items[{i}]"
        if not isinstance(raw, dict):
            raise invalid("Invalid object", where)
        deleted = bool(as_bool(raw, "deleted", False))
        item_id = raw.get("id")
        if item_id and item_id not in current:
            raise invalid(
                f"No such subscription item: '{item_id}'", f"{where}[id]", "resource_missing"
            )
        if raw.get("price_data"):
            raise invalid(
                "The Stripe sandbox does not simulate price_data on subscription items; "
                "create a Price first.",
                f"{where}[price_data]",
            )
        price = None
        if raw.get("price"):
            price = state.get(raw["price"], "price", param=f"{where}[price]")
            _check_recurring(price, sub, f"{where}[price]")
        elif not item_id:
            raise missing(f"{where}[price]")
        if deleted and not item_id:
            raise missing(f"{where}[id]")
        quantity = as_int(raw, "quantity")
        if quantity is not None and quantity < 1 and not deleted:
            raise invalid("This value must be greater than or equal to 1.", f"{where}[quantity]")
        specs.append(
            {
                "id": item_id or state.new_id("si_"),
                "price": price["id"] if price else None,
                "quantity": quantity,
                "deleted": deleted,
            }
        )
    remaining = {it["id"] for it in sub["items"]["data"]} | {s["id"] for s in specs}
    if not remaining - {s["id"] for s in specs if s["deleted"]}:
        raise invalid("A subscription must have at least one active item.", "items")
    return specs


def _check_recurring(price: dict[str, Any], sub: dict[str, Any], param: str) -> None:
    if price["type"] != "recurring":
        raise invalid(
            "The price specified is set to `type=one_time` but this field only accepts "
            "prices with `type=recurring`.",
            param,
        )
    if not price["active"]:
        raise invalid(
            "The price specified is inactive. This field only accepts active prices.", param
        )
    if price["currency"] != sub["currency"]:
        raise invalid(
            f"The price's currency ({price['currency']}) must match the subscription's "
            f"currency ({sub['currency']}).",
            param,
        )


def _one_time_specs(state: State, sub: dict[str, Any], params: dict[str, Any]):
    specs = []
    for i, raw in enumerate(as_list(params, "add_invoice_items")):
        where = f"add_invoice_items[{i}]"
        if not isinstance(raw, dict):
            raise invalid("Invalid object", where)
        quantity = as_int(raw, "quantity") or 1
        if raw.get("price"):
            price = state.get(raw["price"], "price", param=f"{where}[price]")
            if price["type"] != "one_time":
                raise invalid(
                    "The price specified is set to `type=recurring` but this field only "
                    "accepts prices with `type=one_time`.",
                    f"{where}[price]",
                )
            unit, currency, product = price["unit_amount"], price["currency"], price["product"]
        elif raw.get("price_data"):
            data = as_dict(raw, "price_data")
            if not data.get("product"):
                raise missing(f"{where}[price_data][product]")
            product = state.get(data["product"], "product", param=f"{where}[price_data][product]")[
                "id"
            ]
            currency = (data.get("currency") or "").lower()
            unit = as_int(data, "unit_amount")
            if unit is None:
                raise missing(f"{where}[price_data][unit_amount]")
            price = None
        else:
            raise missing(f"{where}[price]")
        if currency != sub["currency"]:
            raise invalid("The currency must match the subscription's currency.", where)
        specs.append({"price": price, "unit": unit, "quantity": quantity, "product": product})
    return specs


def _resulting(state: State, sub: dict[str, Any], specs: list[dict[str, Any]]):
    """(item id, price, quantity) of every item once the change is applied."""
    result = {
        it["id"]: (state.objects.get(it["price"]["id"]) or it["price"], it["quantity"])
        for it in sub["items"]["data"]
    }
    for spec in specs:
        if spec["deleted"]:
            result.pop(spec["id"], None)
            continue
        price, qty = result.get(spec["id"], (None, 1))
        if spec["price"]:
            price = state.objects[spec["price"]]
        result[spec["id"]] = (price, spec["quantity"] if spec["quantity"] is not None else qty)
    return result


def _proration_items(
    state: State,
    sub: dict[str, Any],
    specs: list[dict[str, Any]],
    at: int,
    reset_anchor: bool,
) -> list[dict[str, Any]]:
    start, end = subs.period(sub)
    fraction = remaining_fraction(start, end, at)
    before = {it["id"]: (it["price"], it["quantity"]) for it in sub["items"]["data"]}
    after = _resulting(state, sub, specs)
    created = []
    for item_id in list(before) + [i for i in after if i not in before]:
        old, new = before.get(item_id), after.get(item_id)
        if old is not None and new is not None and (old[0]["id"], old[1]) == (new[0]["id"], new[1]):
            if not reset_anchor:
                continue
        if old is not None:
            created.append(
                _proration(state, sub, item_id, old, -1, fraction, at, end, "Unused time on")
            )
        if new is not None and not reset_anchor:
            created.append(
                _proration(state, sub, item_id, new, 1, fraction, at, end, "Remaining time on")
            )
    return [ii for ii in created if ii["amount"] != 0]


def _proration(state, sub, item_id, price_qty, sign, fraction, at, end, label):
    price, quantity = price_qty
    name = state.product_name(price["product"])
    amount = sign * prorate(price["unit_amount"], quantity, fraction)
    return invoices.new_item(
        state,
        customer=sub["customer"],
        currency=sub["currency"],
        unit_amount=amount,
        quantity=1,
        description=f"{label} {quantity} × {name} after {day_label(at)}",
        price=state.objects.get(price["id"]),
        period=(at, end),
        subscription=sub["id"],
        subscription_item=item_id,
        proration=True,
    )


def update_subscription(state: State, params: dict[str, Any], sub_id: str) -> dict[str, Any]:
    """POST /v1/subscriptions/{id}."""
    sub = state.get(sub_id, "subscription", status=404)
    if sub["status"] in subs.ENDED:
        raise invalid(
            "You cannot update a subscription that is `canceled` or `incomplete_expired`."
        )
    for name in NOT_SIMULATED:
        if params.get(name) not in (None, ""):
            raise invalid(f"The Stripe sandbox does not simulate `{name}`.", name)
    payment_behavior = _choice(params, "payment_behavior", PAYMENT_BEHAVIORS)
    proration = _choice(params, "proration_behavior", PRORATION_BEHAVIORS)
    if payment_behavior == "pending_if_incomplete":
        for name in params:
            if name not in PENDING_ALLOWED:
                raise invalid(
                    "When `payment_behavior=pending_if_incomplete`, you may only update "
                    "these parameters: " + ", ".join(sorted(PENDING_ALLOWED)) + ".",
                    name,
                )
    reset_anchor = _anchor_reset(params)
    at = as_int(params, "proration_date") or state.now()
    specs = _item_specs(state, sub, params)
    extras = _one_time_specs(state, sub, params)
    current_interval = sub["items"]["data"][0]["price"]["recurring"]
    for price, _qty in _resulting(state, sub, specs).values():
        rec = price["recurring"]
        if (rec["interval"], rec["interval_count"]) != (
            current_interval["interval"],
            current_interval["interval_count"],
        ):
            reset_anchor = True  # Stripe resets the anchor when the interval changes
    cancel_flag = as_bool(params, "cancel_at_period_end")

    before = state.snapshot(sub)
    saved = copy.deepcopy(sub)
    metadata = merge_metadata(sub["metadata"], params.get("metadata"))
    if payment_behavior != "pending_if_incomplete":
        sub["metadata"] = metadata
    if "description" in params:
        sub["description"] = as_str(params, "description")
    if cancel_flag is not None:
        details = as_dict(params, "cancellation_details")
        subs.cancel_fields(state, sub, cancel_flag, details.get("comment"))
    if "cancel_at" in params:
        sub["cancel_at"] = as_int(params, "cancel_at")
    change = {
        "invoice": None,
        "items": specs,
        "reset_anchor": at if reset_anchor else None,
        "metadata": metadata,
    }

    prorations = []
    if proration != "none" and (specs or reset_anchor):
        prorations = _proration_items(state, sub, specs, at, reset_anchor)
    fees = [
        invoices.new_item(
            state,
            customer=sub["customer"],
            currency=sub["currency"],
            unit_amount=fee["unit"],
            quantity=fee["quantity"],
            description=state.product_name(fee["product"]),
            price=fee["price"],
            subscription=sub["id"],
        )
        for fee in extras
    ]
    classic = sub["billing_mode"]["type"] == "classic"
    invoice_now = reset_anchor or (
        proration == "always_invoice" and bool(prorations or (classic and fees))
    )
    if not invoice_now:
        subs.apply_change(state, sub, change)
    else:
        try:
            _invoice_change(
                state, sub, change, prorations, fees, payment_behavior, at, reset_anchor
            )
        except StripeError:
            # error_if_incomplete: Stripe rolls the whole update back (the voided invoice stays).
            sub.clear()
            sub.update(saved)
            for ii in fees + prorations:
                ii["deleted"] = True
            raise
    if state.snapshot(sub) != before:
        state.emit("customer.subscription.updated", sub, before)
    return sub


def _invoice_change(state, sub, change, prorations, fees, payment_behavior, at, reset_anchor):
    customer = state.objects[sub["customer"]]
    invoice = invoices.new_invoice(
        state,
        customer,
        currency=sub["currency"],
        billing_reason="subscription_update",
        subscription=sub,
    )
    invoice["parent"]["subscription_details"]["subscription_proration_date"] = at
    invoice["_fail_to_past_due"] = payment_behavior in ("allow_incomplete", "default_incomplete")
    for ii in prorations:
        invoices.attach_item(state, invoice, ii)
    if reset_anchor:
        for item_id, (price, qty) in _resulting(state, sub, change["items"]).items():
            rec = price["recurring"]
            line_item = {"id": item_id, "price": price, "quantity": qty, "subscription": sub["id"]}
            end = add_interval(at, rec["interval"], rec["interval_count"])
            invoices.add_subscription_line(state, invoice, line_item, (at, end))
    if sub["billing_mode"]["type"] == "classic":
        # Classic mode bills add_invoice_items on this immediate invoice; flexible mode leaves
        # them pending until the next regular invoice (stripe.md §3.2).
        for ii in fees:
            invoices.attach_item(state, invoice, ii)
    sub["latest_invoice"] = invoice["id"]
    invoices.finalize(state, invoice)
    outcome = (
        "succeeded" if invoice["status"] == "paid" else invoices.attempt_payment(state, invoice)
    )
    if outcome == "succeeded":
        subs.apply_change(state, sub, change)
    elif payment_behavior == "pending_if_incomplete":
        change["invoice"] = invoice["id"]
        sub["_pending_change"] = change
        sub["pending_update"] = {
            "billing_cycle_anchor": change["reset_anchor"],
            "cancel_at_period_end": None,
            "discount": None,
            "discounts": None,
            "expires_at": state.now() + PENDING_TTL_S,
            "metadata": change["metadata"] if change["metadata"] != sub["metadata"] else None,
            "subscription_items": [
                {
                    "id": item_id,
                    "object": "subscription_item",
                    "price": state.render(price),
                    "quantity": qty,
                }
                for item_id, (price, qty) in _resulting(state, sub, change["items"]).items()
            ],
            "trial_end": None,
            "trial_from_plan": None,
        }
    elif payment_behavior == "error_if_incomplete":
        invoices.void(state, invoice)
        intent = state.objects[invoice["_intent"]]
        raise card_declined({"payment_intent": state.render(intent)})
    else:
        subs.apply_change(state, sub, change)


def cancel_subscription(state: State, params: dict[str, Any], sub_id: str) -> dict[str, Any]:
    """DELETE /v1/subscriptions/{id}: cancel now."""
    sub = state.get(sub_id, "subscription", status=404)
    if sub["status"] in subs.ENDED:
        raise invalid(f"No such subscription: '{sub_id}' (it has already been canceled).", "id")
    if as_bool(params, "invoice_now") or as_bool(params, "prorate"):
        raise invalid("The Stripe sandbox does not simulate invoice_now or prorate on cancel.")
    details = as_dict(params, "cancellation_details")
    subs.cancel(state, sub, comment=details.get("comment"))
    return sub


def list_subscriptions(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """GET /v1/subscriptions (customer, price, status; canceled ones only when asked)."""
    status = params.get("status")

    def keep(sub: dict[str, Any]) -> bool:
        if status == "ended":
            status_ok = sub["status"] in subs.ENDED
        elif status and status != "all":
            status_ok = sub["status"] == status
        else:
            status_ok = status == "all" or sub["status"] not in subs.ENDED
        prices = {it["price"]["id"] for it in sub["items"]["data"]}
        return (
            status_ok
            and (not params.get("customer") or sub["customer"] == params["customer"])
            and (not params.get("price") or params["price"] in prices)
        )

    return state.paginate(state.all("subscription", keep), params, "/v1/subscriptions")


ROUTES = [
    ("GET", "/v1/subscriptions", allowed.SUBSCRIPTION_LIST, list_subscriptions),
    ("GET", "/v1/subscriptions/{id}", allowed.RETRIEVE, retriever("subscription")),
    ("POST", "/v1/subscriptions/{id}", allowed.SUBSCRIPTION_UPDATE, update_subscription),
    ("DELETE", "/v1/subscriptions/{id}", allowed.SUBSCRIPTION_CANCEL, cancel_subscription),
]
