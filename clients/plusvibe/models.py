"""Pydantic shapes for the PlusVibe API (snake_case on the wire already).

Quirks handled here: ``-1`` means "no data" and reads as ``None``; ids arrive as ``id`` or
``_id``; the warmup reply rate is READ as an integer percent but WRITTEN as ``warmup_reply_rate``
on a 0-1 scale (``WarmupSettings`` takes a percent and converts); yes/no flags are strings.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import SecretStr

from clients._models import Metric
from clients._models import VendorModel


def _id_field() -> Any:
    return Field(validation_alias=AliasChoices("id", "_id"))


class PlusVibeWorkspace(VendorModel):
    """A workspace the API key can reach (``GET /authenticate``)."""

    id: str = _id_field()
    name: str | None = None


class ClientLogin(VendorModel):
    """An agency client login created by ``POST /client``.

    The password is shown once by PlusVibe and is a ``SecretStr`` from the moment it is read.
    """

    client_id: str = Field(validation_alias=AliasChoices("client_id", "clientId", "_id", "id"))
    email: str | None = Field(None, validation_alias=AliasChoices("email", "client_email"))
    password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("password", "client_password")
    )
    """``None`` when PlusVibe did not return one; set it with ``set_client_password``."""


class PlusVibeClientAccount(VendorModel):
    """A row of ``GET /client/`` (shape undocumented; read tolerantly)."""

    id: str = Field(validation_alias=AliasChoices("client_id", "_id", "id"))
    email: str | None = Field(None, validation_alias=AliasChoices("email", "client_email"))
    first_name: str | None = Field(
        None, validation_alias=AliasChoices("first_name", "client_first_name")
    )
    last_name: str | None = Field(
        None, validation_alias=AliasChoices("last_name", "client_last_name")
    )
    business_name: str | None = Field(
        None, validation_alias=AliasChoices("business_name", "client_business_name")
    )


class HealthScores(VendorModel):
    """``payload.analytics.health_scores``; each value 0-100, ``None`` = no data."""

    overall_7d: Metric = Field(None, alias="7d_overall_warmup_health")
    """Warmup inbox-placement health over 7 days."""
    google_7d: Metric = Field(None, alias="7d_google_warmup_health")
    microsoft_7d: Metric = Field(None, alias="7d_microsoft_warmup_health")
    other_7d: Metric = Field(None, alias="7d_other_warmup_health")
    miss_warmup_rate_1d: Metric = Field(None, alias="1d_miss_warmup_rate")
    bounce_rate_3d: Metric = Field(None, alias="3d_bounce_rate")


class ReplyRates(VendorModel):
    """``payload.analytics.reply_rates`` in percent; ``None`` = no data."""

    reply_rate_7d: Metric = Field(None, alias="7d_replyrate")
    ooo_reply_rate_7d: Metric = Field(None, alias="7d_ooo_replyrate")


class DailyCounters(VendorModel):
    """Today's send counters."""

    email_sent_today: Metric = None
    warmup_email_sent_today: Metric = None


class Analytics(VendorModel):
    """``payload.analytics`` of an account row."""

    health_scores: HealthScores = Field(default_factory=HealthScores)
    reply_rates: ReplyRates = Field(default_factory=ReplyRates)
    daily_counters: DailyCounters = Field(default_factory=DailyCounters)


class WarmupConfig(VendorModel):
    """``payload.warmup`` as read back."""

    limit: Metric = None
    """Max warmup emails per day."""
    increment: Metric = None
    """Daily ramp step."""
    reply_rate: Metric = None
    """Target warmup reply rate in PERCENT as read (35 = 35%); written as 0-1."""


class AccountPayload(VendorModel):
    """``payload`` of an account row (settings and analytics)."""

    daily_limit: Metric = None
    """Campaign emails per day."""
    sending_gap: Metric = None
    """Minutes between campaign sends."""
    warmup: WarmupConfig = Field(default_factory=WarmupConfig)
    analytics: Analytics = Field(default_factory=Analytics)
    tags: list[Any] = Field(default_factory=list)
    cmps: list[Any] = Field(default_factory=list)
    """Campaigns currently sending from this mailbox."""


class Account(VendorModel):
    """An email account (mailbox) in a PlusVibe workspace."""

    id: str = _id_field()
    email: str
    status: str | None = None
    """Connection state: ``ACTIVE`` or ``INACTIVE``."""
    warmup_status: str | None = None
    """``ACTIVE`` or ``INACTIVE``."""
    provider: str | None = None
    warmup_enb_dt: str | None = None
    """When warmup was enabled (ISO timestamp)."""
    timestamp_created: str | None = None
    payload: AccountPayload = Field(default_factory=AccountPayload)

    @property
    def warmup_active(self) -> bool:
        """Whether warmup is on."""
        return (self.warmup_status or "").upper() == "ACTIVE"


class WarmupStatusUpdate(VendorModel):
    """Answer of ``PATCH /account/bulk-update-warmup`` (shape L; all fields optional)."""

    status: str | None = None
    updated_count: int | None = None
    updated_ids: list[str] = Field(default_factory=list)


def _yes_no(flag: bool | None) -> str | None:
    return None if flag is None else ("yes" if flag else "no")


class WarmupSettings(BaseModel):
    """Settings written by ``PUT /account/bulk-update``; only fields that are set are sent.

    Use the same units as the read side: ``reply_rate_percent=30`` is sent as
    ``warmup_reply_rate: 0.3``; booleans are sent as "yes"/"no".
    """

    model_config = ConfigDict(extra="forbid")

    max_daily_limit: int | None = Field(None, ge=1)
    """Max warmup emails per day (``warmup_max_daily_limit``; PlusVibe's minimum is 1)."""
    initial_daily_limit: int | None = Field(None, ge=1)
    """First-day warmup volume (``warmup_initial_daily_limit``)."""
    pace_increment: int | None = Field(None, ge=0)
    """Daily warmup ramp step (``warmup_pace_increment``)."""
    slow_rampup: bool | None = None
    randomize: bool | None = None
    randomize_percent: int | None = Field(None, ge=0, le=100)
    """Random jitter on the daily volume, in percent (``warmup_randomize_num``)."""
    reply_rate_percent: float | None = Field(None, ge=0, le=100)
    """Target warmup reply rate in percent; written as ``warmup_reply_rate`` on 0-1."""
    daily_limit: int | None = Field(None, ge=0)
    """Campaign emails per day (0 stops campaign sending)."""
    interval_minutes: int | None = Field(None, ge=0)
    """Minutes between campaign sends (``interval_limit_in_min``)."""
    schedule: dict[str, Any] | None = None
    """``{tz, from_time, to_time, days}``; the only place a timezone can be set."""
    business_type: str | None = None

    def to_payload(self) -> dict[str, Any]:
        """Return the PlusVibe write fields for the values that are set."""
        rate = self.reply_rate_percent
        fields: dict[str, Any] = {
            "warmup_max_daily_limit": self.max_daily_limit,
            "warmup_initial_daily_limit": self.initial_daily_limit,
            "warmup_pace_increment": self.pace_increment,
            "bulk_warmup_is_slow_rampup": _yes_no(self.slow_rampup),
            "warmup_randomize": _yes_no(self.randomize),
            "warmup_randomize_num": self.randomize_percent,
            "warmup_reply_rate": None if rate is None else round(rate / 100.0, 4),
            "daily_limit": self.daily_limit,
            "interval_limit_in_min": self.interval_minutes,
            "warmup_schedule": self.schedule,
            "warmup_business_type": self.business_type,
        }
        return {key: value for key, value in fields.items() if value is not None}
