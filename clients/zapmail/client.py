"""Typed client for the Zapmail v2 REST API: its parts put together, plus workspaces and billing.

Wallet and domains live in ``domains.py``, forwarding, DNS and health score in ``dns.py``,
mailboxes in ``mailboxes.py``, exports in ``exports.py``, and the connection in ``_base.py``. Classifies errors and never retries. Workspace scoping: ``client.for_workspace(id)`` returns a
derived client that sends ``x-workspace-key: <id>`` on every call and shares the parent's
connection pool (close the parent, not the child). Choices made where the vendor notes are
L/M or silent are listed in ``clients/README.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

from clients._http import parse
from clients.zapmail._base import DEFAULT_PAGE_SIZE
from clients.zapmail._base import ZAPMAIL_BASE_URL
from clients.zapmail._base import message_of
from clients.zapmail._base import unwrap
from clients.zapmail.dns import ZapmailDns
from clients.zapmail.domains import MAX_AVAILABILITY_NAMES
from clients.zapmail.domains import ZapmailDomains
from clients.zapmail.errors import ERRORS
from clients.zapmail.exports import ZapmailExports
from clients.zapmail.mailboxes import ZapmailMailboxes
from clients.zapmail.models import BillingDetails
from clients.zapmail.models import Workspace
from clients.zapmail.models import WorkspacePage

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_AVAILABILITY_NAMES", "ZAPMAIL_BASE_URL", "ZapmailClient"]


class ZapmailClient(ZapmailDomains, ZapmailDns, ZapmailMailboxes, ZapmailExports):
    """Typed wrapper over the Zapmail v2 API. Classifies errors; never retries."""

    def list_workspaces(
        self, *, page: int = 1, limit: int = DEFAULT_PAGE_SIZE, contains: str | None = None
    ) -> WorkspacePage:
        """Return one page: the active workspace plus the *other* workspaces."""
        body = self._call(
            "GET", "/v2/workspaces", params={"page": page, "limit": limit, "contains": contains}
        )
        return parse(ERRORS, WorkspacePage, unwrap(body), "workspace list")

    def iter_workspaces(
        self, *, contains: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[Workspace]:
        """Yield every workspace once, the active one included."""
        seen: set[str] = set()
        for page in self._pages(
            lambda n: self.list_workspaces(page=n, limit=page_size, contains=contains),
            lambda p: p.workspaces,
        ):
            candidates = [page.current_workspace, *page.workspaces]
            for workspace in candidates:
                if workspace is not None and workspace.id not in seen:
                    seen.add(workspace.id)
                    yield workspace

    def find_workspace_by_name(self, name: str) -> Workspace | None:
        """Return the workspace whose name equals ``name`` exactly, or ``None``."""
        for workspace in self.iter_workspaces(contains=name):
            if workspace.name == name:
                return workspace
        return None

    def create_workspace(
        self, name: str, billing_details: BillingDetails | Mapping[str, Any]
    ) -> Workspace:
        """Create a workspace with billing details; its ``id`` is the ``x-workspace-key``."""
        details = BillingDetails.model_validate(billing_details)
        body = self._call(
            "POST", "/v2/workspaces", json={"name": name, "billingDetails": details.to_wire()}
        )
        return parse(ERRORS, Workspace, unwrap(body), "created workspace")

    def upsert_billing_details(
        self,
        billing_details: BillingDetails | Mapping[str, Any],
        *,
        workspace_id: str | None = None,
    ) -> str | None:
        """Create or replace a workspace's billing details (``POST /v2/billing`` upserts)."""
        details = BillingDetails.model_validate(billing_details).to_wire()
        target = workspace_id or self.workspace_id
        if target is not None:
            details["workspaceId"] = target
        return message_of(self._call("POST", "/v2/billing", json=details))
