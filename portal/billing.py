"""Every Stripe call the portal makes: tier prices, checkout, upgrade charges, portal, refunds.

Amounts always come from our tier rows (core.pricing), never from a form. Every POST carries our
own deterministic idempotency key, so a retried request can never charge or create twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import stripe
from flask import current_app

from clients.stripe import make_stripe_client
from core.models import Provision
from core.models import Tier
from core.models import Upgrade
from core.models import User
from core.pricing import UpgradeQuote


class BillingError(RuntimeError):
    """A Stripe operation failed; ``student_message`` is safe to show."""

    def __init__(self, message: str, *, student_message: str | None = None) -> None:
        super().__init__(message)
        self.student_message = student_message or (
            "Our payment provider did not answer. Nothing was charged; please try again in a minute."
        )


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject (not a dict since SDK 15) as a plain dict."""
    if obj is None:
        return {}
    return dict(obj.to_dict()) if hasattr(obj, "to_dict") else dict(obj)


def stripe_client() -> stripe.StripeClient:
    """A StripeClient for the app's settings."""
    return make_stripe_client(current_app.extensions["settings"])


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except stripe.CardError as exc:
        raise BillingError(
            f"{what}: card declined ({exc.code})",
            student_message="Your card was declined. Nothing was changed; update your card in Billing and try again.",
        ) from exc
    except stripe.StripeError as exc:
        raise BillingError(f"{what}: {type(exc).__name__}: {exc.user_message or exc}") from exc


def ensure_tier_prices(
    tier: Tier, *, changed_setup: bool = False, changed_monthly: bool = False
) -> list[str]:
    """Create the tier's Stripe product and any missing or repriced prices; archive replaced ones.

    Stripe prices are immutable, so a new amount means a new price and the old one is archived.
    Returns the archived price ids. The caller commits the new ids.
    """
    client = stripe_client()
    meta = {"tier_id": str(tier.id), "tier_slug": tier.slug}
    # Checkout names each line by its price's product: the fees get one product each, so the
    # page says which line is the monthly fee and which the one-time setup fee.
    names = {
        "monthly": f"Outbound infrastructure, {tier.name} package: monthly fee",
        "setup": f"Outbound infrastructure, {tier.name} package: one-time setup fee",
    }
    if tier.stripe_product_id is None:
        product = _call(
            "create product",
            client.v1.products.create,
            {"name": names["monthly"], "metadata": meta},
            {"idempotency_key": f"tier:{tier.id}:product"},
        )
        tier.stripe_product_id = product.id
    else:
        _call(
            "update product",
            client.v1.products.update,
            tier.stripe_product_id,
            {"name": names["monthly"], "metadata": meta},
        )
        if tier.stripe_setup_price_id is not None and not changed_setup:
            # A setup price made when both fees shared the tier's product would now read
            # "monthly fee": give it a product of its own (a new price; the old one is archived).
            setup = _call("retrieve price", client.v1.prices.retrieve, tier.stripe_setup_price_id)
            changed_setup = setup.product == tier.stripe_product_id
    archived = []
    wanted = (
        ("setup", tier.setup_cents, "stripe_setup_price_id", changed_setup, None),
        (
            "monthly",
            tier.monthly_cents,
            "stripe_monthly_price_id",
            changed_monthly,
            {"interval": "month"},
        ),
    )
    for kind, amount, attr, changed, recurring in wanted:
        old = getattr(tier, attr)
        if old is not None and not changed:
            continue
        if kind == "setup" and amount == 0:
            # A zero setup fee needs no line item at all.
            setattr(tier, attr, None)
        else:
            product: dict[str, Any] = (
                {"product_data": {"name": names["setup"], "metadata": meta}}
                if kind == "setup"
                else {"product": tier.stripe_product_id}
            )
            params: dict[str, Any] = {
                **product,
                "currency": tier.currency,
                "unit_amount": amount,
                "nickname": f"{tier.name} {kind}",
                "metadata": {**meta, "kind": kind},
            }
            if recurring:
                params["recurring"] = recurring
            # Keyed on what it replaces: resubmitting the same change reuses the same price.
            key = f"tier:{tier.id}:{kind}:{amount}:{tier.currency}:{old or 'none'}"
            price = _call("create price", client.v1.prices.create, params, {"idempotency_key": key})
            setattr(tier, attr, price.id)
        if old is not None:
            _call("archive price", client.v1.prices.update, old, {"active": False})
            archived.append(old)
    return archived


@dataclass(frozen=True)
class Checkout:
    """A created Checkout Session."""

    id: str
    url: str


def checkout_key(provision_id: int, params: dict[str, Any], attempt: int) -> str:
    """Idempotency key of a Checkout Session: the same request replays the same open session.

    Derived from every parameter, so a changed price, customer or URL never collides with an
    earlier key (Stripe refuses a key reused with other parameters).
    """
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:24]
    return f"checkout:{provision_id}:{attempt}:{digest}"


def create_checkout(
    provision: Provision, tier: Tier, user: User, *, attempt: int, order_id: int
) -> Checkout:
    """Create the subscription-mode Checkout Session: monthly price plus the one-time setup fee.

    ``order_id`` names the snapshot of what this session sells (portal/orders.py); it goes into
    the session's and the subscription's metadata, so fulfilment and refunds find it from Stripe.
    """
    public = current_app.config["PUBLIC_URL"]
    if tier.stripe_monthly_price_id is None:
        raise BillingError("tier has no monthly price")
    line_items = [{"price": tier.stripe_monthly_price_id, "quantity": 1}]
    if tier.stripe_setup_price_id:
        line_items.append({"price": tier.stripe_setup_price_id, "quantity": 1})
    metadata = {
        "provision_id": str(provision.id),
        "user_id": str(user.id),
        "order_id": str(order_id),
        "kind": "provision",
    }
    params: dict[str, Any] = {
        "mode": "subscription",
        "line_items": line_items,
        "success_url": f"{public}/wizard/success?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{public}/wizard/review?cancelled=1",
        "client_reference_id": str(provision.id),
        # Session metadata is not copied to the subscription: set both (docs/stripe.md 1.2).
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
    }
    if provision.stripe_customer_id:
        params["customer"] = provision.stripe_customer_id
    else:
        params["customer_email"] = user.email
    key = checkout_key(provision.id, params, attempt)
    session = _call(
        "create checkout session",
        stripe_client().v1.checkout.sessions.create,
        params,
        {"idempotency_key": key},
    )
    if not session.url:
        raise BillingError("checkout session has no url (not open)")
    return Checkout(session.id, session.url)


def expire_checkout(session_id: str) -> None:
    """Expire an open Checkout Session so an abandoned tab cannot be paid later (best effort)."""
    try:
        stripe_client().v1.checkout.sessions.expire(session_id)
    except stripe.StripeError:
        # Already complete or expired: nothing to do.
        pass


def retrieve_checkout(session_id: str) -> Any:
    """Read a Checkout Session from Stripe."""
    return _call(
        "retrieve checkout session", stripe_client().v1.checkout.sessions.retrieve, session_id
    )


def find_checkout(session_id: str) -> Any | None:
    """Read a Checkout Session and its line items from Stripe; None when Stripe has no such session.

    Any other failure raises BillingError (the caller answers "retry later"): an unreachable
    Stripe is never taken as "unknown".
    """
    try:
        return stripe_client().v1.checkout.sessions.retrieve(session_id, {"expand": ["line_items"]})
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing" or exc.http_status == 404:
            return None
        raise BillingError(f"retrieve checkout session: {exc}") from exc
    except stripe.StripeError as exc:
        raise BillingError(f"retrieve checkout session: {type(exc).__name__}: {exc}") from exc


def billing_portal_url(customer_id: str) -> str:
    """Create a Stripe customer portal session and return its URL."""
    public = current_app.config["PUBLIC_URL"]
    session = _call(
        "create portal session",
        stripe_client().v1.billing_portal.sessions.create,
        {"customer": customer_id, "return_url": f"{public}/dashboard"},
    )
    return str(session.url)


@dataclass(frozen=True)
class UpgradeCharge:
    """Where the two payments of an upgrade stand after the charge attempt."""

    fee_invoice_id: str | None
    fee_paid: bool
    proration_invoice_id: str | None
    proration_paid: bool


def charge_upgrade(
    upgrade: Upgrade, provision: Provision, target: Tier, quote: UpgradeQuote
) -> UpgradeCharge:
    """Charge an upgrade: the prorated subscription change, then the extra setup fee.

    The price change uses ``pending_if_incomplete`` so the subscription moves to the new price
    only once its proration invoice is paid. The extra setup fee is a separate invoice because
    one-time items on the subscription stay pending under flexible billing (docs/stripe.md 3.2).
    """
    if not provision.stripe_subscription_id or not provision.stripe_customer_id:
        raise BillingError("provision has no subscription")
    if target.stripe_monthly_price_id is None:
        raise BillingError("target tier has no monthly price")
    client = stripe_client()
    meta = {"upgrade_id": str(upgrade.id), "provision_id": str(provision.id), "kind": "upgrade"}
    subscription = _call(
        "retrieve subscription", client.v1.subscriptions.retrieve, provision.stripe_subscription_id
    )
    item = subscription["items"].data[0]
    proration_invoice_id = None
    proration_paid = False
    if item.price.id == target.stripe_monthly_price_id:
        # Already moved (a retried request): nothing more to pay for the subscription.
        proration_paid = subscription.pending_update is None
        proration_invoice_id = upgrade.stripe_proration_invoice_id
    else:
        updated = _call(
            "update subscription",
            client.v1.subscriptions.update,
            provision.stripe_subscription_id,
            {
                "items": [{"id": item.id, "price": target.stripe_monthly_price_id}],
                "proration_behavior": "always_invoice",
                "payment_behavior": "pending_if_incomplete",
                "metadata": {**_plain(subscription.metadata), "upgrade_id": str(upgrade.id)},
            },
            {"idempotency_key": f"upgrade:{upgrade.id}:subscription"},
        )
        proration_invoice_id = (
            updated.latest_invoice
            if isinstance(updated.latest_invoice, str)
            else (updated.latest_invoice.id if updated.latest_invoice else None)
        )
        proration_paid = updated.pending_update is None
    fee_invoice_id = upgrade.stripe_invoice_id
    fee_paid = quote.extra_setup_cents == 0
    if quote.extra_setup_cents > 0:
        if fee_invoice_id is None:
            invoice = _call(
                "create fee invoice",
                client.v1.invoices.create,
                {
                    "customer": provision.stripe_customer_id,
                    "auto_advance": False,
                    "description": f"Upgrade to {target.name}: additional setup",
                    "metadata": meta,
                },
                {"idempotency_key": f"upgrade:{upgrade.id}:fee-invoice"},
            )
            fee_invoice_id = invoice.id
            _call(
                "create fee item",
                client.v1.invoice_items.create,
                {
                    "customer": provision.stripe_customer_id,
                    "invoice": invoice.id,
                    "amount": quote.extra_setup_cents,
                    "currency": target.currency,
                    "description": f"Setup of {quote.extra_domains} more domains ({target.name})",
                    "metadata": meta,
                },
                {"idempotency_key": f"upgrade:{upgrade.id}:fee-item"},
            )
        current = _call("retrieve fee invoice", client.v1.invoices.retrieve, fee_invoice_id)
        if current.status == "paid":
            fee_paid = True
        else:
            paid = _call(
                "pay fee invoice",
                client.v1.invoices.pay,
                fee_invoice_id,
                {},
                {"idempotency_key": f"upgrade:{upgrade.id}:fee-pay:{current.attempt_count or 0}"},
            )
            fee_paid = paid.status == "paid"
    return UpgradeCharge(fee_invoice_id, fee_paid, proration_invoice_id, proration_paid)


def checkout_payment_intent(session_id: str) -> str | None:
    """Return the PaymentIntent that paid a checkout's first invoice, if any."""
    client = stripe_client()
    session = _call("retrieve checkout session", client.v1.checkout.sessions.retrieve, session_id)
    if not session.invoice:
        return session.payment_intent if isinstance(session.payment_intent, str) else None
    invoice = _call(
        "retrieve invoice",
        client.v1.invoices.retrieve,
        session.invoice,
        {"expand": ["payments"]},
    )
    for payment in invoice.payments.data if invoice.payments else []:
        if payment.status == "paid" and payment.payment.payment_intent:
            intent = payment.payment.payment_intent
            return intent if isinstance(intent, str) else intent.id
    return None


def refund(provision: Provision, *, amount_cents: int | None, reason_key: str) -> Any:
    """Refund the checkout payment of a provision (all of it, or ``amount_cents``)."""
    if not provision.stripe_checkout_session_id:
        raise BillingError(
            "no checkout session", student_message="This order has no payment to refund."
        )
    intent = checkout_payment_intent(provision.stripe_checkout_session_id)
    if intent is None:
        raise BillingError(
            "no paid payment", student_message="No completed payment was found for this order."
        )
    params: dict[str, Any] = {
        "payment_intent": intent,
        "reason": "requested_by_customer",
        "metadata": {"provision_id": str(provision.id)},
    }
    if amount_cents is not None:
        params["amount"] = amount_cents
    try:
        return stripe_client().v1.refunds.create(params, {"idempotency_key": reason_key})
    except stripe.InvalidRequestError as exc:
        raise BillingError(
            f"refund refused: {exc.user_message or exc}",
            student_message=f"Stripe refused the refund: {exc.user_message or exc}",
        ) from exc
    except stripe.StripeError as exc:
        raise BillingError(f"refund: {exc}") from exc


def cancel_subscription(provision: Provision) -> None:
    """Cancel the provision's subscription now (no more charges)."""
    if not provision.stripe_subscription_id:
        return
    try:
        stripe_client().v1.subscriptions.cancel(provision.stripe_subscription_id)
    except stripe.InvalidRequestError as exc:
        # Already canceled: that is the state we want.
        if "canceled" not in str(exc):
            raise BillingError(f"cancel subscription: {exc}") from exc
    except stripe.StripeError as exc:
        raise BillingError(f"cancel subscription: {exc}") from exc
