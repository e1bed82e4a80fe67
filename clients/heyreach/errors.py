"""HeyReach error tree: each class is both a ``HeyReachError`` and the generic ``clients.errors`` class."""

from __future__ import annotations

from clients import errors as generic
from clients._http import ErrorClasses


class HeyReachError(generic.VendorError):
    """Base of every HeyReach client error."""

    vendor = "heyreach"


class HeyReachConnectionError(HeyReachError, generic.VendorConnectionError):
    """No HTTP response from HeyReach (retryable)."""


class HeyReachTimeoutError(HeyReachConnectionError, generic.VendorTimeoutError):
    """A HeyReach request timed out (retryable unless it spends money)."""


class HeyReachStatusError(HeyReachError, generic.VendorStatusError):
    """HeyReach answered with an HTTP error status."""


class HeyReachBadRequestError(HeyReachStatusError, generic.BadRequestError):
    """HeyReach rejected the request (400/422)."""


class HeyReachAuthenticationError(HeyReachStatusError, generic.AuthenticationError):
    """HeyReach rejected the API key (401/403)."""


class HeyReachNotFoundError(HeyReachStatusError, generic.NotFoundError):
    """HeyReach answered 404."""


class HeyReachConflictError(HeyReachStatusError, generic.ConflictError):
    """HeyReach answered 409 (retryable)."""


class HeyReachRateLimitError(HeyReachStatusError, generic.RateLimitError):
    """HeyReach answered 429 (retryable; see ``retry_after``)."""


class HeyReachServerError(HeyReachStatusError, generic.ServerError):
    """HeyReach answered 5xx (retryable unless the call spends money)."""


class HeyReachResponseValidationError(HeyReachError, generic.ResponseValidationError):
    """HeyReach returned a body we could not read."""


ERRORS = ErrorClasses(
    base=HeyReachError,
    connection=HeyReachConnectionError,
    timeout=HeyReachTimeoutError,
    status=HeyReachStatusError,
    bad_request=HeyReachBadRequestError,
    authentication=HeyReachAuthenticationError,
    not_found=HeyReachNotFoundError,
    conflict=HeyReachConflictError,
    rate_limit=HeyReachRateLimitError,
    server=HeyReachServerError,
    validation=HeyReachResponseValidationError,
)
