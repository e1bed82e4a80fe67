"""Zapmail's wire conventions: envelopes, error bodies, pagination and body field checks."""

from __future__ import annotations

import math
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


class ZapmailError(Exception):
    """An error answered with Zapmail's error envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> dict[str, Any]:
    """Zapmail's error envelope (zapmail.md §4)."""
    return {"status": status, "message": message, "errorId": str(uuid.uuid4())}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Return an error envelope response."""
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def ok(data: Any, message: str = "Success") -> JSONResponse:
    """Return the standard success envelope."""
    return JSONResponse({"status": 200, "message": message, "data": data})


def flat(body: dict[str, Any]) -> JSONResponse:
    """Return one of the documented flat (envelope-less) bodies."""
    return JSONResponse(body)


def pagination(request: Request, body: dict[str, Any] | None = None) -> tuple[int, int]:
    """Read page (1-based, default 1) and limit (default 10); the query string wins over the body."""
    body = body or {}
    values = []
    for name, default in (("page", 1), ("limit", 10)):
        raw = request.query_params.get(name)
        if raw is None:
            raw = body.get(name, default)
        try:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            value = int(raw)
        except (TypeError, ValueError):
            raise ZapmailError(400, "Invalid pagination parameters") from None
        if value < 1 or (name == "limit" and value > 1000):
            raise ZapmailError(400, "Invalid pagination parameters")
        values.append(value)
    return values[0], values[1]


def paginate(rows: list[Any], page: int, limit: int) -> tuple[list[Any], dict[str, Any]]:
    """Slice one page and build the pagination fields; nextPage is never null (a real quirk)."""
    total = len(rows)
    meta = {
        "totalSearchedCount": total,
        "currentPage": page,
        "nextPage": page + 1,
        "totalPages": math.ceil(total / limit),
    }
    return rows[(page - 1) * limit : page * limit], meta


def need(
    body: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str | None = None
) -> Any:
    """Return body[key] or raise a 400 naming the key when it is missing or of the wrong type."""
    if key not in body:
        raise ZapmailError(400, f"{key} is required")
    value = body[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ZapmailError(400, f"{key} must be {what or _type_name(kind)}")
    return value


def string_list(body: dict[str, Any], key: str, *, required: bool = False) -> list[str]:
    """Return a list of strings from the body (absent -> [] unless required)."""
    if key not in body or body[key] is None:
        if required:
            raise ZapmailError(400, f"{key} is required")
        return []
    value = body[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ZapmailError(400, f"{key} must be an array of strings")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        list: "an array",
        dict: "an object",
    }
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))
