"""Zapmail account endpoints: users, workspaces, billing details and the wallet."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.vendors import json_body
from sandbox.vendors.zapmail.http import ZapmailError
from sandbox.vendors.zapmail.http import flat
from sandbox.vendors.zapmail.http import need
from sandbox.vendors.zapmail.http import ok
from sandbox.vendors.zapmail.http import paginate
from sandbox.vendors.zapmail.http import pagination
from sandbox.vendors.zapmail.state import Workspace
from sandbox.vendors.zapmail.state import iso
from sandbox.vendors.zapmail.views import workspace_row

if TYPE_CHECKING:
    from sandbox.vendors.zapmail import ZapmailSim

BILLING_FIELDS = (
    "company", "firstName", "lastName", "addressLineOne", "addressLineTwo", "addressLineThree",
    "city", "state", "country", "postalCode", "phoneCc", "phone", "languagePreference",
)  # fmt: skip
BILLING_REQUIRED = ("firstName", "lastName", "addressLineOne", "city", "country", "postalCode")


def billing_details(raw: Any, *, lines_required: bool) -> dict[str, Any]:
    """Validate a billingDetails object; lines two/three must be present for /v2/billing."""
    if not isinstance(raw, dict):
        raise ZapmailError(400, "billingDetails must be an object")
    for key in BILLING_REQUIRED:
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ZapmailError(400, f"billingDetails.{key} is required")
    if lines_required:
        for key in ("addressLineTwo", "addressLineThree"):
            if key not in raw:
                raise ZapmailError(400, f"{key} is required (it may be empty or null)")
    for key, value in raw.items():
        if key in BILLING_FIELDS and value is not None and not isinstance(value, str):
            raise ZapmailError(400, f"{key} must be a string")
    return {key: raw.get(key) for key in BILLING_FIELDS}


async def get_user(sim: ZapmailSim, _request: Request, _ws: Workspace) -> Response:
    """GET /v2/users: the account owner, plan, slot usage and wallet."""
    st = sim.state
    return ok(
        {
            "email": "owner@sandbox.test",
            "firstName": "Sandbox",
            "lastName": "Owner",
            "activePlan": "Growth",
            "planEndsOn": iso(st.created_at + 30 * 86400),
            "purchasedMailboxes": sim.ctx.config.zapmail_mailbox_slots,
            "assignedMailboxes": len(st.mailboxes),
            "userCreatedAt": iso(st.created_at),
            "walletBalance": float(st.wallet),
        },
        "User details fetched successfully",
    )


async def list_workspaces(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """GET /v2/workspaces: the current workspace plus a page of the others."""
    st, now = sim.state, sim.state.now()
    page, limit = pagination(request)
    contains = request.query_params.get("contains", "").lower()
    others = [
        w for w in sorted(st.workspaces.values(), key=lambda w: w.created_at)
        if w.id != ws.id and contains in w.name.lower()
    ]  # fmt: skip
    rows, meta = paginate(others, page, limit)
    return ok(
        {
            "currentWorkspace": workspace_row(st, ws, now),
            "workspaces": [workspace_row(st, w, now) for w in rows],
            **meta,
            "totalWorkspacesCount": str(len(st.workspaces)),
            "totalDomainsCountGoogle": str(len(st.domains)),
            "totalDomainsCountMicrosoft": "0",
            "totalPurchasedMailboxesCountGoogle": str(sim.ctx.config.zapmail_mailbox_slots),
            "totalPurchasedMailboxesCountMicrosoft": "0",
        },
        "Workspaces fetched successfully",
    )


async def create_workspace(sim: ZapmailSim, request: Request, _ws: Workspace) -> Response:
    """POST /v2/workspaces: create a workspace; its id is the next x-workspace-key."""
    st = sim.state
    body = await json_body(request)
    name = need(body, "name", str).strip()
    if not name:
        raise ZapmailError(400, "name is required")
    if any(w.name.lower() == name.lower() for w in st.workspaces.values()):
        raise ZapmailError(400, "Workspace with this name already exists")
    billing = billing_details(need(body, "billingDetails", dict), lines_required=False)
    ws = Workspace(id=st.new_id(), name=name, created_at=st.now(), billing=billing)
    st.workspaces[ws.id] = ws
    return ok(
        {
            "id": ws.id,
            "name": ws.name,
            "userId": st.user_id,
            "createdAt": iso(ws.created_at),
            "updatedAt": iso(ws.created_at),
            "deletedAt": None,
        },
        "Workspace created successfully",
    )


async def rename_workspace(sim: ZapmailSim, request: Request, _ws: Workspace) -> Response:
    """PUT /v2/workspaces {id, name}: rename a workspace."""
    st = sim.state
    body = await json_body(request)
    target = st.workspaces.get(need(body, "id", str))
    if target is None:
        raise ZapmailError(404, "Workspace not found")
    name = need(body, "name", str).strip()
    if not name or any(
        w.name.lower() == name.lower() and w.id != target.id for w in st.workspaces.values()
    ):
        raise ZapmailError(400, "Workspace with this name already exists")
    target.name = name
    return ok({"id": target.id, "name": target.name}, "Workspace updated successfully")


async def upsert_billing(sim: ZapmailSim, request: Request, _ws: Workspace) -> Response:
    """POST|PUT /v2/billing: create or replace a workspace's billing details."""
    body = await json_body(request)
    target = sim.state.workspaces.get(need(body, "workspaceId", str))
    if target is None:
        raise ZapmailError(404, "Workspace not found")
    target.billing = billing_details(body, lines_required=True)
    return ok({"workspaceId": target.id, **target.billing}, "Billing details saved successfully")


async def wallet_balance(sim: ZapmailSim, _request: Request, _ws: Workspace) -> Response:
    """GET /v2/wallet/balance: flat body, no envelope (zapmail.md §7.2)."""
    return flat(
        {
            "walletBalance": float(sim.state.wallet),
            "autoRechargeEnabled": False,
            "autoRechargeDetails": None,
        }
    )


async def wallet_topup(sim: ZapmailSim, request: Request, _ws: Workspace) -> Response:
    """POST /v2/wallet/balance: returns a payment link; nothing is credited by the API."""
    body = await json_body(request)
    amount = need(body, "amount", (int, float), "a number")
    if amount <= 0:
        raise ZapmailError(400, "amount must be positive")
    link = f"{sim.ctx.public_url}/zapmail/api/pay/{sim.state.new_id()}"
    return flat({"message": "Payment link generated", "paymentLink": link})
