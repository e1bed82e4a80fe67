"""Zapmail wallet, domain availability, the one paid call (``buy_domains``) and domain settings."""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence

from clients._http import parse
from clients.errors import ResponseValidationError
from clients.zapmail._base import DEFAULT_PAGE_SIZE
from clients.zapmail._base import ZapmailBase
from clients.zapmail._base import flat
from clients.zapmail._base import message_of
from clients.zapmail._base import norm_domain
from clients.zapmail._base import require_ids
from clients.zapmail._base import unwrap
from clients.zapmail.errors import ERRORS
from clients.zapmail.models import AvailabilityResult
from clients.zapmail.models import Domain
from clients.zapmail.models import DomainAvailability
from clients.zapmail.models import DomainPage
from clients.zapmail.models import PurchaseResult
from clients.zapmail.models import WalletBalance

MAX_AVAILABILITY_NAMES = 20


class ZapmailDomains(ZapmailBase):
    """Wallet, purchase and domain methods of :class:`~clients.zapmail.client.ZapmailClient`."""

    # Wallet, availability and purchase

    def get_wallet_balance(self) -> WalletBalance:
        """Return the wallet balance (a flat body)."""
        body = self._call("GET", "/v2/wallet/balance")
        return parse(ERRORS, WalletBalance, flat(body), "wallet balance")

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
        return parse(ERRORS, AvailabilityResult, unwrap(body), "availability").domains

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
            return parse(ERRORS, PurchaseResult, flat(body), "domain purchase")
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
        return parse(ERRORS, DomainPage, unwrap(body), "domain list")

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
        wanted = norm_domain(name)
        for domain in self.iter_domains(contains=wanted):
            if norm_domain(domain.domain) == wanted:
                return domain
        return None

    def set_dmarc(self, domain_ids: Sequence[str | int], email: str) -> str | None:
        """Set the DMARC aggregate-report address on the given domains."""
        body = self._call(
            "POST",
            "/v2/domains/dmarc",
            # Zapmail expects every selector key, empty when unused.
            json={
                "domainIds": require_ids(domain_ids, "domain_ids"),
                "email": email,
                "contains": "",
                "status": [],
                "tagIds": [],
            },
        )
        return message_of(body)

    def set_auto_renew(self, domain_ids: Sequence[str | int], enabled: bool) -> str | None:
        """Turn auto-renew on or off for the given domains."""
        body = self._call(
            "POST",
            "/v2/domains/update-auto-renew",
            json={"domainIds": require_ids(domain_ids, "domain_ids"), "autoRenew": enabled},
        )
        return message_of(body)
