"""Zapmail exports to sequencers: register a sequencer login, export mailboxes, follow the export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr
from pydantic import TypeAdapter

from clients._http import first_present
from clients._http import parse
from clients.zapmail._base import ZapmailBase
from clients.zapmail._base import message_of
from clients.zapmail._base import require_ids
from clients.zapmail._base import unwrap
from clients.zapmail.errors import ERRORS
from clients.zapmail.models import ExportStatus
from clients.zapmail.models import ThirdPartyAccount

_ACCOUNTS = TypeAdapter(list[ThirdPartyAccount])


class ZapmailExports(ZapmailBase):
    """Export methods of :class:`~clients.zapmail.client.ZapmailClient`."""

    def add_third_party_account(
        self, email: str, password: str | SecretStr, *, app: str = "PIPL"
    ) -> str | None:
        """Register a sequencer login (PlusVibe = ``PIPL``) in the workspace; returns no id."""
        secret = password.get_secret_value() if isinstance(password, SecretStr) else password
        body = self._call(
            "POST",
            "/v2/exports/accounts/third-party",
            json={"email": email, "password": secret, "app": app},
            secrets=[secret],
        )
        return message_of(body)

    def list_third_party_accounts(self, app: str = "PIPL") -> list[ThirdPartyAccount]:
        """Return the sequencer logins registered for ``app`` (Zapmail requires ``app``)."""
        body = self._call("GET", "/v2/exports/accounts/third-party", params={"app": app})
        data = unwrap(body)
        if isinstance(data, dict):
            data = first_present(data, "accounts", "data", "items") or []
        return parse(ERRORS, _ACCOUNTS, data, "third-party account list")

    def find_third_party_account(
        self, email: str, *, app: str = "PIPL"
    ) -> ThirdPartyAccount | None:
        """Return the registered login for ``email`` (case-insensitive), or ``None``."""
        wanted = email.strip().lower()
        for account in self.list_third_party_accounts(app):
            if (account.email or "").strip().lower() == wanted:
                return account
        return None

    def export_mailboxes(
        self,
        mailbox_ids: Sequence[str | int],
        *,
        third_party_account_id: str,
        app: str = "PIPL",
    ) -> str | None:
        """Start exporting ACTIVE mailboxes to a sequencer account; returns the export id.

        ``None`` means Zapmail answered without an id (older behaviour); follow the result on
        the sequencer side instead.
        """
        body = self._call(
            "POST",
            "/v2/exports/mailboxes",
            # Every selector key is sent, empty when unused; Zapmail rejects bodies missing one.
            json={
                "apps": [app],
                "ids": require_ids(mailbox_ids, "mailbox_ids"),
                "excludeIds": [],
                "tagIds": [],
                "status": "ACTIVE",
                "contains": "",
                "thirdPartyAccountId": str(third_party_account_id),
            },
        )
        return _export_id(body)

    def get_export_status(self, export_id: str) -> ExportStatus:
        """Return the state of an export (``completed``/``failed``, case varies)."""
        body = self._call("GET", "/v2/exports/status", params={"exportId": export_id})
        data = unwrap(body)
        if data is None:
            data = {}
        status = parse(ERRORS, ExportStatus, data, "export status")
        if status.export_id is None:
            status.export_id = export_id
        return status


def _export_id(body: Any) -> str | None:
    candidates: list[Any] = []
    if isinstance(body, dict):
        candidates.append(first_present(body, "exportId", "export_id"))
        data = body.get("data")
        if isinstance(data, dict):
            candidates.append(first_present(data, "exportId", "export_id", "id"))
        elif isinstance(data, str | int):
            candidates.append(data)
    for candidate in candidates:
        if candidate not in (None, ""):
            return str(candidate)
    return None
