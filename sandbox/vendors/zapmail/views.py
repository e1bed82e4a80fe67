"""Render Zapmail objects in their documented JSON shapes."""

from __future__ import annotations

from typing import Any

from sandbox.vendors.zapmail.catalog import renew_price
from sandbox.vendors.zapmail.state import NAME_SERVERS
from sandbox.vendors.zapmail.state import YEAR_S
from sandbox.vendors.zapmail.state import Domain
from sandbox.vendors.zapmail.state import Mailbox
from sandbox.vendors.zapmail.state import Workspace
from sandbox.vendors.zapmail.state import ZapmailState
from sandbox.vendors.zapmail.state import iso


def mailbox_row(m: Mailbox, now: float, *, with_secret: bool = False) -> dict[str, Any]:
    """A mailbox row as in /v2/mailboxes/list (appPassword is a live secret in the real API)."""
    row = {
        "id": m.id,
        "username": m.username,
        "email": m.email,
        "firstName": m.first_name,
        "lastName": m.last_name,
        "status": m.status(now),
        "profilePicture": m.profile_picture,
        "domain": m.domain,
        "domainId": m.domain_id,
        "assignedOn": iso(m.created_at),
        "expireOn": iso(m.created_at + 30 * 86400),
        "appPassword": m.app_password,
        "isWarmedUp": False,
        "serviceProvider": "GOOGLE",
        "scheduledForRemoval": m.scheduled_removal,
    }
    if with_secret:
        row["secret"] = m.secret
        row["createdAt"] = iso(m.created_at)
    return row


def domain_row(state: ZapmailState, d: Domain, now: float) -> dict[str, Any]:
    """A domain row as in GET /v2/domains (counts are strings, as observed live)."""
    boxes = state.mailboxes_on(d.id)
    status = d.status(now)
    return {
        "id": d.id,
        "workspaceId": d.workspace_id,
        "domain": d.name,
        "status": status,
        "createdAt": iso(d.created_at),
        "updatedAt": iso(max(d.updated_at, d.active_at if status == "ACTIVE" else d.created_at)),
        "registeredOn": iso(d.created_at),
        "expireOn": iso(d.created_at + d.years * YEAR_S),
        "autoRenew": d.auto_renew,
        "renewPrice": str(renew_price(d.name)),
        "forwardTo": d.forward_to,
        "forwardToAddedOnReseller": d.forward_to is not None,
        "maskForwarding": False,
        "dmarcEmail": d.dmarc_email,
        "dmarcEmailAddedToReseller": d.dmarc_email is not None,
        "nameServers": list(NAME_SERVERS) if status == "ACTIVE" else [],
        "expectedNameServers": list(NAME_SERVERS),
        "assignedMailboxesCount": str(len(boxes)),
        "dnsShieldEnabled": d.dns_shield,
        "isWarmedUp": False,
        "tags": [],
        "serviceProvider": "GOOGLE" if boxes else None,
        "mailboxes": [mailbox_row(m, now) for m in boxes],
    }


def workspace_row(state: ZapmailState, w: Workspace, now: float) -> dict[str, Any]:
    """A workspace row with its (string) counters."""
    domains = state.domains_in(w.id)
    boxes = [m for m in state.mailboxes.values() if m.workspace_id == w.id]
    active = sum(1 for m in boxes if m.status(now) == "ACTIVE")
    return {
        "id": w.id,
        "name": w.name,
        "userId": state.user_id,
        "createdAt": iso(w.created_at),
        "updatedAt": iso(w.created_at),
        "deletedAt": None,
        "isPrimary": w.primary,
        "hasBillingDetails": w.billing is not None,
        "totalDomainsCountGoogle": str(len(domains)),
        "totalDomainsCountMicrosoft": "0",
        "assignedMailboxesCountGoogle": str(len(boxes)),
        "assignedMailboxesCountMicrosoft": "0",
        "activeMailboxCountGoogle": str(active),
        "activeMailboxCountMicrosoft": "0",
    }
