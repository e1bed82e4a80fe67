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
from typing import Any
from typing import TypeVar

from pydantic import AliasChoices
from pydantic import Field

from clients._http import parse
from clients.base import VendorClient
from clients.heyreach.errors import ERRORS
from clients.heyreach.errors import HeyReachAuthenticationError
from clients.heyreach.models import AddLeadsResult
from clients.heyreach.models import HeyReachList
from clients.heyreach.models import HeyReachModel
from clients.heyreach.models import Lead
from clients.heyreach.models import LeadPage
from clients.heyreach.models import ListLead
from clients.heyreach.models import ListPage

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


class HeyReachClient(VendorClient):
    """Typed wrapper over the HeyReach public API. Classifies errors; never retries."""

    vendor = "heyreach"
    errors = ERRORS
    default_base_url = HEYREACH_BASE_URL
    key_header = "X-API-KEY"
    error_message_keys = ("errorMessage", "message", "error", "title", "errors")
    error_id_keys = ("traceId", "requestId")

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
