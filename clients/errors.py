"""Vendor-neutral error tree shared by every HTTP client in ``clients/``.

Clients never retry; they classify. A Prefect task catches :class:`VendorError` and asks
``exc.retryable``. Each vendor subclasses both its own base (``ZapmailError``) and the generic
class here (``RateLimitError``), so either can be caught; :func:`vendor_errors` builds
each vendor's tree from this one.

Exceptions hold only plain values (no httpx request/response): Prefect pickles failed states,
and a pickled request would carry the API key header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class VendorError(Exception):
    """Base of every error raised by a vendor client."""

    vendor: str = "vendor"
    retryable: bool = False
    """Whether repeating the same call later may succeed (the task layer decides)."""
    outcome_unknown: bool = False
    """True when a call that spends money may have been executed although it failed."""
    # Without an explicit ``retryable``: status errors derive it from the status, others keep
    # the class attribute.
    _retryable_by_status = False

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
        if retryable is None and self._retryable_by_status:
            retryable = is_retryable_status(status)
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

    _retryable_by_status = True


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
        **details: Any,
    ) -> None:
        super().__init__(message, status=status, **details)
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


@dataclass(frozen=True)
class ErrorClasses:
    """One vendor's concrete exception classes, used by ``clients._http.status_error``."""

    base: type[VendorError]
    connection: type[VendorConnectionError]
    timeout: type[VendorTimeoutError]
    status: type[VendorStatusError]
    bad_request: type[BadRequestError]
    authentication: type[AuthenticationError]
    not_found: type[NotFoundError]
    conflict: type[ConflictError]
    rate_limit: type[RateLimitError]
    server: type[ServerError]
    validation: type[ResponseValidationError]


# The generic classes in ErrorClasses field order (a parent always before its children).
_GENERIC: tuple[type[VendorError], ...] = (
    VendorError,
    VendorConnectionError,
    VendorTimeoutError,
    VendorStatusError,
    BadRequestError,
    AuthenticationError,
    NotFoundError,
    ConflictError,
    RateLimitError,
    ServerError,
    ResponseValidationError,
)


def vendor_errors(vendor: str, name: str, module: str) -> ErrorClasses:
    """Build a vendor's tree: ``<name>RateLimitError`` is a ``<name>Error`` and a ``RateLimitError``.

    Each class subclasses the vendor twin of its generic parent, then the generic class, so the
    vendor tree mirrors this one. ``module`` must bind every class under its name (pickle finds
    classes by module and name).
    """
    made: dict[type, type[VendorError]] = {}
    for generic in _GENERIC:
        twin = made.get(generic.__bases__[0])
        cls_name = name + generic.__name__.removeprefix("Vendor")
        attrs: dict[str, Any] = {
            "__module__": module,
            "__qualname__": cls_name,
            "__doc__": f"{name}: {generic.__doc__}",
        }
        if twin is None:
            attrs["vendor"] = vendor
        made[generic] = type(cls_name, (generic,) if twin is None else (twin, generic), attrs)
    return ErrorClasses(*(made[generic] for generic in _GENERIC))  # type: ignore[arg-type]
