"""Zapmail mailbox endpoints: create (keyed by domain id), list by domain, retry, removal."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from sandbox.vendors import json_body
from sandbox.vendors.zapmail.http import ZapmailError
from sandbox.vendors.zapmail.http import ok
from sandbox.vendors.zapmail.http import paginate
from sandbox.vendors.zapmail.http import pagination
from sandbox.vendors.zapmail.http import string_list
from sandbox.vendors.zapmail.state import MAX_MAILBOXES_PER_DOMAIN
from sandbox.vendors.zapmail.state import Domain
from sandbox.vendors.zapmail.state import Mailbox
from sandbox.vendors.zapmail.state import Workspace
from sandbox.vendors.zapmail.views import mailbox_row

if TYPE_CHECKING:
    from sandbox.vendors.zapmail import ZapmailSim

# Lower-case letters, digits and . _ -; not starting or ending with . _ - (zapmail.md §7.6).
USERNAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


def _domain(sim: ZapmailSim, ws: Workspace, domain_id: str) -> Domain:
    d = sim.state.domains.get(domain_id)
    if d is None or d.workspace_id != ws.id:
        raise ZapmailError(404, f"Domain {domain_id} not found")
    return d


def _text(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ZapmailError(400, f"{key} is required for {where}")
    return value.strip()


async def create(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """POST /v2/mailboxes: all-or-nothing creation; answers without ids."""
    st, now = sim.state, sim.state.now()
    body = await json_body(request)
    if not body:
        raise ZapmailError(400, "Body must map domain ids to arrays of mailboxes")
    taken = {m.email for m in st.mailboxes.values()}
    planned: list[tuple[Domain, dict[str, str]]] = []
    for domain_id, entries in body.items():
        d = _domain(sim, ws, domain_id)
        if d.status(now) != "ACTIVE":
            raise ZapmailError(400, f"Domain {d.name} is not active yet")
        if not isinstance(entries, list) or not entries:
            raise ZapmailError(400, f"Mailboxes for domain {domain_id} must be a non-empty array")
        existing = len(st.mailboxes_on(d.id))
        if existing + len(entries) > MAX_MAILBOXES_PER_DOMAIN:
            raise ZapmailError(
                400,
                f"A domain can have at most {MAX_MAILBOXES_PER_DOMAIN} mailboxes; "
                f"{d.name} already has {existing}",
            )
        for entry in entries:
            if not isinstance(entry, dict):
                raise ZapmailError(400, "Each mailbox must be an object")
            username = entry.get("mailboxUsername")
            if not isinstance(username, str) or not USERNAME.match(username):
                raise ZapmailError(400, f"Invalid mailboxUsername {username!r}")
            if entry.get("domainName") != d.name:
                raise ZapmailError(400, f"domainName must be {d.name} for domain {domain_id}")
            address = f"{username}@{d.name}"
            if address in taken:
                raise ZapmailError(400, f"Mailbox {address} already exists")
            taken.add(address)
            planned.append(
                (d, {"username": username, "first": _text(entry, "firstName", address),
                     "last": _text(entry, "lastName", address)})
            )  # fmt: skip
    if len(st.mailboxes) + len(planned) > sim.ctx.config.zapmail_mailbox_slots:
        raise ZapmailError(400, "Not enough mailboxes available. Please purchase add-on mailboxes")
    for d, spec in planned:
        box = Mailbox(
            id=st.new_id(), domain_id=d.id, workspace_id=ws.id, username=spec["username"],
            domain=d.name, first_name=spec["first"], last_name=spec["last"], created_at=now,
            ready_at=now + sim.ctx.config.mailbox_activation_s, fails=st.take_failure(d.name),
            app_password=st.new_secret(), secret=st.new_secret(32),
        )  # fmt: skip
        st.mailboxes[box.id] = box
        sim.webhooks.seen_mailbox(box)
        sim.ctx.ledger.record(
            "zapmail", "mailbox_created", box.email, None, workspace_id=ws.id, mailbox_id=box.id
        )
    return ok(None, "Mailboxes will be assigned shortly")


async def list_by_domain(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """GET /v2/mailboxes/list: paginated BY DOMAIN, mailboxes nested, plus slot counters."""
    st, now = sim.state, sim.state.now()
    page, limit = pagination(request)
    contains = request.query_params.get("contains", "").lower()
    rows = []
    for d in st.domains_in(ws.id):
        boxes = st.mailboxes_on(d.id)
        if boxes and (contains in d.name or any(contains in m.email for m in boxes)):
            rows.append((d, boxes))
    page_rows, meta = paginate(rows, page, limit)
    assigned = len(st.mailboxes)
    return ok(
        {
            **meta,
            "purchasedMailboxes": sim.ctx.config.zapmail_mailbox_slots,
            "totalAssignedMailboxes": assigned,
            "totalActiveMailboxes": sum(1 for m in st.mailboxes.values() if m.status(now) == "ACTIVE"),
            "availableMailboxes": sim.ctx.config.zapmail_mailbox_slots - assigned,
            "scheduledMailboxes": sum(1 for m in st.mailboxes.values() if m.scheduled_removal),
            "purchasedPreWarmedMailboxes": 0,
            "assignedPreWarmedMailboxes": 0,
            "domains": [
                {"id": d.id, "domain": d.name, "status": d.status(now),
                 "mailboxes": [mailbox_row(m, now) for m in boxes]}
                for d, boxes in page_rows
            ],
        },
        "Mailboxes fetched successfully",
    )  # fmt: skip


async def get_one(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """GET /v2/mailboxes?id=: one mailbox with its secret."""
    mailbox_id = request.query_params.get("id")
    if not mailbox_id:
        raise ZapmailError(400, "id is required")
    box = sim.state.mailboxes.get(mailbox_id)
    if box is None or box.workspace_id != ws.id:
        raise ZapmailError(404, "Mailbox not found")
    return ok(
        {"mailbox": mailbox_row(box, sim.state.now(), with_secret=True)},
        "Mailbox fetched successfully",
    )


async def retry_failed(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """PUT /v2/mailboxes/retry-failed {domainIds}: FAILED mailboxes go back to IN_PROGRESS."""
    st, now = sim.state, sim.state.now()
    body = await json_body(request)
    ids = string_list(body, "domainIds", required=True)
    if not ids:
        raise ZapmailError(400, "domainIds must contain at least one id")
    domains = [_domain(sim, ws, i) for i in ids]
    for d in domains:
        for box in st.mailboxes_on(d.id):
            if box.status(now) == "FAILED":
                box.fails = st.take_failure(d.name)
                box.ready_at = now + sim.ctx.config.mailbox_activation_s
                sim.webhooks.seen_mailbox(box)
    return ok(None, "Retry started for failed mailboxes")


async def scheduled_removal(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """PUT /v2/mailboxes/scheduled-removal {mailboxIds}: remove at next renewal (body shape L)."""
    st = sim.state
    body = await json_body(request)
    ids = string_list(body, "mailboxIds", required=True)
    if not ids:
        raise ZapmailError(400, "mailboxIds must contain at least one id")
    boxes = []
    for mailbox_id in ids:
        box = st.mailboxes.get(mailbox_id)
        if box is None or box.workspace_id != ws.id:
            raise ZapmailError(404, f"Mailbox {mailbox_id} not found")
        boxes.append(box)
    for box in boxes:
        if not box.scheduled_removal:
            box.scheduled_removal = True
            sim.ctx.ledger.record(
                "zapmail", "mailbox_removal_scheduled", box.email, None, workspace_id=ws.id
            )
    return ok(None, "Mailboxes scheduled for removal")
