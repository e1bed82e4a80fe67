"""Pydantic shapes for the HeyReach public API (camelCase on the wire, snake_case here)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import AliasChoices
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic.alias_generators import to_camel

from clients._models import Count
from clients._models import VendorModel

_FIELD_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class HeyReachModel(VendorModel):
    """Base for HeyReach read models."""

    model_config = ConfigDict(alias_generator=to_camel)


class HeyReachList(HeyReachModel):
    """A lead list; ``id`` is numeric (store it as BIGINT)."""

    id: int
    name: str | None = None
    list_type: str | None = Field(None, validation_alias=AliasChoices("listType", "type"))
    """``USER_LIST`` (people) or ``COMPANY_LIST``."""
    count: Count = Field(None, validation_alias=AliasChoices("count", "totalItemsCount"))
    """Number of leads as reported by the list object (may lag writes)."""
    creation_time: str | None = None
    is_deleted: bool | None = None
    status: str | None = None


class ListPage(HeyReachModel):
    """One ``{totalCount, items}`` page of ``list/GetAll`` (``items`` required: see zapmail Page)."""

    total_count: Count = None
    items: list[HeyReachList]


class ListLead(HeyReachModel):
    """A lead read back from ``list/GetLeadsFromList`` (item schema undocumented)."""

    profile_url: str | None = None
    linkedin_id: str | None = Field(
        None, validation_alias=AliasChoices("linkedin_id", "linkedInId", "linkedinId")
    )
    first_name: str | None = None
    last_name: str | None = None
    company_name: str | None = None
    position: str | None = None
    email_address: str | None = None


class LeadPage(HeyReachModel):
    """One ``{totalCount, items}`` page of ``list/GetLeadsFromList``."""

    total_count: Count = None
    items: list[ListLead]


class CustomUserField(BaseModel):
    """A custom variable on a lead; the name is alphanumeric/underscore."""

    model_config = ConfigDict(extra="forbid")

    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _FIELD_NAME.match(value):
            raise ValueError("custom field names may hold only letters, digits and '_'")
        return value


class Lead(BaseModel):
    """A lead to add to a list; ``profile_url`` must be a linkedin.com/in/ URL."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )

    profile_url: str
    first_name: str | None = None
    last_name: str | None = None
    location: str | None = None
    summary: str | None = None
    company_name: str | None = None
    position: str | None = None
    about: str | None = None
    email_address: str | None = None
    custom_user_fields: list[CustomUserField] = Field(default_factory=list)

    @field_validator("profile_url")
    @classmethod
    def _check_profile_url(cls, value: str) -> str:
        if "linkedin.com/in/" not in value.lower():
            raise ValueError("profile_url must be a linkedin.com/in/... URL")
        return value

    def to_wire(self) -> dict[str, Any]:
        """Return the camelCase body HeyReach expects, without unset fields."""
        body = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not body.get("customUserFields"):
            body.pop("customUserFields", None)
        return body


class AddLeadsResult(HeyReachModel):
    """Totals of ``AddLeadsToListV2``, summed over every batch of one ``add_leads`` call."""

    added_leads_count: int = 0
    updated_leads_count: int = 0
    failed_leads_count: int = 0
    batches: int = 0
    """Number of requests the call was split into (100 leads at most each)."""

    @property
    def total(self) -> int:
        """Added plus updated leads."""
        return self.added_leads_count + self.updated_leads_count
