"""Zapmail domain endpoints: availability, purchase (wallet + ledger), listing and settings."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.vendors import json_body
from sandbox.vendors.zapmail import catalog
from sandbox.vendors.zapmail.http import ZapmailError
from sandbox.vendors.zapmail.http import flat
from sandbox.vendors.zapmail.http import need
from sandbox.vendors.zapmail.http import ok
from sandbox.vendors.zapmail.http import paginate
from sandbox.vendors.zapmail.http import pagination
from sandbox.vendors.zapmail.http import string_list
from sandbox.vendors.zapmail.state import MAX_MAILBOXES_PER_DOMAIN
from sandbox.vendors.zapmail.state import Domain
from sandbox.vendors.zapmail.state import Workspace
from sandbox.vendors.zapmail.views import domain_row

if TYPE_CHECKING:
    from sandbox.vendors.zapmail import ZapmailSim

MAX_BULK_NAMES = 20
SUGGESTION_PREFIXES = ("get", "try", "use", "go", "hey", "join", "meet", "hello", "team", "with")
SUGGESTION_SUFFIXES = ("hq", "app", "mail", "labs", "team")


def availability(sim: ZapmailSim, raw_name: str) -> dict[str, Any]:
    """One available-bulk row: status plus first-year and renewal prices as numeric strings."""
    name = catalog.normalize(raw_name)
    row = {"domainName": name, "status": "UNAVAILABLE", "isPremiumDomain": False}
    if not catalog.supported(name):
        # Unsupported TLDs price as "NaN" (observed live); a malformed name on a sold TLD as "0.00".
        tld = name.rsplit(".", 1)[1] if "." in name else ""
        price = "0.00" if tld in catalog.TLD_PRICES else "NaN"
        return {**row, "domainPrice": price, "renewPrice": price}
    if is_taken(sim, name):
        return {**row, "domainPrice": "0.00", "renewPrice": "0.00"}
    return {
        **row,
        "status": "AVAILABLE",
        "domainPrice": str(catalog.price(name)),
        "renewPrice": str(catalog.renew_price(name)),
    }


def is_taken(sim: ZapmailSim, name: str) -> bool:
    """Unavailable: owned by this account, marked by the control plane, or the hash rule."""
    st = sim.state
    return (
        st.domain_by_name(name) is not None
        or name in st.unavailable
        or catalog.registered_elsewhere(name)
    )


async def available_bulk(sim: ZapmailSim, request: Request, _ws: Workspace) -> Response:
    """POST /v2/domains/available-bulk: exact-name check of up to 20 names."""
    body = await json_body(request)
    names = string_list(body, "domainNames", required=True)
    if not names:
        raise ZapmailError(400, "domainNames must contain at least one domain")
    if len(names) > MAX_BULK_NAMES:
        raise ZapmailError(400, f"A maximum of {MAX_BULK_NAMES} domains can be checked at once")
    rows = [availability(sim, n) for n in names]
    free = sum(1 for r in rows if r["status"] == "AVAILABLE")
    return ok(
        {"domains": rows, "total": len(rows), "available": free, "unavailable": len(rows) - free},
        "Domain availability fetched successfully",
    )


async def available(sim: ZapmailSim, request: Request, _ws: Workspace) -> Response:
    """POST /v2/domains/available: keyword search answering affix suggestions (exactMatch null)."""
    body = await json_body(request)
    query = catalog.normalize(need(body, "domainName", str))
    label = query.split(".")[0]
    tlds = string_list(body, "tlds") or ["com"]
    if not label:
        raise ZapmailError(400, "domainName is required")
    candidates = [f"{p}{label}" for p in SUGGESTION_PREFIXES] + [
        f"{label}{s}" for s in SUGGESTION_SUFFIXES
    ]
    rows = []
    for tld in tlds:
        for cand in candidates:
            row = availability(sim, f"{cand}.{tld.lower().lstrip('.')}")
            if row["status"] == "AVAILABLE":
                rows.append(
                    {k: row[k] for k in ("domainName", "status", "domainPrice", "isPremiumDomain")}
                )
    return ok({"exactMatch": None, "availableDomains": rows[:50]}, "Domains fetched successfully")


async def buy(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """POST /v2/domains/buy: charge the wallet and register; no idempotency (see docs/sandbox.md)."""
    st, ctx = sim.state, sim.ctx
    body = await json_body(request)
    items = need(body, "domains", list)
    use_wallet = need(body, "useWallet", bool)
    dns_shield = need(body, "enableDnsShield", bool)
    if not items:
        raise ZapmailError(400, "domains must contain at least one domain")
    if ws.billing is None:
        raise ZapmailError(
            400, "Billing details not found. Please add billing details to the workspace"
        )
    order: list[tuple[str, int, Decimal]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("domainName"), str):
            raise ZapmailError(400, "Each domain needs a domainName")
        name = catalog.normalize(item["domainName"])
        years = item.get("years", 1)
        if not isinstance(years, int) or isinstance(years, bool) or not 1 <= years <= 10:
            raise ZapmailError(400, f"Invalid years for {name}")
        if not catalog.supported(name):
            raise ZapmailError(400, f"Domain {name} is not supported")
        if any(name == seen for seen, _, _ in order):
            raise ZapmailError(400, f"Duplicate domain {name} in request")
        order.append((name, years, catalog.price(name, years)))
    total = sum((p for _, _, p in order), Decimal("0"))
    link_id = st.new_id()
    if not use_wallet:
        return flat(
            {"message": "Payment link generated", "paymentLink": _link(sim, "pay", link_id)}
        )
    if st.wallet < total:
        # Short wallet is not an error: an invoice for the remainder, nothing registers (§7.4).
        return flat(
            {
                "message": "Insufficient wallet balance. Invoice created for the remaining amount",
                "invoiceLink": _link(sim, "invoices", link_id),
            }
        )
    st.wallet -= total
    now = st.now()
    for name, years, price in order:
        existing = st.domain_by_name(name)
        ctx.ledger.record(
            "zapmail", "domain_purchase", name, str(price),
            workspace_id=ws.id, years=years, duplicate=existing is not None, invoice=link_id,
        )  # fmt: skip
        if existing is not None:
            continue  # charged again, no second row: Zapmail has no idempotency key
        if name in st.unavailable or catalog.registered_elsewhere(name):
            st.wallet += price  # no registry re-check before charging; refunded afterwards (§7.4)
            ctx.ledger.record("zapmail", "domain_refund", name, str(price), workspace_id=ws.id)
            continue
        domain = Domain(
            id=st.new_id(), workspace_id=ws.id, name=name, created_at=now,
            active_at=now + ctx.config.domain_activation_s, years=years,
            dns_shield=dns_shield, updated_at=now,
        )  # fmt: skip
        st.domains[domain.id] = domain
        sim.webhooks.seen_domain(domain)
    return flat({"message": "Domains purchased", "invoiceLink": _link(sim, "invoices", link_id)})


def _link(sim: ZapmailSim, kind: str, link_id: str) -> str:
    return f"{sim.ctx.public_url}/zapmail/api/{kind}/{link_id}"


def _filtered(
    sim: ZapmailSim, ws: Workspace, *, contains: str, statuses: list[str], tag_ids: list[str]
) -> list[Domain]:
    now = sim.state.now()
    rows = sim.state.domains_in(ws.id)
    if tag_ids:
        return []  # the sandbox never tags domains
    return [
        d for d in rows
        if contains.lower() in d.name and (not statuses or d.status(now) in statuses)
    ]  # fmt: skip


async def list_domains(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """GET|POST /v2/domains: the workspace's domains; contains is a substring filter."""
    body = await json_body(request, required=False) if request.method == "POST" else {}
    q = request.query_params
    contains = q.get("contains", body.get("contains") or "")
    statuses = string_list(body, "status") if request.method == "POST" else q.getlist("status")
    tag_ids = string_list(body, "tagIds")
    if not isinstance(contains, str):
        raise ZapmailError(400, "contains must be a string")
    page, limit = pagination(request, body)
    rows = _filtered(sim, ws, contains=contains, statuses=statuses, tag_ids=tag_ids)
    sort_by = body.get("sortBy") or q.get("sortBy")
    if sort_by in ("domain", "name"):
        rows.sort(key=lambda d: d.name)
    page_rows, meta = paginate(rows, page, limit)
    now = sim.state.now()
    return ok(
        {"domains": [domain_row(sim.state, d, now) for d in page_rows], **meta},
        "Domains fetched successfully",
    )


async def assignable(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """GET /v2/domains/assignable: ACTIVE domains that can take more mailboxes."""
    st, now = sim.state, sim.state.now()
    page, limit = pagination(request)
    contains = request.query_params.get("contains", "").lower()
    rows = [
        d for d in st.domains_in(ws.id)
        if d.status(now) == "ACTIVE" and contains in d.name
        and len(st.mailboxes_on(d.id)) < MAX_MAILBOXES_PER_DOMAIN
    ]  # fmt: skip
    page_rows, meta = paginate(rows, page, limit)
    return ok(
        {"domains": [domain_row(st, d, now) for d in page_rows], **meta},
        "Domains fetched successfully",
    )


def selected(sim: ZapmailSim, ws: Workspace, body: dict[str, Any]) -> list[Domain]:
    """Domains chosen by domainIds, or by the filters when domainIds is empty."""
    ids = string_list(body, "domainIds")
    if ids:
        chosen = []
        for domain_id in ids:
            d = sim.state.domains.get(domain_id)
            if d is None or d.workspace_id != ws.id:
                raise ZapmailError(404, f"Domain {domain_id} not found")
            chosen.append(d)
        return chosen
    contains = body.get("contains") or ""
    if not isinstance(contains, str):
        raise ZapmailError(400, "contains must be a string")
    statuses = body.get("status") or []
    statuses = [statuses] if isinstance(statuses, str) else statuses
    return _filtered(
        sim, ws, contains=contains, statuses=statuses, tag_ids=string_list(body, "tagIds")
    )


async def set_dmarc(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """POST /v2/domains/dmarc: set the DMARC rua address (safe to repeat)."""
    body = await json_body(request)
    email = need(body, "email", str).strip()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise ZapmailError(400, "email must be a valid email address")
    chosen = selected(sim, ws, body)
    if not chosen:
        raise ZapmailError(400, "No domains found for the given filters")
    now = sim.state.now()
    for d in chosen:
        d.dmarc_email, d.updated_at = email, now
    return ok(None, "DMARC record added successfully")


async def update_auto_renew(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """POST /v2/domains/update-auto-renew {domainIds, autoRenew} (body shape is a sandbox choice)."""
    body = await json_body(request)
    auto = need(body, "autoRenew", bool)
    if not string_list(body, "domainIds", required=True):
        raise ZapmailError(400, "domainIds must contain at least one id")
    now = sim.state.now()
    for d in selected(sim, ws, body):
        if d.auto_renew != auto:
            # Whether the domain renews decides the next charge: the ledger keeps each change.
            sim.ctx.ledger.record(
                "zapmail",
                "domain_auto_renew_set",
                d.name,
                None,
                workspace_id=ws.id,
                auto_renew=auto,
            )
        d.auto_renew, d.updated_at = auto, now
    return ok(None, "Auto renew updated successfully")
