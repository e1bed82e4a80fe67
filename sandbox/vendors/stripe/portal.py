"""Billing portal sessions: POST /v1/billing_portal/sessions (the page itself is in pages.py)."""

from __future__ import annotations

from typing import Any

from sandbox.vendors.stripe import params as allowed
from sandbox.vendors.stripe.errors import invalid
from sandbox.vendors.stripe.forms import as_str
from sandbox.vendors.stripe.store import State

CONFIGURATION_ID = "bpc_sandboxdefault"


def create_portal_session(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/billing_portal/sessions."""
    customer = state.get(as_str(params, "customer", required=True), "customer", param="customer")
    if params.get("flow_data"):
        raise invalid("The Stripe sandbox does not simulate portal flow_data.", "flow_data")
    session = state.base(
        "bps_",
        "billing_portal.session",
        configuration=as_str(params, "configuration") or CONFIGURATION_ID,
        customer=customer["id"],
        flow=None,
        locale=as_str(params, "locale"),
        on_behalf_of=None,
        return_url=as_str(params, "return_url"),
        url=None,
    )
    session["url"] = f"{state.ctx.public_url}/stripe/billing/{session['id']}"
    return state.add(session)


ROUTES = [
    ("POST", "/v1/billing_portal/sessions", allowed.PORTAL_SESSION_CREATE, create_portal_session),
]
