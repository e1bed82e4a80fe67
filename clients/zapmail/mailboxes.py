"""Zapmail mailboxes: queue their creation, list them per domain, update names, retry, removal."""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from clients._http import parse
from clients.zapmail._base import DEFAULT_PAGE_SIZE
from clients.zapmail._base import ZapmailBase
from clients.zapmail._base import message_of
from clients.zapmail._base import norm_domain
from clients.zapmail._base import require_ids
from clients.zapmail._base import unwrap
from clients.zapmail.errors import ERRORS
from clients.zapmail.models import Mailbox
from clients.zapmail.models import MailboxPage
from clients.zapmail.models import MailboxSpec
from clients.zapmail.models import MailboxUpdate


class ZapmailMailboxes(ZapmailBase):
    """Mailbox methods of :class:`~clients.zapmail.client.ZapmailClient`."""

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
        return message_of(self._call("POST", "/v2/mailboxes", json=payload))

    def list_mailboxes_page(
        self, *, page: int = 1, limit: int = DEFAULT_PAGE_SIZE, contains: str | None = None
    ) -> MailboxPage:
        """Return one page of ``/v2/mailboxes/list`` (``limit`` counts domains, not mailboxes)."""
        body = self._call(
            "GET",
            "/v2/mailboxes/list",
            params={"page": page, "limit": limit, "contains": contains},
        )
        return parse(ERRORS, MailboxPage, unwrap(body), "mailbox list")

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
        wanted = None if domain is None else norm_domain(domain)
        for page in self._pages(
            lambda n: self.list_mailboxes_page(
                page=n, limit=page_size, contains=contains or wanted
            ),
            lambda p: p.domains,
        ):
            for group in page.domains:
                if wanted is not None and norm_domain(group.domain or "") != wanted:
                    continue
                for mailbox in group.mailboxes:
                    if mailbox.domain is None:
                        mailbox.domain = group.domain
                    if mailbox.domain_id is None:
                        mailbox.domain_id = group.id
                    yield mailbox

    def update_mailboxes(self, updates: Sequence[MailboxUpdate | Mapping[str, Any]]) -> str | None:
        """Set sender names (and picture) on mailboxes with one ``PUT /v2/mailboxes``.

        Each entry must carry the mailbox's current username: a different one is a new address.
        """
        rows = [MailboxUpdate.model_validate(update).to_wire() for update in updates]
        if not rows:
            raise ValueError("update_mailboxes needs at least one mailbox")
        return message_of(self._call("PUT", "/v2/mailboxes", json={"mailboxData": rows}))

    def retry_failed_mailboxes(self, domain_ids: Sequence[str | int]) -> str | None:
        """Ask Zapmail to retry FAILED mailboxes on the given domains."""
        body = self._call(
            "PUT",
            "/v2/mailboxes/retry-failed",
            json={"domainIds": require_ids(domain_ids, "domain_ids")},
        )
        return message_of(body)

    def schedule_mailbox_removal(self, mailbox_ids: Sequence[str | int]) -> str | None:
        """Schedule mailboxes for removal at the next renewal (the only removal API)."""
        body = self._call(
            "PUT",
            "/v2/mailboxes/scheduled-removal",
            json={"mailboxIds": require_ids(mailbox_ids, "mailbox_ids")},
        )
        return message_of(body)
