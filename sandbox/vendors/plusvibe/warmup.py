"""Warmup statistics: a deterministic function of the address and simulated warmup days."""

from __future__ import annotations

import hashlib
from typing import Any

from sandbox.vendors.plusvibe.model import Account
from sandbox.vendors.plusvibe.model import iso


def _unit(*parts: object) -> float:
    """A deterministic pseudo-random number in [0, 1) from the given parts."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def warmup_analytics(acc: Account, now: float, forced: int | None) -> dict[str, Any]:
    """payload.analytics: health ramps ~50-70 -> ~90-100 over ~18 days; -1 means no data."""
    days = acc.warmup_days(now)
    if days is None:
        none = -1
        return {
            "health_scores": {
                "7d_overall_warmup_health": none, "7d_google_warmup_health": none,
                "7d_microsoft_warmup_health": none, "7d_other_warmup_health": none,
                "1d_miss_warmup_rate": none, "3d_bounce_rate": none,
            },
            "reply_rates": {"7d_replyrate": none, "7d_ooo_replyrate": none},
            "daily_counters": {"email_sent_today": 0, "warmup_email_sent_today": 0},
        }  # fmt: skip
    day = int(days) + 1
    e = acc.email
    start = 50 + 20 * _unit(e, "start")
    target = 92 + 8 * _unit(e, "target")
    ramp = min(1.0, (day - 1) / 18)
    health = (
        forced
        if forced is not None
        else start + (target - start) * ramp + 4 * (_unit(e, day, "h") - 0.5)
    )

    def near(salt: str, spread: float) -> int:
        return int(round(min(100.0, max(0.0, health + spread * (_unit(e, day, salt) - 0.5)))))

    s = acc.settings
    reply = s["warmup_reply_rate"] * 100 + 6 * (_unit(e, day, "reply") - 0.5)
    return {
        "health_scores": {
            "7d_overall_warmup_health": int(round(min(100.0, max(0.0, health)))),
            "7d_google_warmup_health": near("google", 6),
            "7d_microsoft_warmup_health": near("microsoft", 10),
            "7d_other_warmup_health": near("other", 10),
            "1d_miss_warmup_rate": int(3 * _unit(e, day, "miss")),
            "3d_bounce_rate": -1,  # no campaigns in the sandbox
        },
        "reply_rates": {
            "7d_replyrate": int(round(min(100.0, max(0.0, reply)))),
            "7d_ooo_replyrate": int(3 * _unit(e, day, "ooo")),
        },
        "daily_counters": {
            "email_sent_today": 0,
            "warmup_email_sent_today": warmup_sent_today(acc, day),
        },
    }


def warmup_sent_today(acc: Account, day: int) -> int:
    """Today's warmup volume: initial + increment per day (halved on slow ramp-up), capped at max."""
    if not acc.warmup_active:
        return 0
    s = acc.settings
    step = s["warmup_pace_increment"]
    if s["bulk_warmup_is_slow_rampup"] == "yes":
        step = step / 2
    volume = min(s["warmup_max_daily_limit"], s["warmup_initial_daily_limit"] + step * (day - 1))
    if s["warmup_randomize"] == "yes" and s["warmup_randomize_num"]:
        volume *= 1 + s["warmup_randomize_num"] / 100 * (2 * _unit(acc.email, day, "rand") - 1)
    return max(0, int(round(volume)))


def account_view(acc: Account, now: float, forced: int | None) -> dict[str, Any]:
    """The /account/list read shape (read names differ from write names)."""
    s = acc.settings
    return {
        "id": acc.id,
        "email": acc.email,
        "status": "ACTIVE",
        "warmup_status": "ACTIVE" if acc.warmup_active else "INACTIVE",
        "provider": acc.provider,
        "warmup_enb_dt": iso(acc.warmup_enb_dt),
        "timestamp_created": iso(acc.created_at),
        "timestamp_updated": iso(acc.updated_at),
        "payload": {
            "name": {"first_name": acc.first_name, "last_name": acc.last_name},
            "daily_limit": s["daily_limit"],
            "sending_gap": s["interval_limit_in_min"],
            "warmup": {
                "limit": s["warmup_max_daily_limit"],
                "increment": s["warmup_pace_increment"],
                "reply_rate": int(round(s["warmup_reply_rate"] * 100)),
                "warmup_custom_words": None,
                "warmup_signature": s["warmup_signature"],
                "advanced": {
                    "warm_ctd": False,
                    "weekday_only": False,
                    "warmup_business_type": s["warmup_business_type"],
                },
            },  # fmt: skip
            "warmup_rampup": {
                "start": s["warmup_initial_daily_limit"],
                "increment": s["warmup_pace_increment"],
                "is_slow": s["bulk_warmup_is_slow_rampup"],
                "randomize": s["warmup_randomize"],
                "randomize_num": s["warmup_randomize_num"],
            },
            "sending_rampup": None,
            "warmup_schedule": s["warmup_schedule"],
            "imap_host": acc.smtp.get("imap_host"),
            "imap_port": acc.smtp.get("imap_port"),
            "smtp_host": acc.smtp.get("smtp_host"),
            "smtp_port": acc.smtp.get("smtp_port"),
            "reply_to": None,
            "custom_domain": None,
            "signature": s["signature"],
            "tags": [],
            "cmps": [],
            "analytics": warmup_analytics(acc, now, forced),
        },
    }
