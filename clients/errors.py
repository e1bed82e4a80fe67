"""Vendor-neutral error tree shared by every HTTP client in ``clients/``.

Clients never retry; they classify. A Prefect task catches :class:`VendorError` and asks
``exc.retryable``. Each vendor subclasses both its own base (``ZapmailError``) and the generic
class here (``RateLimitError``), so either can be caught.

Exceptions hold only plain values (no httpx request/response): Prefect pickles failed states,
and a pickled request would carry the API key header.
"""

from __future__ import annotations


class VendorError(Exception):
    """Base of every error raised by a vendor client."""

    vendor: str = "vendor"
    retryable: bool = False
    """Whether repeating the same call later may succeed (the task layer decides)."""
    outcome_unknown: bool = False
    """True when a call that spends money may have been executed although it failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        if retryable is not None:
            self.retryable = retryable
        self.outcome_unknown = outcome_unknown

    def __str__(self) -> str:
        parts = [f"[{self.vendor}]"]
        if self.status is not None:
            parts.append(str(self.status))
        parts.append(self.message)
        if self.request_id:
            parts.append(f"(request {self.request_id})")
        if self.outcome_unknown:
            parts.append("[outcome unknown: the vendor may have executed it]")
        return " ".join(parts)


class VendorConnectionError(VendorError):
    """The request did not get an HTTP response (DNS, refused, reset, protocol error)."""

    retryable = True


class VendorTimeoutError(VendorConnectionError):
    """The request timed out (connect, write, read or pool)."""


class VendorStatusError(VendorError):
    """The vendor answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        if retryable is None:
            retryable = is_retryable_status(status)
        super().__init__(
            message,
            status=status,
            request_id=request_id,
            retryable=retryable,
            outcome_unknown=outcome_unknown,
        )


class BadRequestError(VendorStatusError):
    """400 or 422: the request was invalid; repeating it will not help."""


class AuthenticationError(VendorStatusError):
    """401 or 403: the key is missing, wrong or lacks access."""


class NotFoundError(VendorStatusError):
    """404: the resource (or path) does not exist."""


class ConflictError(VendorStatusError):
    """409: a concurrent operation conflicts; retryable after a pause."""


class RateLimitError(VendorStatusError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds, if any."""

    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = 429,
        request_id: str | None = None,
        retryable: bool | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(
            message,
            status=status,
            request_id=request_id,
            retryable=retryable,
            outcome_unknown=outcome_unknown,
        )
        self.retry_after = retry_after


class ServerError(VendorStatusError):
    """5xx: the vendor failed; retryable unless the call spends money."""


class ResponseValidationError(VendorError):
    """A 2xx body that is not JSON or does not match the expected shape."""


def is_retryable_status(status: int | None) -> bool:
    """Return whether an HTTP status is worth retrying (408, 409, 429 and 5xx)."""
    if status is None:
        return False
    return status in {408, 409, 429} or status >= 500
