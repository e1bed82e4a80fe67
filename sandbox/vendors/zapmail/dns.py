"""Zapmail domain settings beyond DMARC: website forwarding, DNS records and the health score.

Zapmail configures DNS itself for the domains it sells (zapmail.md §7.4): once a domain is
ACTIVE it has a Google MX, SPF and DKIM record, and a DMARC record once an rua address is set.
The control plane edits or deletes records (drift) and pins health scores; otherwise the score
follows the records, so a drifted record lowers it. Shapes are in docs/sandbox.md.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from sandbox.vendors import json_body
from sandbox.vendors.zapmail.catalog import normalize
from sandbox.vendors.zapmail.domains import selected
from sandbox.vendors.zapmail.http import ZapmailError
from sandbox.vendors.zapmail.http import need
from sandbox.vendors.zapmail.http import ok
from sandbox.vendors.zapmail.state import Domain
from sandbox.vendors.zapmail.state import Workspace
from sandbox.vendors.zapmail.state import ZapmailState

if TYPE_CHECKING:
    from sandbox.vendors.zapmail import ZapmailSim

GOOGLE_MX = "smtp.google.com"
SPF = "v=spf1 include:_spf.google.com ~all"
DKIM_HOST = "google._domainkey"
DMARC_HOST = "_dmarc"
# zapmail.md §7.5: "0-100, <= 30 critical". The other bands are sandbox choices.
CRITICAL_AT = 30
WARNING_BELOW = 70
# What a missing or edited record costs the computed score.
PENALTY = {("MX", "@"): 35, ("TXT", "@"): 25, ("TXT", DKIM_HOST): 25, ("TXT", DMARC_HOST): 10}
RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT")


def _digest(d: Domain) -> bytes:
    return hashlib.sha256(d.name.encode()).digest()


def configured(d: Domain) -> dict[tuple[str, str], tuple[str, int | None]]:
    """The records Zapmail set up for an ACTIVE domain: (type, host) -> (value, priority)."""
    key = base64.b64encode(_digest(d) * 4).decode()
    rows: dict[tuple[str, str], tuple[str, int | None]] = {
        ("MX", "@"): (GOOGLE_MX, 1),
        ("TXT", "@"): (SPF, None),
        ("TXT", DKIM_HOST): (f"v=DKIM1; k=rsa; p={key}", None),
    }
    if d.dmarc_email:
        rows[("TXT", DMARC_HOST)] = (f"v=DMARC1; p=none; rua=mailto:{d.dmarc_email}", None)
    return rows


def current(d: Domain, now: float) -> dict[tuple[str, str], tuple[str, int | None]]:
    """The records in force now: configured ones with the control plane's edits applied."""
    if d.status(now) != "ACTIVE":
        return {}  # the zone is created when the domain goes live
    rows = configured(d)
    for key, value in d.dns_drift.items():
        if value is None:
            rows.pop(key, None)
        else:
            default_priority = 10 if key[0] == "MX" else None
            rows[key] = (value, rows[key][1] if key in rows else default_priority)
    return rows


def record_rows(d: Domain, now: float) -> list[dict[str, Any]]:
    """The records as ``GET /v2/dns/`` lists them."""
    out = []
    for (kind, host), (value, priority) in sorted(current(d, now).items()):
        rid = hashlib.sha256(f"{d.id}:{kind}:{host}".encode()).hexdigest()[:24]
        out.append(
            {"id": rid, "recordType": kind, "host": host, "value": value, "priority": priority}
        )
    return out


def score(d: Domain, now: float) -> int | None:
    """The domain's health score: pinned, or computed from its records (None while PENDING)."""
    if d.status(now) != "ACTIVE":
        return None
    if d.health_pin is not None:
        return d.health_pin
    base = 88 + _digest(d)[1] % 13  # 88-100, stable per name
    want, have = configured(d), current(d, now)
    lost = sum(
        cost
        for key, cost in PENALTY.items()
        if key not in have or (key in want and have[key] != want[key])
    )
    return max(0, base - lost)


def band(value: int | None) -> str:
    """The score's band: HEALTHY, WARNING, CRITICAL (or PENDING without a score)."""
    if value is None:
        return "PENDING"
    if value <= CRITICAL_AT:
        return "CRITICAL"
    return "WARNING" if value < WARNING_BELOW else "HEALTHY"


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


def _own_domain(sim: ZapmailSim, ws: Workspace, domain_id: str) -> Domain:
    d = sim.state.domains.get(domain_id)
    if d is None or d.workspace_id != ws.id:
        raise ZapmailError(404, f"Domain {domain_id} not found")
    return d


async def set_forwarding(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """POST /v2/domains/forwarding {domainIds, forwardTo, contains, tagIds}: forward to a URL."""
    body = await json_body(request)
    target = need(body, "forwardTo", str).strip()
    if not _is_url(target):
        raise ZapmailError(400, "forwardTo must be a valid http or https URL")
    chosen = selected(sim, ws, body)
    if not chosen:
        raise ZapmailError(400, "No domains found for the given filters")
    now = sim.state.now()
    for d in chosen:
        if d.status(now) != "ACTIVE":
            raise ZapmailError(400, f"Domain {d.name} is not active yet")
    for d in chosen:
        d.forward_to, d.updated_at = target, now
        # Every set is pushed to the registrar again, so each one is an entry.
        sim.ctx.ledger.record(
            "zapmail", "domain_forwarding_set", d.name, None, workspace_id=ws.id, forward_to=target
        )
    return ok(None, "Domain forwarding added successfully")


async def remove_forwarding(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """POST /v2/domains/remove-forwarding {domainId}: stop forwarding (a no-op when none is set)."""
    body = await json_body(request)
    d = _own_domain(sim, ws, need(body, "domainId", str))
    if d.forward_to is not None:
        sim.ctx.ledger.record(
            "zapmail", "domain_forwarding_removed", d.name, None,
            workspace_id=ws.id, forward_to=d.forward_to,
        )  # fmt: skip
        d.forward_to, d.updated_at = None, sim.state.now()
    return ok(None, "Domain forwarding removed successfully")


async def get_dns(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """GET /v2/dns/?id=<domainId>: the domain's DNS records (none while PENDING)."""
    domain_id = request.query_params.get("id", "").strip()
    if not domain_id:
        raise ZapmailError(400, "id is required")
    d = _own_domain(sim, ws, domain_id)
    data = {
        "domainId": d.id,
        "domain": d.name,
        "records": record_rows(d, sim.state.now()),
        "disabledRecords": [],
    }
    return ok(data, "DNS records fetched successfully")


async def health_score(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """GET /v2/domains/health-score?domainId=: 0-100, <= 30 critical (null while PENDING)."""
    domain_id = request.query_params.get("domainId", "").strip()
    if not domain_id:
        raise ZapmailError(400, "domainId is required")
    d = _own_domain(sim, ws, domain_id)
    value = score(d, sim.state.now())
    data = {"domainId": d.id, "domain": d.name, "score": value, "status": band(value)}
    return ok(data, "Domain health score fetched successfully")


# Control plane (POST /_sandbox/zapmail/dns, /health-score, GET /visit): plain values in, JSON out.


def _find(state: ZapmailState, name: str) -> Domain:
    d = state.domain_by_name(normalize(name))
    if d is None:
        raise LookupError(f"no domain {name!r} in the sandbox")
    return d


def drift(state: ZapmailState, name: str, kind: str, host: str, value: str | None) -> list[dict]:
    """Edit (a string) or delete (None) one record of a domain; return its records now."""
    d = _find(state, name)
    kind = kind.strip().upper()
    if kind not in RECORD_TYPES:
        raise ValueError(f"recordType must be one of {', '.join(RECORD_TYPES)}")
    d.dns_drift[(kind, host.strip().lower() or "@")] = value
    return record_rows(d, state.now())


def restore(state: ZapmailState, name: str) -> list[dict]:
    """Undo every edit of a domain's records; return its records now."""
    d = _find(state, name)
    d.dns_drift.clear()
    return record_rows(d, state.now())


def pin_score(state: ZapmailState, name: str, value: int | None) -> int | None:
    """Pin a domain's health score (None: computed again); return the score now."""
    d = _find(state, name)
    d.health_pin = value
    return score(d, state.now())


def visit(state: ZapmailState, name: str) -> dict[str, Any]:
    """What a browser opening the domain gets: a 301 to the forwarding target, or a parked 404."""
    d = _find(state, name)
    if d.forward_to and d.status(state.now()) == "ACTIVE":
        return {"domain": d.name, "status": 301, "location": d.forward_to}
    return {"domain": d.name, "status": 404, "location": None}
