"""Shared transport for the vendor clients: timeouts, the status -> exception map, redaction.

Each client owns one :class:`VendorHTTP`. It sends a request once (no retries), turns transport
failures and HTTP errors into the vendor's error tree, and never logs bodies or keys.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import TypeVar

import httpx
import pydantic
from pydantic import SecretStr

from clients.errors import ErrorClasses
from clients.errors import ResponseValidationError
from clients.errors import VendorConnectionError
from clients.errors import VendorStatusError

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
# httpx request extension marking a request that spends money: transports (tasks/limits.py)
# must never send it again on their own, whatever it was answered.
SPENDS_MONEY = "outbound.spends_money"
USER_AGENT = "outbound-infra/0.1 (+httpx)"
_MAX_MESSAGE = 300

T = TypeVar("T")


ErrorDescriber = Callable[[Any], tuple[str | None, str | None]]
"""Pull (message, request/error id) out of a vendor's error body."""


def make_timeout(timeout: httpx.Timeout | float | None) -> httpx.Timeout:
    """Return an explicit httpx timeout; ``None`` means the project default (20 s, connect 5 s)."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(
        float(timeout), connect=min(float(timeout), DEFAULT_TIMEOUT.connect or 5.0)
    )


def timeout_from_settings(settings: Any) -> httpx.Timeout:
    """Build the request timeout from ``vendor_timeout_s`` / ``vendor_connect_timeout_s``."""
    return httpx.Timeout(
        float(settings.vendor_timeout_s), connect=float(settings.vendor_connect_timeout_s)
    )


def require_key(value: SecretStr | str | None, setting: str) -> str:
    """Return a configured API key or raise the project's configuration error."""
    from core.settings import ConfigurationError

    if value is None:
        raise ConfigurationError(f"APP_{setting.upper()} is not set; the client cannot start")
    secret = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not secret:
        raise ConfigurationError(f"APP_{setting.upper()} is empty; the client cannot start")
    return secret


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or HTTP date) into seconds, if valid."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def status_error(
    response: httpx.Response,
    errors: ErrorClasses,
    *,
    message: str | None,
    request_id: str | None,
    spends_money: bool = False,
) -> VendorStatusError:
    """Map an HTTP error response to the vendor's exception class (the one mapping)."""
    status = response.status_code
    text = _clip(message or response.reason_phrase or "HTTP error")
    request_id = request_id or response.headers.get("x-request-id")
    # Any answer to a paid call may come after the charge (a 409, 402 or 429 included: vendors
    # do not promise to refuse before executing); retrying could pay twice. Only a connection
    # never made proves a refusal, and that is not an HTTP answer.
    unknown = spends_money
    retry = False if unknown else None
    if status == 429:
        header = response.headers.get("retry-after")
        retry_after = parse_retry_after(header)
        if retry_after is None and response.headers.get("retry-after-ms"):
            ms = parse_retry_after(response.headers["retry-after-ms"])
            retry_after = None if ms is None else ms / 1000.0
        return errors.rate_limit(
            text,
            status=status,
            request_id=request_id,
            retry_after=retry_after,
            retryable=retry,
            outcome_unknown=unknown,
        )
    cls: type[VendorStatusError]
    if status in (400, 422):
        cls = errors.bad_request
    elif status in (401, 403):
        cls = errors.authentication
    elif status == 404:
        cls = errors.not_found
    elif status == 409:
        cls = errors.conflict
    elif status >= 500:
        cls = errors.server
    else:
        cls = errors.status
    return cls(text, status=status, request_id=request_id, retryable=retry, outcome_unknown=unknown)


def _request_was_sent(exc: httpx.TransportError) -> bool:
    # Connect/pool failures happen before any byte reaches the vendor: nothing was executed.
    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def validation_error(
    errors: ErrorClasses, what: str, exc: pydantic.ValidationError
) -> ResponseValidationError:
    """Describe a pydantic failure by location and reason only, never by value."""
    details = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)[:5]
    )
    return errors.validation(f"unexpected {what} shape: {details}")


def parse(
    errors: ErrorClasses, adapter: type[T] | pydantic.TypeAdapter[T], data: Any, what: str
) -> T:
    """Validate ``data`` into a model (or TypeAdapter), raising the vendor's validation error."""
    try:
        if isinstance(adapter, pydantic.TypeAdapter):
            return adapter.validate_python(data)
        return adapter.model_validate(data)  # type: ignore[attr-defined, no-any-return]
    except pydantic.ValidationError as exc:
        raise validation_error(errors, what, exc) from None


class VendorHTTP:
    """One vendor's httpx client: sends once, classifies failures, logs without secrets."""

    def __init__(
        self,
        *,
        vendor: str,
        errors: ErrorClasses,
        base_url: str,
        headers: Mapping[str, str],
        secrets: Iterable[str],
        timeout: httpx.Timeout | float | None,
        transport: httpx.BaseTransport | None,
        describe_error: ErrorDescriber,
    ) -> None:
        self.vendor = vendor
        self.errors = errors
        self.base_url = base_url.rstrip("/")
        self.timeout = make_timeout(timeout)
        self._secrets = tuple(s for s in secrets if s)
        self._describe_error = describe_error
        self._log = logging.getLogger(f"clients.{vendor}")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **headers},
            timeout=self.timeout,
            transport=transport,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
        secrets: Iterable[str] = (),
        spends_money: bool = False,
    ) -> Any:
        """Send one request and return the decoded JSON body (``None`` for an empty body).

        Raises the vendor's connection, status or validation error. With ``spends_money``,
        a failure after the request may have reached the vendor is marked
        ``outcome_unknown=True`` and ``retryable=False``: every HTTP answer other than a 2xx
        JSON body, and every transport failure except a connection never made. The request
        then carries the ``SPENDS_MONEY`` extension so no transport sends it twice.
        """
        hidden = (*self._secrets, *(s for s in secrets if s))
        started = time.monotonic()
        try:
            response = self._client.request(
                method,
                path,
                params=_clean_params(params),
                json=json,
                headers=headers,
                timeout=make_timeout(timeout) if timeout is not None else self.timeout,
                extensions={SPENDS_MONEY: True} if spends_money else None,
            )
        except httpx.TransportError as exc:
            unknown = spends_money and _request_was_sent(exc)
            cls: type[VendorConnectionError] = (
                self.errors.timeout
                if isinstance(exc, httpx.TimeoutException)
                else self.errors.connection
            )
            self._log.info("%s %s %s failed: %s", self.vendor, method, path, type(exc).__name__)
            detail = redact(str(exc) or type(exc).__name__, hidden)
            raise cls(
                _clip(f"{method} {path}: {type(exc).__name__}: {detail}"),
                retryable=False if unknown else None,
                outcome_unknown=unknown,
            ) from None  # the httpx error's text is already in the message, redacted
        elapsed = time.monotonic() - started
        # Method, path and status only: bodies and query strings may hold credentials or PII.
        self._log.log(
            logging.INFO if response.is_error else logging.DEBUG,
            "%s %s %s -> %s in %.3fs",
            self.vendor,
            method,
            path,
            response.status_code,
            elapsed,
        )
        body = _decode(response)
        # A paid call answered 1xx/3xx is no proof of anything either: classify it as an error.
        if response.is_error or (spends_money and not response.is_success):
            try:
                message, request_id = self._describe_error(body)
            except Exception:  # a describer must never hide the real failure
                message, request_id = None, None
            if message is None and isinstance(body, str) and body.strip():
                message = body
            raise status_error(
                response,
                self.errors,
                message=redact(message, hidden) if message else None,
                request_id=request_id,
                spends_money=spends_money,
            )
        if body is _NOT_JSON:
            raise self.errors.validation(
                f"{method} {path}: response {response.status_code} is not JSON "
                f"({response.headers.get('content-type', 'no content type')})",
                status=response.status_code,
                retryable=False if spends_money else None,
                outcome_unknown=spends_money,
            )
        return body

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


class _NotJSON:
    def __repr__(self) -> str:
        return "<not JSON>"


_NOT_JSON: Any = _NotJSON()


def _decode(response: httpx.Response) -> Any:
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:
        if response.is_error:
            # Proxies answer errors with HTML or plain text; keep a short excerpt.
            return response.text[:_MAX_MESSAGE]
        return _NOT_JSON


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    cleaned: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        cleaned[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return cleaned


def first_present(data: Mapping[str, Any], *keys: str) -> Any:
    """Return the first non-empty value among ``keys`` (vendors rename fields between pages)."""
    for key in keys:
        value = data.get(key)
        if value not in (None, ""):
            return value
    return None


def text_of(value: Any) -> str | None:
    """Render a vendor's error message field (string, list or dict) as one line."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(filter(None, (text_of(v) for v in value))) or None
    if isinstance(value, dict):
        return text_of(first_present(value, "message", "msg", "error", "detail")) or None
    return str(value)
