"""Vendor simulators and the small request/response helpers they share."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


class BadBodyError(Exception):
    """The request body is not the JSON object a handler needs."""


BadBody = BadBodyError  # earlier name, kept because sandbox/vendors/stripe imports it


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """Parse the request body as a JSON object; empty bodies give {} unless required."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise BadBodyError("Request body must be a JSON object")
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadBodyError("Request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise BadBodyError("Request body must be a JSON object")
    return data


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Return a JSON response."""
    return JSONResponse(data, status_code=status, headers=headers)


def api_key(request: Request, header: str) -> str:
    """Return the API key header value ('' when absent)."""
    return request.headers.get(header, "")
