"""Zapmail export endpoints: sequencer logins (PIPL checked against PlusVibe) and mailbox exports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from sandbox.vendors import json_body
from sandbox.vendors.zapmail.http import ZapmailError
from sandbox.vendors.zapmail.http import need
from sandbox.vendors.zapmail.http import ok
from sandbox.vendors.zapmail.http import string_list
from sandbox.vendors.zapmail.state import Export
from sandbox.vendors.zapmail.state import Mailbox
from sandbox.vendors.zapmail.state import ThirdPartyAccount
from sandbox.vendors.zapmail.state import Workspace

if TYPE_CHECKING:
    from sandbox.vendors.zapmail import ZapmailSim

APPS = (
    "REACHINBOX", "INSTANTLY", "SMARTLEAD", "REPLY_IO", "QUICKMAIL", "EMELIA", "EMAILBISON",
    "FIRSTQUADRANT", "WARMY", "SUPERAGI", "LEMLIST", "PIPL", "LUELLA", "MASTER_INBOX", "SAILE",
    "SNOV", "RECRUITERFLOW", "MAILTOASTER", "MANYREACH", "COLDSTATS", "BRANDJET", "HOTHAWK",
    "MAILIVERY", "EMAILGUARD", "UNIPILE", "APOLLO", "TRULYINBOX", "VENTA",
)  # fmt: skip
EXPORT_KEYS = ("apps", "ids", "excludeIds", "tagIds", "status", "contains", "thirdPartyAccountId")
REEXPORT_CAP = 3
REEXPORT_WINDOW_S = 7 * 86400


def _check_login(sim: ZapmailSim, app: str, email: str, password: str) -> None:
    """Validate credentials live for PIPL (other apps are accepted as given)."""
    if app == "PIPL" and sim.plusvibe.login_workspaces(email, password) is None:
        raise ZapmailError(400, "Invalid credentials for PIPL. Please check the email and password")


async def add_account(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """POST /v2/exports/accounts/third-party {email, password, app}: register a sequencer login."""
    st = sim.state
    body = await json_body(request)
    app = need(body, "app", str).upper()
    if app not in APPS:
        raise ZapmailError(400, f"Invalid app {app}")
    email = need(body, "email", str).strip().lower()
    password = need(body, "password", str)
    if not email or not password:
        raise ZapmailError(400, "email and password are required")
    _check_login(sim, app, email, password)
    same = next(
        (
            a
            for a in st.accounts.values()
            if (a.workspace_id, a.app, a.email) == (ws.id, app, email)
        ),
        None,
    )
    if same is not None:
        same.password = password  # re-adding the same login refreshes it instead of duplicating
    else:
        acc = ThirdPartyAccount(
            id=st.new_id(), workspace_id=ws.id, app=app, email=email, password=password
        )
        st.accounts[acc.id] = acc
    return ok(None, "Account added successfully")


async def update_account(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """PUT /v2/exports/accounts/third-party {accountId, email?, password?, app?}: update a login."""
    body = await json_body(request)
    acc = sim.state.accounts.get(need(body, "accountId", str))
    if acc is None or acc.workspace_id != ws.id:
        raise ZapmailError(404, "Account not found")
    email = body.get("email") or acc.email
    password = body.get("password") or acc.password
    if not isinstance(email, str) or not isinstance(password, str):
        raise ZapmailError(400, "email and password must be strings")
    _check_login(sim, acc.app, email.strip().lower(), password)
    acc.email, acc.password = email.strip().lower(), password
    return ok(None, "Account updated successfully")


async def list_accounts(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """GET /v2/exports/accounts/third-party?app=: the workspace's logins for one app."""
    app = request.query_params.get("app", "").upper()
    if not app:
        raise ZapmailError(400, "app is required")
    rows = [
        {"id": a.id, "appName": a.app, "email": a.email}
        for a in sim.state.accounts.values()
        if a.workspace_id == ws.id and a.app == app
    ]
    return ok({"accounts": rows}, "Accounts fetched successfully")


def _selection(sim: ZapmailSim, ws: Workspace, body: dict) -> list[Mailbox]:
    st, now = sim.state, sim.state.now()
    ids = string_list(body, "ids")
    if ids:
        boxes = []
        for mailbox_id in ids:
            box = st.mailboxes.get(mailbox_id)
            if box is None or box.workspace_id != ws.id:
                raise ZapmailError(404, f"Mailbox {mailbox_id} not found")
            boxes.append(box)
    elif string_list(body, "tagIds"):
        boxes = []  # the sandbox never tags mailboxes
    else:
        contains = body["contains"].lower()
        status = body["status"]
        boxes = [
            m for m in st.mailboxes.values()
            if m.workspace_id == ws.id and contains in m.email and (not status or m.status(now) == status)
        ]  # fmt: skip
    excluded = set(string_list(body, "excludeIds"))
    # Only ACTIVE mailboxes export (zapmail.md §7.7); others are skipped.
    return [m for m in boxes if m.id not in excluded and m.status(now) == "ACTIVE"]


async def export_mailboxes(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """POST /v2/exports/mailboxes: start an async export; PIPL pushes accounts into PlusVibe."""
    st, now = sim.state, sim.state.now()
    body = await json_body(request)
    for key in EXPORT_KEYS:
        if key not in body:
            raise ZapmailError(400, f"{key} is required")
    apps = [a.upper() for a in string_list(body, "apps", required=True)]
    if not apps or any(a not in APPS and a != "MANUAL" for a in apps):
        raise ZapmailError(400, "apps must list supported export apps")
    for key in ("status", "contains", "thirdPartyAccountId"):
        if not isinstance(body[key], str):
            raise ZapmailError(400, f"{key} must be a string")
    sequencers = [a for a in apps if a != "MANUAL"]
    account = None
    if sequencers:
        pinned = body["thirdPartyAccountId"]
        candidates = [
            a for a in st.accounts.values()
            if a.workspace_id == ws.id and a.app in sequencers and (not pinned or a.id == pinned)
        ]  # fmt: skip
        if len(candidates) != 1:
            raise ZapmailError(400, "thirdPartyAccountId must name one account of the export app")
        account = candidates[0]
        if set(sequencers) != {account.app}:
            raise ZapmailError(
                400, f"thirdPartyAccountId belongs to {account.app}, not {sequencers}"
            )
    boxes = _selection(sim, ws, body)
    if not boxes:
        raise ZapmailError(400, "No active mailboxes found to export")
    for app in sequencers:
        for box in boxes:
            recent = [
                e for e in st.exports.values()
                if app in e.apps and box.id in e.mailbox_ids and not e.failure_reason
                and e.created_at > now - REEXPORT_WINDOW_S
            ]  # fmt: skip
            if len(recent) >= REEXPORT_CAP:
                raise ZapmailError(
                    400,
                    f"Mailbox {box.email} was exported {REEXPORT_CAP} times to {app} in the last 7 days",
                )
    export = Export(
        id=st.new_id(), workspace_id=ws.id, apps=apps, mailbox_ids=[m.id for m in boxes],
        account_id=account.id if account else None, created_at=now,
        done_at=now + sim.ctx.config.export_delay_s,
    )  # fmt: skip
    if account is not None and account.app == "PIPL":
        export.failure_reason = sim.plusvibe.schedule_import(
            account.email, account.password, [_account_payload(m) for m in boxes], export.done_at
        )
    st.exports[export.id] = export
    data = {"exportId": export.id}
    if "MANUAL" in apps:
        data["csvExportedLink"] = f"{sim.ctx.public_url}/zapmail/api/exports/{export.id}.xlsx"
    return ok(data, "Mailboxes export is started. You will be notified once it is completed")


def _account_payload(box: Mailbox) -> dict:
    return {
        "email": box.email,
        "first_name": box.first_name,
        "last_name": box.last_name,
        "password": box.app_password,
        "provider": "GOOGLE_WORKSPACE",
        "imap_host": "imap.gmail.com",
        "imap_port": 993,
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 587,
    }


async def export_status(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """GET /v2/exports/status?exportId=: in_progress, completed or failed."""
    export_id = request.query_params.get("exportId")
    if not export_id:
        raise ZapmailError(400, "exportId is required")
    export = sim.state.exports.get(export_id)
    if export is None or export.workspace_id != ws.id:
        raise ZapmailError(404, "Export not found")
    return ok(
        {
            "export_id": export.id,
            "status": export.status(sim.state.now()),
            "failure_reason": export.failure_reason,
        },
        "Export status fetched successfully",
    )
