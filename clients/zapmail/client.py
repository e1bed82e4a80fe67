"""Typed client for the Zapmail v2 REST API (workspaces, wallet, domains, mailboxes, exports).

Classifies errors and never retries. Workspace scoping: ``client.for_workspace(id)`` returns a
derived client that sends ``x-workspace-key: <id>`` on every call and shares the parent's
connection pool (close the parent, not the child). Choices made where the vendor notes are
L/M or silent are listed in ``clients/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import Self
from typing import TypeVar

import httpx
from pydantic import SecretStr
from pydantic import TypeAdapter

from clients._http import VendorHTTP
from clients._http import first_present
from clients._http import parse
from clients._http import require_key
from clients._http import text_of
from clients._http import timeout_from_settings
from clients.errors import ResponseValidationError
from clients.zapmail.errors import ERRORS
from clients.zapmail.models import AvailabilityResult
from clients.zapmail.models import BillingDetails
from clients.zapmail.models import Domain
from clients.zapmail.models import DomainAvailability
from clients.zapmail.models import DomainPage
from clients.zapmail.models import ExportStatus
from clients.zapmail.models import Mailbox
from clients.zapmail.models import MailboxPage
from clients.zapmail.models import MailboxSpec
from clients.zapmail.models import Page
from clients.zapmail.models import PurchaseResult
from clients.zapmail.models import ThirdPartyAccount
from clients.zapmail.models import WalletBalance
from clients.zapmail.models import Workspace
from clients.zapmail.models import WorkspacePage

if TYPE_CHECKING:
    from core.settings import Settings

ZAPMAIL_BASE_URL = "https://api.zapmail.ai/api"
MAX_AVAILABILITY_NAMES = 20
DEFAULT_PAGE_SIZE = 100
# A runaway guard: Zapmail's nextPage never goes null, so a bug in the stop rule would loop.
_MAX_PAGES = 10_000

P = TypeVar("P", bound=Page)
_ACCOUNTS = TypeAdapter(list[ThirdPartyAccount])


def _describe_error(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        return None, None
    message = text_of(first_present(body, "message", "error", "errors"))
    error_id = first_present(body, "errorId", "error_id", "requestId")
    return message, None if error_id is None else str(error_id)


def _unwrap(body: Any) -> Any:
    # Most v2 bodies are {"status", "message", "data"}; a few are flat. Read both.
    if isinstance(body, dict) and "data" in body:
        return body["data"]
    return body


def _flat(body: Any) -> Any:
    # Documented flat bodies (wallet, buy); tolerate an envelope by merging its data up.
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        return {**{k: v for k, v in body.items() if k != "data"}, **body["data"]}
    return body


def _message(body: Any) -> str | None:
    return body.get("message") if isinstance(body, dict) else None


def _ids(values: Sequence[str | int], what: str) -> list[str]:
    # An empty id list next to empty filters could select every domain in the workspace.
    ids = [str(v) for v in values if str(v)]
    if not ids:
        raise ValueError(f"{what} must not be empty")
    return ids


def _norm_domain(name: str) -> str:
    return name.strip().rstrip(".").lower()


class ZapmailClient:
    """Typed wrapper over the Zapmail v2 API. Classifies errors; never retries."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = ZAPMAIL_BASE_URL,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.BaseTransport | None = None,
        workspace_id: str | None = None,
    ) -> None:
        self._http = VendorHTTP(
            vendor="zapmail",
            errors=ERRORS,
            base_url=base_url,
            headers={"x-auth-zapmail": api_key},
            secrets=[api_key],
            timeout=timeout,
            transport=transport,
            describe_error=_describe_error,
        )
        self._owns_http = True
        self.workspace_id = workspace_id

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """Build a client from ``core.settings.Settings``; keyword overrides win."""
        kwargs: dict[str, Any] = {
            "base_url": settings.zapmail_base_url,
            "timeout": timeout_from_settings(settings),
        }
        kwargs.update(overrides)
        api_key = kwargs.pop("api_key", None) or require_key(
            settings.zapmail_api_key, "zapmail_api_key"
        )
        return cls(api_key, **kwargs)

    def for_workspace(self, workspace_id: str | None) -> ZapmailClient:
        """Return a client scoped to a workspace (``None`` = primary), sharing this pool."""
        child = object.__new__(type(self))
        child._http = self._http
        child._owns_http = False
        child.workspace_id = None if workspace_id is None else str(workspace_id)
        return child

    def close(self) -> None:
        """Close the connection pool (a no-op on clients made by ``for_workspace``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ZapmailClient(base_url={self._http.base_url!r}, workspace_id={self.workspace_id!r})"
        )

    # Workspaces and billing

    def list_workspaces(
        self, *, page: int = 1, limit: int = DEFAULT_PAGE_SIZE, contains: str | None = None
    ) -> WorkspacePage:
        """Return one page: the active workspace plus the *other* workspaces."""
        body = self._call(
            "GET", "/v2/workspaces", params={"page": page, "limit": limit, "contains": contains}
        )
        return parse(ERRORS, WorkspacePage, _unwrap(body), "workspace list")

    def iter_workspaces(
        self, *, contains: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[Workspace]:
        """Yield every workspace once, the active one included."""
        seen: set[str] = set()
        for page in self._pages(
            lambda n: self.list_workspaces(page=n, limit=page_size, contains=contains),
            lambda p: p.workspaces,
        ):
            candidates = [page.current_workspace, *page.workspaces]
            for workspace in candidates:
                if workspace is not None and workspace.id not in seen:
                    seen.add(workspace.id)
                    yield workspace

    def find_workspace_by_name(self, name: str) -> Workspace | None:
        """Return the workspace whose name equals ``name`` exactly, or ``None``."""
        for workspace in self.iter_workspaces(contains=name):
            if workspace.name == name:
                return workspace
        return None

    def create_workspace(
        self, name: str, billing_details: BillingDetails | Mapping[str, Any]
    ) -> Workspace:
        """Create a workspace with billing details; its ``id`` is the ``x-workspace-key``."""
        details = BillingDetails.model_validate(billing_details)
        body = self._call(
            "POST", "/v2/workspaces", json={"name": name, "billingDetails": details.to_wire()}
        )
        return parse(ERRORS, Workspace, _unwrap(body), "created workspace")

    def upsert_billing_details(
        self,
        billing_details: BillingDetails | Mapping[str, Any],
        *,
        workspace_id: str | None = None,
    ) -> str | None:
        """Create or replace a workspace's billing details (``POST /v2/billing`` upserts)."""
        details = BillingDetails.model_validate(billing_details).to_wire()
        target = workspace_id or self.workspace_id
        if target is not None:
            details["workspaceId"] = target
        return _message(self._call("POST", "/v2/billing", json=details))

    # Wallet, availability and purchase

    def get_wallet_balance(self) -> WalletBalance:
        """Return the wallet balance (a flat body)."""
        body = self._call("GET", "/v2/wallet/balance")
        return parse(ERRORS, WalletBalance, _flat(body), "wallet balance")

    def check_availability(self, names: Sequence[str]) -> list[DomainAvailability]:
        """Check up to 20 exact names with ``available-bulk`` (one rate-limited call).

        Raises:
            ValueError: more than 20 names (checked before any request).
        """
        names = [n.strip() for n in names]
        if len(names) > MAX_AVAILABILITY_NAMES:
            raise ValueError(
                f"available-bulk takes at most {MAX_AVAILABILITY_NAMES} names, got {len(names)}"
            )
        if not names:
            return []
        body = self._call("POST", "/v2/domains/available-bulk", json={"domainNames": names})
        return parse(ERRORS, AvailabilityResult, _unwrap(body), "availability").domains

    def buy_domains(self, names: Sequence[str], *, years: int = 1) -> PurchaseResult:
        """Buy domains from the wallet in ONE call. Spends money; never retry blindly.

        Zapmail has no idempotency key. If this raises with ``exc.outcome_unknown`` (any HTTP
        answer but a readable 2xx, 4xx and 429 included, a timeout after the request was sent,
        a dropped connection), the domains MAY have been bought: such errors are marked
        ``retryable=False``; reconcile by listing the workspace. A short wallet is not an
        error: the result then carries an unpaid invoice link (see :meth:`PurchaseResult.short`).
        """
        names = [n.strip() for n in names]
        if not names or not all(names):
            raise ValueError("buy_domains needs at least one non-empty domain name")
        if not 1 <= years <= 10:
            raise ValueError("years must be between 1 and 10")
        body = self._call(
            "POST",
            "/v2/domains/buy",
            json={
                "domains": [{"domainName": n, "years": years} for n in names],
                "useWallet": True,
                "enableDnsShield": False,
            },
            spends_money=True,
        )
        try:
            return parse(ERRORS, PurchaseResult, _flat(body), "domain purchase")
        except ResponseValidationError as exc:
            # A 2xx we cannot read says nothing about the charge: unknown, never retried.
            exc.outcome_unknown, exc.retryable = True, False
            raise

    # Domains

    def list_domains_page(
        self, *, page: int = 1, limit: int = DEFAULT_PAGE_SIZE, contains: str | None = None
    ) -> DomainPage:
        """Return one page of ``GET /v2/domains``."""
        body = self._call(
            "GET", "/v2/domains", params={"page": page, "limit": limit, "contains": contains}
        )
        return parse(ERRORS, DomainPage, _unwrap(body), "domain list")

    def iter_domains(
        self, *, contains: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[Domain]:
        """Yield every domain of the workspace; ``contains`` is Zapmail's substring filter."""
        for page in self._pages(
            lambda n: self.list_domains_page(page=n, limit=page_size, contains=contains),
            lambda p: p.domains,
        ):
            yield from page.domains

    def list_domains(self, *, contains: str | None = None) -> list[Domain]:
        """Return every domain of the workspace (all pages)."""
        return list(self.iter_domains(contains=contains))

    def find_domain(self, name: str) -> Domain | None:
        """Return the domain named exactly ``name`` (``contains`` alone also matches affixes)."""
        wanted = _norm_domain(name)
        for domain in self.iter_domains(contains=wanted):
            if _norm_domain(domain.domain) == wanted:
                return domain
        return None

    def set_dmarc(self, domain_ids: Sequence[str | int], email: str) -> str | None:
        """Set the DMARC aggregate-report address on the given domains."""
        body = self._call(
            "POST",
            "/v2/domains/dmarc",
            # Zapmail expects every selector key, empty when unused.
            json={
                "domainIds": _ids(domain_ids, "domain_ids"),
                "email": email,
                "contains": "",
                "status": [],
                "tagIds": [],
            },
        )
        return _message(body)

    def set_auto_renew(self, domain_ids: Sequence[str | int], enabled: bool) -> str | None:
        """Turn auto-renew on or off for the given domains."""
        body = self._call(
            "POST",
            "/v2/domains/update-auto-renew",
            json={"domainIds": _ids(domain_ids, "domain_ids"), "autoRenew": enabled},
        )
        return _message(body)

    # Mailboxes

    def create_mailboxes(
        self, mailboxes: Mapping[str | int, Sequence[MailboxSpec | Mapping[str, Any]]]
    ) -> str | None:
        """Queue mailbox creation; the body is keyed by domain id. Returns Zapmail's message.

        Zapmail answers without mailbox ids; list mailboxes afterwards to see them.
        """
        payload: dict[str, list[dict[str, Any]]] = {}
        for domain_id, specs in mailboxes.items():
            rows = [MailboxSpec.model_validate(spec).to_wire() for spec in specs]
            if rows:
                payload[str(domain_id)] = rows
        if not payload:
            raise ValueError("create_mailboxes needs at least one mailbox")
        return _message(self._call("POST", "/v2/mailboxes", json=payload))

    def list_mailboxes_page(
        self, *, page: int = 1, limit: int = DEFAULT_PAGE_SIZE, contains: str | None = None
    ) -> MailboxPage:
        """Return one page of ``/v2/mailboxes/list`` (``limit`` counts domains, not mailboxes)."""
        body = self._call(
            "GET",
            "/v2/mailboxes/list",
            params={"page": page, "limit": limit, "contains": contains},
        )
        return parse(ERRORS, MailboxPage, _unwrap(body), "mailbox list")

    def get_mailbox_quota(self) -> MailboxPage:
        """Return the slot counters (purchased, assigned, available) from a one-row page."""
        return self.list_mailboxes_page(page=1, limit=1)

    def iter_mailboxes(
        self,
        *,
        contains: str | None = None,
        domain: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Mailbox]:
        """Yield mailbox rows with ``domain``/``domain_id`` filled in.

        ``domain`` keeps only that exact domain (``contains`` is a substring filter).
        """
        wanted = None if domain is None else _norm_domain(domain)
        for page in self._pages(
            lambda n: self.list_mailboxes_page(
                page=n, limit=page_size, contains=contains or wanted
            ),
            lambda p: p.domains,
        ):
            for group in page.domains:
                if wanted is not None and _norm_domain(group.domain or "") != wanted:
                    continue
                for mailbox in group.mailboxes:
                    if mailbox.domain is None:
                        mailbox.domain = group.domain
                    if mailbox.domain_id is None:
                        mailbox.domain_id = group.id
                    yield mailbox

    def retry_failed_mailboxes(self, domain_ids: Sequence[str | int]) -> str | None:
        """Ask Zapmail to retry FAILED mailboxes on the given domains."""
        body = self._call(
            "PUT",
            "/v2/mailboxes/retry-failed",
            json={"domainIds": _ids(domain_ids, "domain_ids")},
        )
        return _message(body)

    def schedule_mailbox_removal(self, mailbox_ids: Sequence[str | int]) -> str | None:
        """Schedule mailboxes for removal at the next renewal (the only removal API)."""
        body = self._call(
            "PUT",
            "/v2/mailboxes/scheduled-removal",
            json={"mailboxIds": _ids(mailbox_ids, "mailbox_ids")},
        )
        return _message(body)

    # Export to sequencers

    def add_third_party_account(
        self, email: str, password: str | SecretStr, *, app: str = "PIPL"
    ) -> str | None:
        """Register a sequencer login (PlusVibe = ``PIPL``) in the workspace; returns no id."""
        secret = password.get_secret_value() if isinstance(password, SecretStr) else password
        body = self._call(
            "POST",
            "/v2/exports/accounts/third-party",
            json={"email": email, "password": secret, "app": app},
            secrets=[secret],
        )
        return _message(body)

    def list_third_party_accounts(self, app: str = "PIPL") -> list[ThirdPartyAccount]:
        """Return the sequencer logins registered for ``app`` (Zapmail requires ``app``)."""
        body = self._call("GET", "/v2/exports/accounts/third-party", params={"app": app})
        data = _unwrap(body)
        if isinstance(data, dict):
            data = first_present(data, "accounts", "data", "items") or []
        return parse(ERRORS, _ACCOUNTS, data, "third-party account list")

    def find_third_party_account(
        self, email: str, *, app: str = "PIPL"
    ) -> ThirdPartyAccount | None:
        """Return the registered login for ``email`` (case-insensitive), or ``None``."""
        wanted = email.strip().lower()
        for account in self.list_third_party_accounts(app):
            if (account.email or "").strip().lower() == wanted:
                return account
        return None

    def export_mailboxes(
        self,
        mailbox_ids: Sequence[str | int],
        *,
        third_party_account_id: str,
        app: str = "PIPL",
    ) -> str | None:
        """Start exporting ACTIVE mailboxes to a sequencer account; returns the export id.

        ``None`` means Zapmail answered without an id (older behaviour); follow the result on
        the sequencer side instead.
        """
        body = self._call(
            "POST",
            "/v2/exports/mailboxes",
            # Every selector key is sent, empty when unused; Zapmail rejects bodies missing one.
            json={
                "apps": [app],
                "ids": _ids(mailbox_ids, "mailbox_ids"),
                "excludeIds": [],
                "tagIds": [],
                "status": "ACTIVE",
                "contains": "",
                "thirdPartyAccountId": str(third_party_account_id),
            },
        )
        return _export_id(body)

    def get_export_status(self, export_id: str) -> ExportStatus:
        """Return the state of an export (``completed``/``failed``, case varies)."""
        body = self._call("GET", "/v2/exports/status", params={"exportId": export_id})
        data = _unwrap(body)
        if data is None:
            data = {}
        status = parse(ERRORS, ExportStatus, data, "export status")
        if status.export_id is None:
            status.export_id = export_id
        return status

    # Plumbing

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"x-workspace-key": self.workspace_id} if self.workspace_id else None
        return self._http.request(method, path, headers=headers, **kwargs)

    @staticmethod
    def _pages(fetch: Callable[[int], P], items: Callable[[P], Sequence[Any]]) -> Iterator[P]:
        # nextPage is never null, so stop on totalPages or on an empty page.
        number = 1
        while number <= _MAX_PAGES:
            page = fetch(number)
            yield page
            if not items(page):
                return
            if page.total_pages is not None and number >= page.total_pages:
                return
            number += 1


def _export_id(body: Any) -> str | None:
    candidates: list[Any] = []
    if isinstance(body, dict):
        candidates.append(first_present(body, "exportId", "export_id"))
        data = body.get("data")
        if isinstance(data, dict):
            candidates.append(first_present(data, "exportId", "export_id", "id"))
        elif isinstance(data, str | int):
            candidates.append(data)
    for candidate in candidates:
        if candidate not in (None, ""):
            return str(candidate)
    return None
