"""Zapmail domain settings the product checks and changes: forwarding, DNS records, health score.

Paths and bodies follow ``docs/vendors/zapmail.md`` §7.5 (M): ``POST /v2/domains/forwarding``,
``POST /v2/domains/remove-forwarding``, ``GET /v2/dns/?id=`` and
``GET /v2/domains/health-score?domainId=``. Reads are tolerant of the field names the notes
give as alternatives (``records`` / ``domainDnsRecords``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import AliasChoices
from pydantic import Field
from pydantic import field_validator

from clients._http import parse
from clients._models import Count
from clients.zapmail._base import ZapmailBase
from clients.zapmail._base import message_of
from clients.zapmail._base import require_ids
from clients.zapmail._base import unwrap
from clients.zapmail.errors import ERRORS
from clients.zapmail.models import ZapmailModel


class DnsRecord(ZapmailModel):
    """One DNS record of a domain (``host`` as Zapmail writes it: ``@``, a label or a FQDN)."""

    id: str | None = None
    record_type: str = Field(validation_alias=AliasChoices("recordType", "type"))
    host: str = Field("@", validation_alias=AliasChoices("host", "name"))
    value: str = Field(validation_alias=AliasChoices("value", "data", "content"))
    priority: Count = None

    @field_validator("record_type")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()


class DnsRecords(ZapmailModel):
    """``data`` of ``GET /v2/dns/?id=``: the records in force and those Zapmail disabled."""

    records: list[DnsRecord] = Field(validation_alias=AliasChoices("records", "domainDnsRecords"))
    disabled_records: list[DnsRecord] = Field(default_factory=list)


class HealthScore(ZapmailModel):
    """``data`` of ``GET /v2/domains/health-score``: 0-100, at most 30 is critical."""

    domain_id: str | None = None
    domain: str | None = None
    score: Count = Field(None, validation_alias=AliasChoices("score", "healthScore"))
    """``None`` while the domain is not live (no score yet)."""
    status: str | None = None


class ZapmailDns(ZapmailBase):
    """Forwarding, DNS and health methods of :class:`~clients.zapmail.client.ZapmailClient`."""

    def set_forwarding(self, domain_ids: Sequence[str | int], forward_to: str) -> str | None:
        """Forward the given domains' web traffic to ``forward_to`` (one call for all of them)."""
        if not forward_to.strip():
            raise ValueError("forward_to must not be empty")
        body = self._call(
            "POST",
            "/v2/domains/forwarding",
            # Every selector key, empty when unused, as for DMARC.
            json={
                "domainIds": require_ids(domain_ids, "domain_ids"),
                "forwardTo": forward_to,
                "contains": "",
                "tagIds": [],
            },
        )
        return message_of(body)

    def remove_forwarding(self, domain_id: str | int) -> str | None:
        """Stop forwarding one domain (the endpoint takes a single ``domainId``)."""
        (one,) = require_ids([domain_id], "domain_id")
        return message_of(
            self._call("POST", "/v2/domains/remove-forwarding", json={"domainId": one})
        )

    def get_dns_records(self, domain_id: str | int) -> DnsRecords:
        """Return the domain's DNS records."""
        (one,) = require_ids([domain_id], "domain_id")
        body = self._call("GET", "/v2/dns/", params={"id": one})
        return parse(ERRORS, DnsRecords, unwrap(body), "dns records")

    def get_health_score(self, domain_id: str | int) -> HealthScore:
        """Return the domain's health score (0-100; ``None`` before the domain is live)."""
        (one,) = require_ids([domain_id], "domain_id")
        body = self._call("GET", "/v2/domains/health-score", params={"domainId": one})
        return parse(ERRORS, HealthScore, unwrap(body), "health score")
