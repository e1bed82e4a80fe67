"""Validation of PlusVibe's bulk-update write fields."""

from __future__ import annotations

import re
from typing import Any

from sandbox.vendors.plusvibe.model import PlusVibeError

TIME_HM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
WEEKDAYS = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
# Write field -> (min, max) for integer settings of PUT /account/bulk-update.
INT_FIELDS = {
    "warmup_max_daily_limit": (1, 1000),
    "warmup_initial_daily_limit": (1, 1000),
    "warmup_pace_increment": (0, 1000),
    "warmup_randomize_num": (0, 100),
    "daily_limit": (0, 10000),
    "interval_limit_in_min": (0, 1440),
}
YES_NO_FIELDS = {
    "bulk_warmup_is_slow_rampup",
    "warmup_randomize",
    "warmup_signature",
    "bulk_is_slow_rampup",
}
TEXT_FIELDS = {"warmup_business_type", "signature", "first_name", "last_name"}


def validate_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """Check bulk-update write fields; unknown fields are refused so typos surface in tests."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in INT_FIELDS:
            low, high = INT_FIELDS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise PlusVibeError(400, f"{key} must be an integer between {low} and {high}")
        elif key in YES_NO_FIELDS:
            if value not in ("yes", "no"):
                raise PlusVibeError(400, f'{key} must be "yes" or "no"')
        elif key in TEXT_FIELDS:
            if not isinstance(value, str):
                raise PlusVibeError(400, f"{key} must be a string")
        elif key == "warmup_reply_rate":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise PlusVibeError(400, "warmup_reply_rate must be a number between 0 and 1")
            value = float(value)
        elif key == "warmup_schedule":
            _check_schedule(value)
        else:
            raise PlusVibeError(400, f"Unknown field: {key}")
        out[key] = value
    out.pop("bulk_is_slow_rampup", None)  # accepted, but the sandbox has no campaign ramp-up
    return out


def _check_schedule(value: Any) -> None:
    if not isinstance(value, dict):
        raise PlusVibeError(400, "warmup_schedule must be an object")
    if not isinstance(value.get("tz"), str):
        raise PlusVibeError(400, "warmup_schedule.tz is required")
    for key in ("from_time", "to_time"):
        if not isinstance(value.get(key), str) or not TIME_HM.match(value[key]):
            raise PlusVibeError(400, f"warmup_schedule.{key} must be HH:MM")
    days = value.get("days")
    if not isinstance(days, list) or not days or not set(days) <= WEEKDAYS:
        raise PlusVibeError(400, "warmup_schedule.days must list weekday names")
