"""HeyReach error tree: each class is both a ``HeyReachError`` and the generic ``clients.errors`` class."""

from __future__ import annotations

from clients.errors import vendor_errors

ERRORS = vendor_errors("heyreach", "HeyReach", __name__)

HeyReachError = ERRORS.base
HeyReachConnectionError = ERRORS.connection
HeyReachTimeoutError = ERRORS.timeout
HeyReachStatusError = ERRORS.status
HeyReachBadRequestError = ERRORS.bad_request
HeyReachAuthenticationError = ERRORS.authentication
HeyReachNotFoundError = ERRORS.not_found
HeyReachConflictError = ERRORS.conflict
HeyReachRateLimitError = ERRORS.rate_limit
HeyReachServerError = ERRORS.server
HeyReachResponseValidationError = ERRORS.validation
