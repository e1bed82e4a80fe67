"""HeyReach simulator (docs/vendors/plusvibe-heyreach.md §2): API key check and lead lists."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route

from sandbox.context import SandboxContext
from sandbox.ratelimit import Limiter
from sandbox.ratelimit import Rule
from sandbox.ratelimit import guard
from sandbox.vendors import BadBodyError
from sandbox.vendors import json_body

MAX_PAGE = 100
MAX_LEADS_PER_CALL = 100
PROFILE_URL = re.compile(
    r"^(?:https?://)?(?:[a-z]{2,3}\.)?linkedin\.com/in/([^/?#\s]+)/?(?:[?#].*)?$", re.IGNORECASE
)
FIELD_NAME = re.compile(r"^[A-Za-z0-9_]+$")
LEAD_TEXT_FIELDS = (
    "firstName",
    "lastName",
    "location",
    "summary",
    "companyName",
    "position",
    "about",
    "emailAddress",
)


class HeyReachError(Exception):
    """An error answered as {"errorMessage": ...}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(_status: int, message: str) -> dict[str, Any]:
    """HeyReach's observed error shape."""
    return {"errorMessage": message}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def _paging(body: dict[str, Any]) -> tuple[int, int]:
    offset, limit = body.get("offset", 0), body.get("limit", 10)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise HeyReachError(400, "offset must be a non-negative integer")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise HeyReachError(400, f"limit must be between 1 and {MAX_PAGE}")
    return offset, limit


def _list_id(raw: Any) -> int:
    if isinstance(raw, bool):
        raise HeyReachError(400, "listId must be an integer")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise HeyReachError(400, "listId must be an integer") from None


class HeyReachSim:
    """The HeyReach simulator; `app` is mounted at /heyreach/api/public."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.limiter = Limiter()
        ctx.register_vendor("heyreach", error_body)
        ctx.on_reset(self.reset)
        self.reset()
        w = self._endpoint
        self.app = Starlette(
            routes=[
                Route("/auth/CheckApiKey", w(self.check_api_key), methods=["GET"]),
                Route("/list/CreateEmptyList", w(self.create_list), methods=["POST"]),
                Route("/list/GetAll", w(self.get_all), methods=["POST"]),
                Route("/list/GetById", w(self.get_by_id), methods=["GET"]),
                Route("/list/AddLeadsToListV2", w(self.add_leads), methods=["POST"]),
                Route("/list/GetLeadsFromList", w(self.get_leads), methods=["POST"]),
            ],
            exception_handlers={HTTPException: _http_error},
        )

    def reset(self) -> None:
        """Forget every list and lead."""
        self.lists: dict[int, dict[str, Any]] = {}
        self.leads: dict[int, dict[str, dict[str, Any]]] = {}
        self._next_id = 100001
        self.limiter.clear()

    def _endpoint(
        self, handler: Callable[[Request], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler with the 300/min limit, the X-API-KEY check and error bodies."""

        async def endpoint(request: Request) -> Response:
            cfg = self.ctx.config
            limits = [Rule("minute", cfg.heyreach_per_minute, 60.0)]
            refused = guard(
                request,
                self.limiter,
                header="x-api-key",
                expected_key=cfg.heyreach_api_key,
                rules=limits if cfg.rate_limits_enabled else None,
                error=_error,
            )
            if refused is not None:
                return refused
            try:
                result = await handler(request)
            except HeyReachError as exc:
                return JSONResponse(error_body(exc.status, exc.message), exc.status)
            except BadBodyError as exc:
                return JSONResponse(error_body(400, str(exc)), 400)
            return result if isinstance(result, Response) else JSONResponse(result)

        endpoint.__name__ = handler.__name__
        return endpoint

    def _list(self, list_id: int) -> dict[str, Any]:
        found = self.lists.get(list_id)
        if found is None:
            raise HeyReachError(404, "The list does not exist!")
        return found

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "count": len(self.leads[row["id"]])}

    async def check_api_key(self, _request: Request) -> Response:
        """GET /auth/CheckApiKey: 200 with an empty body when the key is valid."""
        return Response(status_code=200)

    async def create_list(self, request: Request) -> dict[str, Any]:
        """POST /list/CreateEmptyList {name, type}: the full list object."""
        body = await json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HeyReachError(400, "List name is required")
        list_type = body.get("type", "USER_LIST")
        if list_type not in ("USER_LIST", "COMPANY_LIST"):
            raise HeyReachError(400, "type must be USER_LIST or COMPANY_LIST")
        list_id, self._next_id = self._next_id, self._next_id + 1
        row = {
            "id": list_id,
            "name": name.strip(),
            "listType": list_type,
            "creationTime": _iso(self.ctx.clock.timestamp()),
            "isDeleted": False,
            "campaigns": None,
            "search": None,
            "status": "UNKNOWN",
        }
        self.lists[list_id] = row
        self.leads[list_id] = {}
        return self._view(row)

    async def get_all(self, request: Request) -> dict[str, Any]:
        """POST /list/GetAll {offset, limit<=100, keyword?, listType?}."""
        body = await json_body(request, required=False)
        offset, limit = _paging(body)
        keyword = str(body.get("keyword") or "").lower()
        list_type = body.get("listType")
        rows = [
            r for r in sorted(self.lists.values(), key=lambda r: -r["id"])
            if keyword in r["name"].lower() and (not list_type or r["listType"] == list_type)
        ]  # fmt: skip
        items = [
            {**self._view(r), "totalItemsCount": len(self.leads[r["id"]])}
            for r in rows[offset : offset + limit]
        ]
        return {"totalCount": len(rows), "items": items}

    async def get_by_id(self, request: Request) -> dict[str, Any]:
        """GET /list/GetById?listId=."""
        return self._view(self._list(_list_id(request.query_params.get("listId"))))

    async def add_leads(self, request: Request) -> dict[str, Any]:
        """POST /list/AddLeadsToListV2 {listId, leads<=100}: re-posting a lead updates it."""
        body = await json_body(request)
        row = self._list(_list_id(body.get("listId")))
        if row["listType"] != "USER_LIST":
            raise HeyReachError(400, "Leads can only be added to a USER_LIST")
        leads = body.get("leads")
        if not isinstance(leads, list) or not leads:
            raise HeyReachError(400, "leads must be a non-empty array")
        if len(leads) > MAX_LEADS_PER_CALL:
            raise HeyReachError(
                400, f"A maximum of {MAX_LEADS_PER_CALL} leads can be added per request"
            )
        stored = self.leads[row["id"]]
        added = updated = failed = 0
        for lead in leads:
            clean = _clean_lead(lead)
            if clean is None:
                failed += 1
                continue
            key = clean["profileUrl"]
            if key in stored:
                sent = {k: v for k, v in clean.items() if v is not None}
                if "customUserFields" not in lead:
                    sent.pop(
                        "customUserFields"
                    )  # an update without custom fields keeps the old ones
                stored[key].update(sent)
                updated += 1
            else:
                clean["addedTime"] = _iso(self.ctx.clock.timestamp())
                stored[key] = clean
                added += 1
        return {"addedLeadsCount": added, "updatedLeadsCount": updated, "failedLeadsCount": failed}

    async def get_leads(self, request: Request) -> dict[str, Any]:
        """POST /list/GetLeadsFromList {listId, offset, limit<=100, keyword?, leadProfileUrl?}."""
        body = await json_body(request)
        row = self._list(_list_id(body.get("listId")))
        offset, limit = _paging(body)
        rows = list(self.leads[row["id"]].values())
        keyword = str(body.get("keyword") or "").lower()
        if keyword:
            rows = [
                r
                for r in rows
                if keyword in " ".join(str(r.get(k) or "") for k in LEAD_TEXT_FIELDS).lower()
            ]
        if body.get("leadProfileUrl"):
            wanted = _normal_url(str(body["leadProfileUrl"]))
            rows = [r for r in rows if r["profileUrl"] == wanted]
        return {"totalCount": len(rows), "items": rows[offset : offset + limit]}


def _normal_url(raw: str) -> str | None:
    match = PROFILE_URL.match(raw.strip())
    if not match:
        return None
    return f"https://www.linkedin.com/in/{match.group(1).lower()}"


def _clean_lead(lead: Any) -> dict[str, Any] | None:
    """Validate one lead; None means it counts as failed (missing or non-profile URL, bad fields)."""
    if not isinstance(lead, dict) or not isinstance(lead.get("profileUrl"), str):
        return None
    url = _normal_url(lead["profileUrl"])
    if url is None:
        return None
    custom = lead.get("customUserFields") or []
    if not isinstance(custom, list) or not all(
        isinstance(f, dict) and isinstance(f.get("name"), str) and FIELD_NAME.match(f["name"])
        for f in custom
    ):
        return None
    out: dict[str, Any] = {
        "linkedin_id": "ACoAA" + hashlib.sha256(url.encode()).hexdigest()[:20].upper(),
        "profileUrl": url,
        "headline": lead.get("position"),
        "customUserFields": [{"name": f["name"], "value": str(f.get("value", ""))} for f in custom],
    }
    for key in LEAD_TEXT_FIELDS:
        value = lead.get(key)
        out[key] = value if isinstance(value, str) else None
    return out


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        error_body(exc.status_code, "Not found" if exc.status_code == 404 else exc.detail),
        exc.status_code,
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status, headers)
