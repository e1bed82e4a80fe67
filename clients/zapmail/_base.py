"""What every part of the Zapmail client shares: the key, workspace scoping and paging.

``for_workspace(id)`` returns a derived client that sends ``x-workspace-key: <id>`` on every call
and shares the parent's connection pool (close the parent, not the child).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any
from typing import Self
from typing import TypeVar

from clients.base import WorkspaceClient
from clients.zapmail.errors import ERRORS
from clients.zapmail.models import Page

ZAPMAIL_BASE_URL = "https://api.zapmail.ai/api"
DEFAULT_PAGE_SIZE = 100
# A runaway guard: Zapmail's nextPage never goes null, so a bug in the stop rule would loop.
_MAX_PAGES = 10_000

P = TypeVar("P", bound=Page)


def unwrap(body: Any) -> Any:
    """Return an enveloped body's ``data``, or the body itself."""
    # Most v2 bodies are {"status", "message", "data"}; a few are flat. Read both.
    if isinstance(body, dict) and "data" in body:
        return body["data"]
    return body


def flat(body: Any) -> Any:
    """Return a flat body, merging an envelope's ``data`` object up into it."""
    # Documented flat bodies (wallet, buy); tolerate an envelope by merging its data up.
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        return {**{k: v for k, v in body.items() if k != "data"}, **body["data"]}
    return body


def message_of(body: Any) -> str | None:
    """Return the body's ``message``, if it has one."""
    return body.get("message") if isinstance(body, dict) else None


def require_ids(values: Sequence[str | int], what: str) -> list[str]:
    """Return the ids as strings; raise ``ValueError`` when none is left."""
    # An empty id list next to empty filters could select every domain in the workspace.
    ids = [str(v) for v in values if str(v)]
    if not ids:
        raise ValueError(f"{what} must not be empty")
    return ids


def norm_domain(name: str) -> str:
    """Return a domain name as Zapmail compares it (trimmed, no final dot, lower case)."""
    return name.strip().rstrip(".").lower()


class ZapmailBase(WorkspaceClient):
    """The Zapmail v2 connection, scoped to ``workspace_id`` (``None``: the primary one)."""

    vendor = "zapmail"
    errors = ERRORS
    default_base_url = ZAPMAIL_BASE_URL
    key_header = "x-auth-zapmail"
    error_message_keys = ("message", "error", "errors")
    error_id_keys = ("errorId", "error_id", "requestId")

    def for_workspace(self, workspace_id: str | None) -> Self:
        """Return a client scoped to a workspace (``None`` = primary), sharing this pool."""
        child = object.__new__(type(self))
        child._http = self._http
        child._owns_http = False
        child.workspace_id = None if workspace_id is None else str(workspace_id)
        return child

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"x-workspace-key": self.workspace_id} if self.workspace_id else None
        return self._http.request(method, path, headers=headers, **kwargs)

    @staticmethod
    def _pages(fetch: Callable[[int], P], items: Callable[[P], Sequence[Any]]) -> Iterator[P]:
        # nextPage is never null, so stop on totalPages or on an empty page.
        number = 1
        while number <= _MAX_PAGES:
            page = fetch(number)
            yield page
            if not items(page):
                return
            if page.total_pages is not None and number >= page.total_pages:
                return
            number += 1
