"""Typed client for the PlusVibe (ex-pipl.ai) REST API: workspaces, client logins, accounts.

``workspace_id`` goes in the query string on GET and in the JSON body on POST/PUT/PATCH. The
operator's own workspace (``Settings.plusvibe_workspace_id``) is only the auth context for
``POST /workspaces/add/`` and ``/client``; when unset, the first workspace from
``GET /authenticate`` is used. Classifies errors; never retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

from pydantic import SecretStr
from pydantic import TypeAdapter

from clients._http import first_present
from clients._http import parse
from clients._http import text_of
from clients.base import WorkspaceClient
from clients.plusvibe.errors import ERRORS
from clients.plusvibe.models import Account
from clients.plusvibe.models import ClientLogin
from clients.plusvibe.models import PlusVibeClientAccount
from clients.plusvibe.models import PlusVibeWorkspace
from clients.plusvibe.models import WarmupSettings
from clients.plusvibe.models import WarmupStatusUpdate

if TYPE_CHECKING:
    from core.settings import Settings

PLUSVIBE_BASE_URL = "https://api.plusvibe.ai/api/v1"
MAX_PAGE_SIZE = 100
_MAX_PAGES = 10_000

_WORKSPACES = TypeAdapter(list[PlusVibeWorkspace])
_CLIENTS = TypeAdapter(list[PlusVibeClientAccount])
_ACCOUNTS = TypeAdapter(list[Account])


def _list_in(body: Any, *keys: str) -> Any:
    # List endpoints wrap rows differently ({accounts: []}, {data: []}, a bare list).
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in keys:
            value = body.get(key)
            if isinstance(value, list):
                return value
            if isinstance(value, dict):
                nested = _list_in(value, *keys)
                if isinstance(nested, list):
                    return nested
    # No rows where the vendor puts them: left as is, so validation calls it unreadable. Never
    # "no rows": a listing decides whether an export happened.
    return body


def _object_in(body: Any, *keys: str) -> Any:
    if isinstance(body, dict):
        for key in keys:
            if isinstance(body.get(key), dict):
                return body[key]
    return body


def _ids(values: Sequence[str], what: str) -> list[str]:
    ids = [str(v) for v in values if str(v)]
    if not ids:
        raise ValueError(f"{what} must not be empty")
    return ids


class PlusVibeClient(WorkspaceClient):
    """Typed wrapper over the PlusVibe API. Classifies errors; never retries.

    ``workspace_id`` is the operator's own workspace: the auth context for creating
    workspaces and clients.
    """

    vendor = "plusvibe"
    errors = ERRORS
    default_base_url = PLUSVIBE_BASE_URL
    key_header = "x-api-key"
    # No official error schema: {"message"}, {"error"} and {"errors": [...]} all occur.
    error_message_keys = ("message", "error", "errors", "detail")
    error_id_keys = ("request_id", "requestId", "errorId")

    @classmethod
    def _settings_options(cls, settings: Settings) -> dict[str, Any]:
        return {"workspace_id": settings.plusvibe_workspace_id}

    # Workspaces

    def list_workspaces(self) -> list[PlusVibeWorkspace]:
        """Return the workspaces this API key can reach (``GET /authenticate``)."""
        body = self._http.request("GET", "/authenticate")
        rows = _list_in(body, "workspaces", "data")
        return parse(ERRORS, _WORKSPACES, rows, "workspace list")

    def find_workspace_by_name(self, name: str) -> PlusVibeWorkspace | None:
        """Return the workspace named exactly ``name``, or ``None``."""
        for workspace in self.list_workspaces():
            if workspace.name == name:
                return workspace
        return None

    def create_workspace(self, name: str) -> PlusVibeWorkspace:
        """Create a workspace; the operator workspace only authenticates the call."""
        body = self._send(
            "POST",
            "/workspaces/add/",
            {"workspace_id": self._auth_workspace_id(), "workspace_name": name},
        )
        data = _object_in(body, "data", "workspace")
        new_id = (
            first_present(data, "_id", "id", "workspace_id") if isinstance(data, dict) else None
        )
        if new_id is None:
            raise ERRORS.validation("unexpected created workspace shape: no _id/id in the answer")
        return PlusVibeWorkspace(id=str(new_id), name=(data.get("name") or name))

    # Client logins (agency "Client Access")

    def create_client(
        self,
        *,
        email: str,
        first_name: str,
        last_name: str,
        business_name: str,
        workspace_ids: Sequence[str],
        permissions: Sequence[str] = ("FULL_ACCESS",),
        hide_labels: Sequence[str] = (),
    ) -> ClientLogin:
        """Create a client login with access to ``workspace_ids``.

        The answer's shape ``{client_id, email, password}`` is unconfirmed; the one-time
        password is wrapped in ``SecretStr`` immediately. Store it encrypted at once.
        """
        body = self._send(
            "POST",
            "/client",
            {
                "workspace_id": self._auth_workspace_id(),
                "client_email": email,
                "client_first_name": first_name,
                "client_last_name": last_name,
                "client_business_name": business_name,
                "workspaces": [
                    {
                        "id": workspace_id,
                        "permissions": list(permissions),
                        "hide_labels": list(hide_labels),
                    }
                    for workspace_id in _ids(workspace_ids, "workspace_ids")
                ],
            },
        )
        data = _object_in(body, "data", "client")
        login = parse(ERRORS, ClientLogin, data, "created client")
        if login.email is None:
            login.email = email
        return login

    def list_clients(self) -> list[PlusVibeClientAccount]:
        """Return the client logins visible from the operator workspace (``GET /client/``)."""
        body = self._get("/client/", self._auth_workspace_id())
        rows = _list_in(body, "clients", "data", "items")
        return parse(ERRORS, _CLIENTS, rows, "client list")

    def find_client_by_email(self, email: str) -> PlusVibeClientAccount | None:
        """Return the client login with this email (case-insensitive), or ``None``."""
        wanted = email.strip().lower()
        for client in self.list_clients():
            if (client.email or "").strip().lower() == wanted:
                return client
        return None

    def set_client_password(self, client_id: str, password: str | SecretStr) -> str | None:
        """Set a client login's password (``PUT /client``)."""
        secret = password.get_secret_value() if isinstance(password, SecretStr) else password
        body = self._send(
            "PUT",
            "/client",
            {
                "workspace_id": self._auth_workspace_id(),
                "client_id": client_id,
                "client_password": secret,
            },
            secrets=[secret],
        )
        return text_of(first_present(body, "message", "status")) if isinstance(body, dict) else None

    # Email accounts

    def list_accounts_page(
        self,
        workspace_id: str,
        *,
        skip: int = 0,
        limit: int = MAX_PAGE_SIZE,
        email: str | None = None,
    ) -> list[Account]:
        """Return one page of ``GET /account/list`` (``limit`` at most 100)."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        body = self._get(
            "/account/list", workspace_id, {"skip": skip, "limit": limit, "email": email}
        )
        rows = _list_in(body, "accounts", "data", "items")
        return parse(ERRORS, _ACCOUNTS, rows, "account list")

    def iter_accounts(
        self, workspace_id: str, *, email: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[Account]:
        """Yield every email account of a workspace, following skip/limit pages."""
        seen: set[str] = set()
        skip = 0
        for _ in range(_MAX_PAGES):
            page = self.list_accounts_page(workspace_id, skip=skip, limit=page_size, email=email)
            fresh = [account for account in page if account.id not in seen]
            yield from fresh
            seen.update(account.id for account in fresh)
            # A short page is the last one; a page with nothing new means skip is ignored.
            if len(page) < page_size or not fresh:
                return
            skip += len(page)

    def list_accounts(self, workspace_id: str, *, email: str | None = None) -> list[Account]:
        """Return every email account of a workspace."""
        return list(self.iter_accounts(workspace_id, email=email))

    def bulk_update_accounts(
        self, workspace_id: str, ids: Sequence[str], settings: WarmupSettings
    ) -> str | None:
        """Write warmup and sending settings to accounts (``PUT /account/bulk-update``)."""
        fields = settings.to_payload()
        if not fields:
            raise ValueError("settings has no field set; nothing to update")
        body = self._send(
            "PUT",
            "/account/bulk-update",
            {"workspace_id": workspace_id, "ids": _ids(ids, "ids"), **fields},
        )
        return text_of(first_present(body, "message", "status")) if isinstance(body, dict) else None

    def set_warmup_status(
        self, workspace_id: str, ids: Sequence[str], active: bool
    ) -> WarmupStatusUpdate:
        """Turn warmup on or off for accounts (``PATCH /account/bulk-update-warmup``)."""
        body = self._send(
            "PATCH",
            "/account/bulk-update-warmup",
            {
                "workspace_id": workspace_id,
                "ids": _ids(ids, "ids"),
                "warmup_status": "ACTIVE" if active else "INACTIVE",
            },
        )
        data = _object_in(body, "data")
        return parse(
            ERRORS, WarmupStatusUpdate, data if isinstance(data, dict) else {}, "warmup update"
        )

    # Plumbing

    def _auth_workspace_id(self) -> str:
        if self.workspace_id is None:
            workspaces = self.list_workspaces()
            if not workspaces:
                raise ERRORS.validation("GET /authenticate returned no workspace for this key")
            self.workspace_id = workspaces[0].id
        return self.workspace_id

    def _get(self, path: str, workspace_id: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._http.request(
            "GET", path, params={"workspace_id": workspace_id, **(params or {})}
        )

    def _send(
        self, method: str, path: str, body: dict[str, Any], *, secrets: Sequence[str] = ()
    ) -> Any:
        return self._http.request(method, path, json=body, secrets=secrets)
