"""Typed client for the HeyReach public API: key check, lead lists and their leads.

List endpoints page with ``{offset, limit}`` (limit at most 100) and answer
``{totalCount, items}``. ``add_leads`` splits its input into requests of at most 100 leads.
Classifies errors; never retries.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import Self
from typing import TypeVar

import httpx
from pydantic import AliasChoices
from pydantic import Field

from clients._http import VendorHTTP
from clients._http import first_present
from clients._http import parse
from clients._http import require_key
from clients._http import text_of
from clients._http import timeout_from_settings
from clients.heyreach.errors import ERRORS
from clients.heyreach.errors import HeyReachAuthenticationError
from clients.heyreach.models import AddLeadsResult
from clients.heyreach.models import HeyReachList
from clients.heyreach.models import HeyReachModel
from clients.heyreach.models import Lead
from clients.heyreach.models import LeadPage
from clients.heyreach.models import ListLead
from clients.heyreach.models import ListPage

if TYPE_CHECKING:
    from core.settings import Settings

HEYREACH_BASE_URL = "https://api.heyreach.io/api/public"
MAX_PAGE_SIZE = 100
MAX_LEADS_PER_REQUEST = 100
_MAX_PAGES = 100_000

PageT = TypeVar("PageT", ListPage, LeadPage)


class _BatchResult(HeyReachModel):
    # Two answer shapes are reported: {added, updated, failed} and {added, total, duplicate}.
    added_leads_count: int | None = None
    updated_leads_count: int | None = Field(
        None, validation_alias=AliasChoices("updatedLeadsCount", "duplicateLeads")
    )
    failed_leads_count: int | None = None


def _describe_error(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        return None, None
    message = text_of(first_present(body, "errorMessage", "message", "error", "title", "errors"))
    request_id = first_present(body, "traceId", "requestId")
    return message, None if request_id is None else str(request_id)


class HeyReachClient:
    """Typed wrapper over the HeyReach public API. Classifies errors; never retries."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = HEYREACH_BASE_URL,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = VendorHTTP(
            vendor="heyreach",
            errors=ERRORS,
            base_url=base_url,
            headers={"X-API-KEY": api_key},
            secrets=[api_key],
            timeout=timeout,
            transport=transport,
            describe_error=_describe_error,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """Build a client from ``core.settings.Settings``; keyword overrides win."""
        kwargs: dict[str, Any] = {
            "base_url": settings.heyreach_base_url,
            "timeout": timeout_from_settings(settings),
        }
        kwargs.update(overrides)
        api_key = kwargs.pop("api_key", None) or require_key(
            settings.heyreach_api_key, "heyreach_api_key"
        )
        return cls(api_key, **kwargs)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HeyReachClient(base_url={self._http.base_url!r})"

    def check_api_key(self) -> bool:
        """Return True if the key is valid, False if HeyReach rejects it (401/403)."""
        try:
            self._http.request("GET", "/auth/CheckApiKey")
        except HeyReachAuthenticationError:
            return False
        return True

    # Lists

    def create_list(self, name: str, type: str = "USER_LIST") -> HeyReachList:
        """Create an empty lead list (``USER_LIST`` or ``COMPANY_LIST``)."""
        body = self._http.request(
            "POST", "/list/CreateEmptyList", json={"name": name, "type": type}
        )
        return parse(ERRORS, HeyReachList, body, "created list")

    def get_list(self, list_id: int) -> HeyReachList:
        """Return one list by id."""
        body = self._http.request("GET", "/list/GetById", params={"listId": list_id})
        return parse(ERRORS, HeyReachList, body, "list")

    def list_lists_page(
        self, *, offset: int = 0, limit: int = MAX_PAGE_SIZE, keyword: str | None = None
    ) -> ListPage:
        """Return one page of ``list/GetAll``."""
        body = self._page_body(offset, limit, keyword=keyword)
        return parse(
            ERRORS, ListPage, self._http.request("POST", "/list/GetAll", json=body), "list page"
        )

    def iter_lists(
        self, *, keyword: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[HeyReachList]:
        """Yield every list (``keyword`` is HeyReach's own filter)."""
        yield from self._paginate(
            lambda offset: self.list_lists_page(offset=offset, limit=page_size, keyword=keyword),
        )

    def find_list_by_name(self, name: str) -> HeyReachList | None:
        """Return the non-deleted list named exactly ``name``, or ``None``."""
        for heyreach_list in self.iter_lists(keyword=name):
            if heyreach_list.name == name and not heyreach_list.is_deleted:
                return heyreach_list
        return None

    # Leads

    def add_leads(self, list_id: int, leads: Sequence[Lead | Mapping[str, Any]]) -> AddLeadsResult:
        """Add leads to a list in requests of at most 100; returns the summed counts.

        Every lead is validated before the first request. If a later batch fails, earlier
        batches stay added; re-adding a lead that is already in the list updates it, so
        calling again with the same input is safe.
        """
        rows = [Lead.model_validate(lead).to_wire() for lead in leads]
        if not rows:
            raise ValueError("add_leads needs at least one lead")
        result = AddLeadsResult()
        for start in range(0, len(rows), MAX_LEADS_PER_REQUEST):
            batch = rows[start : start + MAX_LEADS_PER_REQUEST]
            body = self._http.request(
                "POST", "/list/AddLeadsToListV2", json={"listId": list_id, "leads": batch}
            )
            if isinstance(body, int) and not isinstance(body, bool):
                # The legacy endpoint answers a bare count; accept it if a proxy serves that.
                counts = _BatchResult(addedLeadsCount=body)
            else:
                counts = parse(ERRORS, _BatchResult, body, "add-leads result")
            result.added_leads_count += counts.added_leads_count or 0
            result.updated_leads_count += counts.updated_leads_count or 0
            result.failed_leads_count += counts.failed_leads_count or 0
            result.batches += 1
        return result

    def list_leads_page(
        self,
        list_id: int,
        *,
        offset: int = 0,
        limit: int = MAX_PAGE_SIZE,
        keyword: str | None = None,
    ) -> LeadPage:
        """Return one page of ``list/GetLeadsFromList``."""
        body = self._page_body(offset, limit, keyword=keyword, listId=list_id)
        return parse(
            ERRORS,
            LeadPage,
            self._http.request("POST", "/list/GetLeadsFromList", json=body),
            "lead page",
        )

    def iter_leads(
        self, list_id: int, *, keyword: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[ListLead]:
        """Yield every lead of a list."""
        yield from self._paginate(
            lambda offset: self.list_leads_page(
                list_id, offset=offset, limit=page_size, keyword=keyword
            ),
        )

    def get_lead_count(self, list_id: int) -> int:
        """Return the number of leads in a list (``totalCount`` of a one-row page)."""
        page = self.list_leads_page(list_id, offset=0, limit=1)
        if page.total_count is None:
            raise ERRORS.validation("unexpected lead page shape: totalCount missing")
        return page.total_count

    # Plumbing

    @staticmethod
    def _page_body(offset: int, limit: int, **extra: Any) -> dict[str, Any]:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        body: dict[str, Any] = {"offset": offset, "limit": limit}
        body.update({key: value for key, value in extra.items() if value is not None})
        return body

    @staticmethod
    def _paginate(fetch: Callable[[int], PageT]) -> Iterator[Any]:
        offset = 0
        for _ in range(_MAX_PAGES):
            page = fetch(offset)
            yield from page.items
            offset += len(page.items)
            if not page.items:
                return
            if page.total_count is not None and offset >= page.total_count:
                return
