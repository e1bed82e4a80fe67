"""PlusVibe error tree: each class is both a ``PlusVibeError`` and the generic ``clients.errors`` class."""

from __future__ import annotations

from clients.errors import vendor_errors

ERRORS = vendor_errors("plusvibe", "PlusVibe", __name__)

PlusVibeError = ERRORS.base
PlusVibeConnectionError = ERRORS.connection
PlusVibeTimeoutError = ERRORS.timeout
PlusVibeStatusError = ERRORS.status
PlusVibeBadRequestError = ERRORS.bad_request
PlusVibeAuthenticationError = ERRORS.authentication
PlusVibeNotFoundError = ERRORS.not_found
PlusVibeConflictError = ERRORS.conflict
PlusVibeRateLimitError = ERRORS.rate_limit
PlusVibeServerError = ERRORS.server
PlusVibeResponseValidationError = ERRORS.validation
