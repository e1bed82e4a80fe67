"""Hosted pages: the Checkout page (Pay / bank debit / Decline) and the billing portal, no JS."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.responses import RedirectResponse
from starlette.responses import Response
from starlette.routing import Route

from sandbox.vendors.stripe import checkout
from sandbox.vendors.stripe import subscriptions
from sandbox.vendors.stripe.invoices import money
from sandbox.vendors.stripe.periods import day_label
from sandbox.vendors.stripe.store import State

STYLE = """
body{font-family:system-ui,sans-serif;background:#f6f9fc;color:#1a1f36;margin:0}
main{max-width:560px;margin:40px auto;background:#fff;border-radius:8px;padding:32px;
box-shadow:0 2px 8px rgba(0,0,0,.08)}
.badge{background:#ffde92;color:#663c00;font-size:12px;padding:2px 6px;border-radius:4px}
table{width:100%;border-collapse:collapse;margin:16px 0}
td{padding:8px 0;border-bottom:1px solid #e3e8ee}td.amount{text-align:right}
.total td{font-weight:600;border-bottom:none}
label{display:block;margin:12px 0 4px;font-size:14px}
input[type=email],input[type=text]{width:100%;padding:8px;box-sizing:border-box}
button{display:block;width:100%;margin:10px 0;padding:12px;border:0;border-radius:6px;
font-size:16px;cursor:pointer;background:#635bff;color:#fff}
button.secondary{background:#e3e8ee;color:#1a1f36}button.danger{background:#df1b41}
.error{background:#fde2e4;color:#a41c2e;padding:10px;border-radius:6px}
.note{color:#697386;font-size:14px}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{STYLE}</style></head><body><main>"
        f'<p><strong>Sandbox Inc.</strong> <span class="badge">TEST MODE</span></p>{body}'
        "</main></body></html>"
    )
    return HTMLResponse(html, status_code=status)


def _base(request: Request) -> str:
    # Where this app is mounted (e.g. /stripe), so form actions work behind any host name.
    return request.scope.get("root_path", "")


def _lines_table(session: dict[str, Any]) -> str:
    rows = []
    for li in session["_line_items"]:
        price = li["price"]
        recurring = price.get("recurring")
        every = f" / {recurring['interval']}" if recurring else " (one-time)"
        rows.append(
            f"<tr><td>{escape(li['description'] or price['id'])} × {li['quantity']}"
            f'<div class="note">{money(price["unit_amount"], price["currency"])}{every}</div></td>'
            f'<td class="amount">{money(li["amount_total"], li["currency"])}</td></tr>'
        )
    total = money(session["amount_total"], session["currency"])
    label = "Total due today" if session["mode"] == "subscription" else "Total"
    rows.append(f'<tr class="total"><td>{label}</td><td class="amount">{total}</td></tr>')
    recurring_total = sum(
        li["amount_total"] for li in session["_line_items"] if li["price"].get("recurring")
    )
    note = ""
    if recurring_total:
        interval = next(
            li["price"]["recurring"]["interval"]
            for li in session["_line_items"]
            if li["price"].get("recurring")
        )
        note = (
            f'<p class="note">Then {money(recurring_total, session["currency"])} '
            f"per {interval}.</p>"
        )
    return f"<table>{''.join(rows)}</table>{note}"


def render_checkout(request: Request, state: State, session: dict[str, Any], error: str = ""):
    """Render the hosted Checkout page for a session in whatever state it is."""
    title = "Subscribe" if session["mode"] == "subscription" else "Pay"
    body = f"<h1>{title}</h1>{_lines_table(session)}"
    if session["status"] == "complete":
        body += "<p>This Checkout Session is complete. Thank you!</p>"
        if session["success_url"]:
            body += f'<p><a href="{escape(session["success_url"])}">Continue</a></p>'
        return _page("Checkout complete", body)
    if session["status"] == "expired":
        return _page("Checkout expired", body + "<p>This Checkout Session has expired.</p>")
    if error:
        body += f'<p class="error" role="alert">{escape(error)}</p>'
    customer = state.objects.get(session["customer"]) if session["customer"] else None
    email = session["customer_email"] or (customer or {}).get("email") or ""
    action = f"{_base(request)}/checkout/{session['id']}/pay"
    body += (
        f'<form method="post" action="{escape(action)}">'
        f'<label for="email">Email</label><input type="email" id="email" name="email" '
        f'value="{escape(email)}">'
        '<label for="name">Name</label><input type="text" id="name" name="name" '
        'value="Sandbox Customer">'
        '<p class="note">Card 4242 4242 4242 4242 (simulated)</p>'
        '<button type="submit" name="action" value="card">Pay</button>'
        '<button type="submit" name="action" value="bank_debit" class="secondary">'
        "Pay with bank debit (delayed)</button>"
        '<button type="submit" name="action" value="decline" class="danger">'
        "Decline (test card 4000 0000 0000 0002)</button></form>"
    )
    if session["cancel_url"]:
        body += f'<p><a href="{escape(session["cancel_url"])}">Cancel and go back</a></p>'
    return _page("Checkout", body)


async def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl((await request.body()).decode("utf-8", errors="replace")))


def _not_found(what: str) -> HTMLResponse:
    return _page("Not found", f"<p>No such {escape(what)}.</p>", 404)


def routes(state: State) -> list[Route]:
    """Routes of the hosted pages, relative to the simulator's mount point."""

    def open_session(session_id: str) -> dict[str, Any] | None:
        session = state.find(session_id, "checkout.session")
        if session is not None and session["status"] == "open":
            if session["expires_at"] <= state.now():
                checkout.expire(state, session)
                state.flush()
        return session

    async def checkout_page(request: Request) -> Response:
        """GET /checkout/{id}: the hosted payment page."""
        session = open_session(request.path_params["session_id"])
        if session is None:
            return _not_found("Checkout Session")
        return render_checkout(request, state, session)

    async def checkout_pay(request: Request) -> Response:
        """POST /checkout/{id}/pay: Pay, Pay with bank debit, or Decline."""
        session = open_session(request.path_params["session_id"])
        if session is None:
            return _not_found("Checkout Session")
        form = await _form(request)
        if session["status"] != "open":
            return render_checkout(request, state, session)
        action = form.get("action", "card")
        if action == "decline":
            session["_declines"] += 1
            return render_checkout(request, state, session, "Your card was declined.")
        method = "bank_debit" if action == "bank_debit" else "card"
        checkout.complete(
            state,
            session,
            method=method,
            email=form.get("email") or None,
            name=form.get("name") or None,
        )
        state.flush()
        target = session["success_url"] or f"{_base(request)}/checkout/{session['id']}"
        return RedirectResponse(target, status_code=303)

    async def portal_page(request: Request) -> Response:
        """GET /billing/{id}: the customer's subscriptions with cancel buttons."""
        portal = state.find(request.path_params["portal_id"], "billing_portal.session")
        if portal is None:
            return _not_found("billing portal session")
        return render_portal(request, state, portal)

    async def portal_action(request: Request) -> Response:
        """POST /billing/{id}/subscriptions/{sub}/{action}: cancel, schedule or undo a cancel."""
        portal = state.find(request.path_params["portal_id"], "billing_portal.session")
        sub = state.find(request.path_params["sub_id"], "subscription")
        if portal is None or sub is None or sub["customer"] != portal["customer"]:
            return _not_found("subscription")
        await _form(request)
        action = request.path_params["action"]
        if sub["status"] not in subscriptions.ENDED:
            if action == "cancel_now":
                subscriptions.cancel(state, sub)
            elif action == "cancel_at_period_end":
                subscriptions.schedule_cancel(state, sub, True)
            elif action == "renew":
                subscriptions.schedule_cancel(state, sub, False)
            else:
                return _not_found("action")
        state.flush()
        return RedirectResponse(f"{_base(request)}/billing/{portal['id']}", status_code=303)

    return [
        Route("/checkout/{session_id}", checkout_page, methods=["GET"]),
        Route("/checkout/{session_id}/pay", checkout_pay, methods=["POST"]),
        Route("/billing/{portal_id}", portal_page, methods=["GET"]),
        Route(
            "/billing/{portal_id}/subscriptions/{sub_id}/{action}",
            portal_action,
            methods=["POST"],
        ),
    ]


def render_portal(request: Request, state: State, portal: dict[str, Any]) -> HTMLResponse:
    """Render the billing portal page of one customer."""
    customer = state.objects[portal["customer"]]
    subs = [
        s
        for s in state.all("subscription", lambda s: s["customer"] == customer["id"])
        if s["status"] not in subscriptions.ENDED
    ]
    base = f"{_base(request)}/billing/{portal['id']}/subscriptions"
    parts = [f"<h1>Manage billing</h1><p>{escape(customer.get('email') or customer['id'])}</p>"]
    if not subs:
        parts.append("<p>You have no active subscriptions.</p>")
    for sub in subs:
        _, end = subscriptions.period(sub)
        names = ", ".join(
            escape(state.product_name(it["price"]["product"])) for it in sub["items"]["data"]
        )
        amount = sum(it["price"]["unit_amount"] * it["quantity"] for it in sub["items"]["data"])
        interval = sub["items"]["data"][0]["price"]["recurring"]["interval"]
        status = escape(sub["status"])
        parts.append(
            f'<section id="{sub["id"]}"><h2>{names}</h2>'
            f"<p>{money(amount, sub['currency'])} per {interval} · status {status}</p>"
        )
        if sub["cancel_at_period_end"]:
            parts.append(
                f"<p>Cancels on {day_label(end)}.</p>"
                f'<form method="post" action="{base}/{sub["id"]}/renew">'
                '<button type="submit" class="secondary">Don\'t cancel</button></form>'
            )
        else:
            parts.append(
                f"<p>Renews on {day_label(end)}.</p>"
                f'<form method="post" action="{base}/{sub["id"]}/cancel_at_period_end">'
                '<button type="submit" class="secondary">Cancel at period end</button></form>'
            )
        parts.append(
            f'<form method="post" action="{base}/{sub["id"]}/cancel_now">'
            '<button type="submit" class="danger">Cancel now</button></form></section>'
        )
    if portal["return_url"]:
        parts.append(f'<p><a href="{escape(portal["return_url"])}">Return</a></p>')
    return _page("Billing portal", "".join(parts))
