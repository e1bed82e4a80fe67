"""Stripe's error envelope, `{"error": {"type", "message", "param"?, "code"?}}`, and statuses."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An API error the simulator answers with Stripe's error JSON."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.param = param
        self.code = code
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        """Return the JSON body Stripe sends for this error."""
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param is not None:
            err["param"] = self.param
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        err.update(self.extra)
        return {"error": err}


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """Return a 400 invalid_request_error."""
    return StripeError(400, "invalid_request_error", message, param=param, code=code)


def missing(param: str) -> StripeError:
    """Return the 400 Stripe sends for a missing required parameter."""
    return invalid(f"Missing required param: {param}.", param, "parameter_missing")


def no_such(kind: str, object_id: str, param: str = "id", status: int = 400) -> StripeError:
    """Return Stripe's resource_missing error (404 for a path id, 400 for a param)."""
    return StripeError(
        status,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        param=param,
        code="resource_missing",
    )


def card_declined(extra: dict[str, Any] | None = None) -> StripeError:
    """Return the 402 card_error of a declined card."""
    return StripeError(
        402,
        "card_error",
        "Your card was declined.",
        code="card_declined",
        extra={"decline_code": "generic_decline", **(extra or {})},
    )


def error_body(status: int, message: str) -> dict[str, Any]:
    """Shape an injected fault the way Stripe shapes errors with that status."""
    if status == 401:
        type_, code = "authentication_error", None
    elif status == 402:
        type_, code = "card_error", "card_declined"
    elif status == 429:
        type_, code = "invalid_request_error", "rate_limit"
    elif status == 409:
        type_, code = "idempotency_error", None
    elif status >= 500:
        type_, code = "api_error", None
    else:
        type_, code = "invalid_request_error", None
    return StripeError(status, type_, message, code=code).body()
