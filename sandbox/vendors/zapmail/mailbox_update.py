"""Zapmail PUT /v2/mailboxes: change mailboxes' sender names, username and profile picture.

Body (zapmail.md §7.6, M): ``{mailboxData: [{mailboxId, firstName, lastName, username,
profilePicture?}]}``. Only those fields are accepted. The doc says a new username changes the
address and resets warm-up; it does not say the API refuses it, so the sandbox performs it and
records ``mailbox_username_changed`` (with ``warmup_reset``) for tests to count. The doc names
``profilePicture`` without its format: the sandbox takes an http(s) URL (or null to remove it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox.vendors import json_body
from sandbox.vendors.zapmail.http import ZapmailError
from sandbox.vendors.zapmail.http import ok
from sandbox.vendors.zapmail.mailboxes import USERNAME
from sandbox.vendors.zapmail.state import Mailbox
from sandbox.vendors.zapmail.state import Workspace

if TYPE_CHECKING:
    from sandbox.vendors.zapmail import ZapmailSim

FIELDS = frozenset({"mailboxId", "firstName", "lastName", "username", "profilePicture"})
# Sandbox choices (not documented): name and picture URL lengths.
MAX_NAME = 100
MAX_PICTURE_URL = 2048
_KEEP = object()


def _name(entry: dict[str, Any], key: str, mailbox_id: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ZapmailError(400, f"{key} is required for mailbox {mailbox_id}")
    if len(value.strip()) > MAX_NAME:
        raise ZapmailError(400, f"{key} must be at most {MAX_NAME} characters")
    return value.strip()


def _picture(entry: dict[str, Any], mailbox_id: str) -> object:
    if "profilePicture" not in entry:
        return _KEEP
    value = entry["profilePicture"]
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith(("https://", "http://"))
        or len(value) > MAX_PICTURE_URL
    ):
        raise ZapmailError(400, f"profilePicture of mailbox {mailbox_id} must be an image URL")
    return value


def _plan(sim: ZapmailSim, ws: Workspace, rows: list[Any]) -> list[tuple[Mailbox, dict]]:
    """Validate every entry before changing anything (all or nothing, like creation)."""
    st = sim.state
    taken = {m.email for m in st.mailboxes.values()}
    seen: set[str] = set()
    planned = []
    for entry in rows:
        if not isinstance(entry, dict):
            raise ZapmailError(400, "Each entry of mailboxData must be an object")
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise ZapmailError(400, f"Unknown field {unknown[0]} in mailboxData")
        mailbox_id = entry.get("mailboxId")
        if not isinstance(mailbox_id, str) or not mailbox_id:
            raise ZapmailError(400, "mailboxId is required")
        if mailbox_id in seen:
            raise ZapmailError(400, f"Mailbox {mailbox_id} appears twice")
        seen.add(mailbox_id)
        box = st.mailboxes.get(mailbox_id)
        if box is None or box.workspace_id != ws.id:
            raise ZapmailError(404, f"Mailbox {mailbox_id} not found")
        username = entry.get("username")
        if not isinstance(username, str) or not USERNAME.match(username):
            raise ZapmailError(400, f"Invalid username {username!r}")
        if username != box.username:
            address = f"{username}@{box.domain}"
            if address in taken:
                raise ZapmailError(400, f"Mailbox {address} already exists")
            taken.add(address)
        planned.append(
            (box, {"first": _name(entry, "firstName", mailbox_id),
                   "last": _name(entry, "lastName", mailbox_id),
                   "username": username, "picture": _picture(entry, mailbox_id)})
        )  # fmt: skip
    return planned


async def update(sim: ZapmailSim, request: Request, ws: Workspace) -> Response:
    """PUT /v2/mailboxes: apply every entry or none; one ledger entry per mailbox updated."""
    body = await json_body(request)
    unknown = sorted(set(body) - {"mailboxData"})
    if unknown:
        raise ZapmailError(400, f"Unknown field {unknown[0]}")
    rows = body.get("mailboxData")
    if not isinstance(rows, list) or not rows:
        raise ZapmailError(400, "mailboxData must be a non-empty array")
    ledger = sim.ctx.ledger
    for box, spec in _plan(sim, ws, rows):
        if spec["username"] != box.username:
            old = box.email
            box.username = spec["username"]
            ledger.record(
                "zapmail", "mailbox_username_changed", old, None,
                workspace_id=ws.id, mailbox_id=box.id, new_email=box.email, warmup_reset=True,
            )  # fmt: skip
        box.first_name, box.last_name = spec["first"], spec["last"]
        if spec["picture"] is not _KEEP:
            box.profile_picture = spec["picture"]  # type: ignore[assignment]
        ledger.record(
            "zapmail", "mailbox_updated", box.email, None,
            workspace_id=ws.id, mailbox_id=box.id, first_name=box.first_name,
            last_name=box.last_name, profile_picture=box.profile_picture,
        )  # fmt: skip
    return ok(None, "Mailboxes updated successfully")
