"""Pydantic shapes for the Zapmail v2 API (read models tolerant, write models strict).

Zapmail speaks camelCase; fields here are snake_case with camelCase aliases. Prices are numeric
strings ("12.99", "0.00" for taken names, "NaN" for unsupported TLDs) and parse to
``Decimal | None``; counts may arrive as strings.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import SecretStr
from pydantic import field_validator
from pydantic.alias_generators import to_camel

from clients._models import Count
from clients._models import Price
from clients._models import VendorModel


class ZapmailModel(VendorModel):
    """Base for Zapmail read models: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel)


class _WriteModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )

    def to_wire(self) -> dict[str, Any]:
        """Return the camelCase JSON body fragment Zapmail expects."""
        return self.model_dump(mode="json", by_alias=True)


class Page(ZapmailModel):
    """Pagination fields of a v2 list ``data`` object.

    Each page's rows field is required: a 2xx without it is an answer we cannot read, and a
    listing that proves absence (nothing bought, no workspace yet) must never read it as empty.
    """

    current_page: Count = None
    next_page: Count = None
    """Returned even on the last page; never use it to decide whether to stop."""
    total_pages: Count = None
    total_searched_count: Count = None


class Workspace(ZapmailModel):
    """A Zapmail workspace; ``id`` is the value sent as ``x-workspace-key``."""

    id: str
    name: str | None = None
    user_id: str | None = None
    created_at: str | None = None


class WorkspacePage(Page):
    """``GET /v2/workspaces``: the active workspace plus one page of the *other* workspaces."""

    current_workspace: Workspace | None = None
    workspaces: list[Workspace]
    total_workspaces_count: Count = None


class BillingDetails(_WriteModel):
    """Billing details Zapmail requires before any purchase."""

    first_name: str
    last_name: str
    company: str = ""
    address_line_one: str
    # Zapmail wants lines two and three present even when empty.
    address_line_two: str = ""
    address_line_three: str = ""
    city: str
    state: str = ""
    country: str
    postal_code: str
    phone_cc: str = ""
    phone: str = ""
    language_preference: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """Return the camelCase body, leaving out an unset language preference."""
        body = super().to_wire()
        if body.get("languagePreference") is None:
            body.pop("languagePreference", None)
        return body


class WalletBalance(ZapmailModel):
    """``GET /v2/wallet/balance`` (a flat body, no envelope)."""

    wallet_balance: Price = None
    """USD available in the wallet; ``None`` if the vendor sent something unreadable."""
    auto_recharge_enabled: bool | None = None
    auto_recharge_details: Any = None


class DomainAvailability(ZapmailModel):
    """One row of ``POST /v2/domains/available-bulk``."""

    domain_name: str
    status: str
    """``AVAILABLE`` or ``UNAVAILABLE``."""
    is_premium_domain: bool | None = None
    domain_price: Price = None
    """First-year price in USD; ``0.00`` for taken names, ``None`` when Zapmail sent "NaN"."""
    renew_price: Price = None
    original_price: Price = None

    @property
    def available(self) -> bool:
        """Whether Zapmail reports the name as purchasable."""
        return self.status.upper() == "AVAILABLE"


class AvailabilityResult(ZapmailModel):
    """``data`` of ``available-bulk``."""

    domains: list[DomainAvailability]
    total: Count = None
    available: Count = None
    unavailable: Count = None


class PurchaseResult(ZapmailModel):
    """Flat answer of ``POST /v2/domains/buy``: a message and an invoice link, no domain ids."""

    message: str | None = None
    invoice_link: str | None = None
    payment_link: str | None = None

    @property
    def short(self) -> bool:
        """Whether Zapmail says the wallet did not cover it (an invoice, nothing registers)."""
        # zapmail.md 7.4: a short wallet is a 2xx whose message names the invoice for the
        # remaining amount (or the insufficient balance); a payment link means nothing was paid.
        text = (self.message or "").lower()
        return (
            "insufficient" in text
            or "remaining amount" in text
            or (self.payment_link is not None and self.invoice_link is None)
        )


class Mailbox(ZapmailModel):
    """A mailbox row from ``/v2/mailboxes/list`` (credentials are kept as ``SecretStr``)."""

    id: str
    username: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    status: str | None = None
    """``IN_PROGRESS``, ``ACTIVE``, ``FAILED`` (older payloads: ``INACTIVE``)."""
    domain: str | None = None
    domain_id: str | None = None
    assigned_on: str | None = None
    expire_on: str | None = None
    is_warmed_up: bool | None = None
    service_provider: str | None = None
    profile_picture: str | None = None
    app_password: SecretStr | None = None
    password: SecretStr | None = None
    secret: SecretStr | None = None

    @property
    def address(self) -> str | None:
        """The full email address, built from username and domain when not sent."""
        if self.email:
            return self.email
        if self.username and self.domain:
            return f"{self.username}@{self.domain}"
        return None


class Domain(ZapmailModel):
    """A domain row from ``GET /v2/domains`` (``domain`` is the name)."""

    id: str
    domain: str
    status: str | None = None
    """``PENDING`` right after purchase, ``ACTIVE`` once usable."""
    workspace_id: str | None = None
    auto_renew: bool | None = None
    dmarc_email: str | None = None
    forward_to: str | None = None
    """Where the domain's web traffic is forwarded (``None``: not forwarded)."""
    assigned_mailboxes_count: Count = None
    service_provider: str | None = None
    registered_on: str | None = None
    expire_on: str | None = None
    created_at: str | None = None
    mailboxes: list[Mailbox] = Field(default_factory=list)

    @property
    def name(self) -> str:
        """The domain name (Zapmail calls the field ``domain``)."""
        return self.domain


class DomainPage(Page):
    """``data`` of ``GET /v2/domains``."""

    domains: list[Domain]


class MailboxDomain(ZapmailModel):
    """A domain group of ``/v2/mailboxes/list`` (that endpoint paginates by domain)."""

    id: str
    domain: str | None = None
    status: str | None = None
    mailboxes: list[Mailbox] = Field(default_factory=list)


class MailboxPage(Page):
    """``data`` of ``GET /v2/mailboxes/list``: quota counters plus a page of domains."""

    purchased_mailboxes: Count = None
    total_assigned_mailboxes: Count = None
    total_active_mailboxes: Count = None
    available_mailboxes: Count = None
    """Purchased slots still free for new mailboxes."""
    scheduled_mailboxes: Count = None
    domains: list[MailboxDomain]


class MailboxSpec(_WriteModel):
    """One mailbox to create on a domain (``POST /v2/mailboxes``)."""

    first_name: str
    last_name: str
    mailbox_username: str
    domain_name: str

    @field_validator("mailbox_username")
    @classmethod
    def _check_username(cls, value: str) -> str:
        if not value or value[0] in "._-" or value[-1] in "._-" or "@" in value:
            raise ValueError("mailbox username must not start or end with '.', '_' or '-'")
        return value


class ThirdPartyAccount(ZapmailModel):
    """A sequencer login registered for export (``GET /v2/exports/accounts/third-party``)."""

    id: str
    app_name: str | None = Field(None, validation_alias=AliasChoices("appName", "app"))
    email: str | None = None
    error: Any = None


class ExportStatus(ZapmailModel):
    """``GET /v2/exports/status``; the status strings vary in case."""

    export_id: str | None = Field(
        None, validation_alias=AliasChoices("export_id", "exportId", "id")
    )
    status: str | None = None
    failure_reason: str | None = Field(
        None, validation_alias=AliasChoices("failure_reason", "failureReason")
    )

    @property
    def is_completed(self) -> bool:
        """Whether the export finished successfully."""
        return (self.status or "").lower() in {"completed", "complete", "success", "succeeded"}

    @property
    def is_failed(self) -> bool:
        """Whether the export failed for good."""
        return (self.status or "").lower() in {"failed", "failure", "error"}


class MailboxUpdate(_WriteModel):
    """One entry of ``PUT /v2/mailboxes`` (zapmail.md §7.6, M): new names, the same username.

    ``username`` is required by the API; sending a different one changes the address and resets
    its warm-up, so callers pass the mailbox's current username. ``profile_picture`` (a URL) is
    left out of the body when ``None``: the mailbox keeps its picture.
    """

    mailbox_id: str
    first_name: str
    last_name: str
    username: str
    profile_picture: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """Return the camelCase entry, without ``profilePicture`` when there is none to set."""
        body = super().to_wire()
        if body.get("profilePicture") is None:
            body.pop("profilePicture", None)
        return body
