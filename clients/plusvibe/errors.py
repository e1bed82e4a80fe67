"""PlusVibe error tree: each class is both a ``PlusVibeError`` and the generic ``clients.errors`` class."""

from __future__ import annotations

from clients import errors as generic
from clients._http import ErrorClasses


class PlusVibeError(generic.VendorError):
    """Base of every PlusVibe client error."""

    vendor = "plusvibe"


class PlusVibeConnectionError(PlusVibeError, generic.VendorConnectionError):
    """No HTTP response from PlusVibe (retryable)."""


class PlusVibeTimeoutError(PlusVibeConnectionError, generic.VendorTimeoutError):
    """A PlusVibe request timed out (retryable unless it spends money)."""


class PlusVibeStatusError(PlusVibeError, generic.VendorStatusError):
    """PlusVibe answered with an HTTP error status."""


class PlusVibeBadRequestError(PlusVibeStatusError, generic.BadRequestError):
    """PlusVibe rejected the request (400/422)."""


class PlusVibeAuthenticationError(PlusVibeStatusError, generic.AuthenticationError):
    """PlusVibe rejected the API key (401/403)."""


class PlusVibeNotFoundError(PlusVibeStatusError, generic.NotFoundError):
    """PlusVibe answered 404."""


class PlusVibeConflictError(PlusVibeStatusError, generic.ConflictError):
    """PlusVibe answered 409 (retryable)."""


class PlusVibeRateLimitError(PlusVibeStatusError, generic.RateLimitError):
    """PlusVibe answered 429 (retryable; see ``retry_after``)."""


class PlusVibeServerError(PlusVibeStatusError, generic.ServerError):
    """PlusVibe answered 5xx (retryable unless the call spends money)."""


class PlusVibeResponseValidationError(PlusVibeError, generic.ResponseValidationError):
    """PlusVibe returned a body we could not read."""


ERRORS = ErrorClasses(
    base=PlusVibeError,
    connection=PlusVibeConnectionError,
    timeout=PlusVibeTimeoutError,
    status=PlusVibeStatusError,
    bad_request=PlusVibeBadRequestError,
    authentication=PlusVibeAuthenticationError,
    not_found=PlusVibeNotFoundError,
    conflict=PlusVibeConflictError,
    rate_limit=PlusVibeRateLimitError,
    server=PlusVibeServerError,
    validation=PlusVibeResponseValidationError,
)
