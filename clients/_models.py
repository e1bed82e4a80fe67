"""Pydantic base and field types shared by the vendor models.

Models are tolerant (``extra="allow"``): a new vendor field never breaks a run. Extra fields whose
name looks like a credential are wrapped in ``SecretStr`` so they never show up in a repr or log.
"""

from __future__ import annotations

import math
from decimal import Decimal
from decimal import InvalidOperation
from typing import Annotated
from typing import Any

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import SecretStr

_SECRET_HINTS = ("password", "secret", "totp", "token", "apikey", "api_key", "credential")


def looks_secret(key: str) -> bool:
    """Return whether a field name suggests its value is a credential."""
    lowered = key.lower().replace("-", "_")
    return any(hint in lowered for hint in _SECRET_HINTS)


def _mask(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(key, v) for v in value]
    if isinstance(value, str) and looks_secret(key):
        return SecretStr(value)
    return value


class VendorModel(BaseModel):
    """Base for shapes read from a vendor: tolerant, never echoing inputs in errors."""

    model_config = ConfigDict(
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,
        # Validation errors must not quote the body: mailbox rows carry app passwords.
        hide_input_in_errors=True,
    )

    def model_post_init(self, _context: Any, /) -> None:
        extra = self.__pydantic_extra__
        if extra:
            for key, value in list(extra.items()):
                extra[key] = _mask(key, value)


def _to_decimal(value: Any) -> Decimal | None:
    # Zapmail sends prices as numeric strings; unsupported TLDs come back as "NaN".
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return None if value.is_nan() else value
    if isinstance(value, int | float):
        return (
            None if isinstance(value, float) and not math.isfinite(value) else Decimal(str(value))
        )
    if isinstance(value, str):
        text = value.strip().replace("$", "").replace(",", "")
        if not text:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
        return None if not number.is_finite() else number
    return None


def _to_int(value: Any) -> Any:
    # Counts sometimes arrive as strings ("3") or empty strings.
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return int(Decimal(text))
        except InvalidOperation:
            return value
    return value


def _no_data(value: Any) -> Any:
    # PlusVibe uses -1 for "no data in this window"; zero is a real value.
    if isinstance(value, str):
        text = value.strip().rstrip("%")
        if not text:
            return None
        value = text
    try:
        if float(value) == -1:
            return None
    except (TypeError, ValueError):
        return value
    return value


Price = Annotated[Decimal | None, BeforeValidator(_to_decimal)]
"""A money amount parsed from a numeric string; ``None`` when absent or NaN."""

Count = Annotated[int | None, BeforeValidator(_to_int)]
"""An integer that may arrive as a string."""

Metric = Annotated[float | None, BeforeValidator(_no_data)]
"""A number where the vendor's ``-1`` means "no data" (read as ``None``)."""
