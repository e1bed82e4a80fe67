"""Zapmail error tree: each class is both a ``ZapmailError`` and the generic ``clients.errors`` class."""

from __future__ import annotations

from clients import errors as generic
from clients._http import ErrorClasses


class ZapmailError(generic.VendorError):
    """Base of every Zapmail client error."""

    vendor = "zapmail"


class ZapmailConnectionError(ZapmailError, generic.VendorConnectionError):
    """No HTTP response from Zapmail (retryable)."""


class ZapmailTimeoutError(ZapmailConnectionError, generic.VendorTimeoutError):
    """A Zapmail request timed out (retryable unless it spends money)."""


class ZapmailStatusError(ZapmailError, generic.VendorStatusError):
    """Zapmail answered with an HTTP error status."""


class ZapmailBadRequestError(ZapmailStatusError, generic.BadRequestError):
    """Zapmail rejected the request (400/422)."""


class ZapmailAuthenticationError(ZapmailStatusError, generic.AuthenticationError):
    """Zapmail rejected the API key (401/403)."""


class ZapmailNotFoundError(ZapmailStatusError, generic.NotFoundError):
    """Zapmail answered 404."""


class ZapmailConflictError(ZapmailStatusError, generic.ConflictError):
    """Zapmail answered 409 (retryable)."""


class ZapmailRateLimitError(ZapmailStatusError, generic.RateLimitError):
    """Zapmail answered 429 (retryable; see ``retry_after``)."""


class ZapmailServerError(ZapmailStatusError, generic.ServerError):
    """Zapmail answered 5xx (retryable unless the call spends money)."""


class ZapmailResponseValidationError(ZapmailError, generic.ResponseValidationError):
    """Zapmail returned a body we could not read."""


ERRORS = ErrorClasses(
    base=ZapmailError,
    connection=ZapmailConnectionError,
    timeout=ZapmailTimeoutError,
    status=ZapmailStatusError,
    bad_request=ZapmailBadRequestError,
    authentication=ZapmailAuthenticationError,
    not_found=ZapmailNotFoundError,
    conflict=ZapmailConflictError,
    rate_limit=ZapmailRateLimitError,
    server=ZapmailServerError,
    validation=ZapmailResponseValidationError,
)
