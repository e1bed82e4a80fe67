"""The lifecycle every vendor client shares: construction, ``from_settings``, close, ``with``.

A subclass names its vendor, error tree, default URL, key header and the fields its error
bodies use, and may override ``_settings_options`` (more constructor options from settings).
Requests go through ``self._http``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar
from typing import Self
from typing import TypedDict
from typing import Unpack

import httpx

from clients._http import VendorHTTP
from clients._http import first_present
from clients._http import require_key
from clients._http import text_of
from clients._http import timeout_from_settings
from clients.errors import ErrorClasses

if TYPE_CHECKING:
    from core.settings import Settings


class HTTPOptions(TypedDict, total=False):
    """The transport options every vendor client's constructor accepts."""

    base_url: str | None
    timeout: httpx.Timeout | float | None
    transport: httpx.BaseTransport | None


class VendorClient:
    """Owns one :class:`VendorHTTP` (or shares its parent's); never logs or shows the key."""

    vendor: ClassVar[str]
    """Lower-case vendor name: log name, error tag and ``<vendor>_*`` settings prefix."""
    errors: ClassVar[ErrorClasses]
    default_base_url: ClassVar[str]
    key_header: ClassVar[str]
    """The header that carries the API key."""
    error_message_keys: ClassVar[tuple[str, ...]]
    """Fields of an error body that may hold the message, most likely first."""
    error_id_keys: ClassVar[tuple[str, ...]]
    """Fields of an error body that may hold a request or error id, most likely first."""
    _repr_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = VendorHTTP(
            vendor=self.vendor,
            errors=self.errors,
            base_url=self.default_base_url if base_url is None else base_url,
            headers={self.key_header: api_key},
            secrets=[api_key],
            timeout=timeout,
            transport=transport,
            describe_error=self._describe_error,
        )
        self._owns_http = True

    @classmethod
    def _describe_error(cls, body: Any) -> tuple[str | None, str | None]:
        # (message, request id) from an error body; vendors disagree on the field names.
        if not isinstance(body, dict):
            return None, None
        message = text_of(first_present(body, *cls.error_message_keys))
        request_id = first_present(body, *cls.error_id_keys)
        return message, None if request_id is None else str(request_id)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """Build a client from ``core.settings.Settings``; keyword overrides win."""
        kwargs: dict[str, Any] = {
            "base_url": getattr(settings, f"{cls.vendor}_base_url"),
            "timeout": timeout_from_settings(settings),
            **cls._settings_options(settings),
        }
        kwargs.update(overrides)
        setting = f"{cls.vendor}_api_key"
        api_key = kwargs.pop("api_key", None) or require_key(getattr(settings, setting), setting)
        return cls(api_key, **kwargs)

    @classmethod
    def _settings_options(cls, settings: Settings) -> dict[str, Any]:  # noqa: ARG003
        # Constructor options beyond URL and timeout that a vendor reads from settings.
        return {}

    def close(self) -> None:
        """Close the connection pool (a no-op on a client that shares its parent's pool)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        fields = [f"base_url={self._http.base_url!r}"]
        fields += [f"{name}={getattr(self, name)!r}" for name in self._repr_fields]
        return f"{type(self).__name__}({', '.join(fields)})"


class WorkspaceClient(VendorClient):
    """A vendor client that also remembers one workspace id (what it scopes is the vendor's)."""

    _repr_fields = ("workspace_id",)

    def __init__(
        self, api_key: str, *, workspace_id: str | None = None, **options: Unpack[HTTPOptions]
    ) -> None:
        super().__init__(api_key, **options)
        self.workspace_id = workspace_id
