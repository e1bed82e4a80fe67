"""Zapmail error tree: each class is both a ``ZapmailError`` and the generic ``clients.errors`` class."""

from __future__ import annotations

from clients.errors import vendor_errors

ERRORS = vendor_errors("zapmail", "Zapmail", __name__)

ZapmailError = ERRORS.base
ZapmailConnectionError = ERRORS.connection
ZapmailTimeoutError = ERRORS.timeout
ZapmailStatusError = ERRORS.status
ZapmailBadRequestError = ERRORS.bad_request
ZapmailAuthenticationError = ERRORS.authentication
ZapmailNotFoundError = ERRORS.not_found
ZapmailConflictError = ERRORS.conflict
ZapmailRateLimitError = ERRORS.rate_limit
ZapmailServerError = ERRORS.server
ZapmailResponseValidationError = ERRORS.validation
