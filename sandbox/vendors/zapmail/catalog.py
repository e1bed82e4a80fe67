"""Zapmail's domain catalogue: supported TLDs, prices and the deterministic availability rule."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal

# (first-year price, renewal price) in USD. Only .com is documented (12.99 / 20.99, zapmail.md §9);
# the others are sandbox choices, listed in docs/sandbox.md.
TLD_PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "com": (Decimal("12.99"), Decimal("20.99")),
    "net": (Decimal("14.99"), Decimal("22.99")),
    "org": (Decimal("11.99"), Decimal("19.99")),
    "biz": (Decimal("17.99"), Decimal("24.99")),
    "live": (Decimal("4.99"), Decimal("31.99")),
    "info": (Decimal("5.99"), Decimal("27.99")),
    "co": (Decimal("26.99"), Decimal("32.99")),
}

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# About 15% of otherwise free names are "registered elsewhere": 38/256 of first hash bytes.
UNAVAILABLE_BYTE_BELOW = 38


def normalize(name: str) -> str:
    """Lower-case and trim a domain name."""
    return name.strip().lower().rstrip(".")


def split(name: str) -> tuple[str, str] | None:
    """Return (label, tld) for a valid second-level name, else None."""
    parts = name.split(".")
    if len(parts) != 2 or not _LABEL.match(parts[0]) or not re.match(r"^[a-z]{2,24}$", parts[1]):
        return None
    return parts[0], parts[1]


def supported(name: str) -> bool:
    """Tell whether the name is valid and its TLD is sold."""
    parts = split(name)
    return parts is not None and parts[1] in TLD_PRICES


def registered_elsewhere(name: str) -> bool:
    """The deterministic 'someone else owns it' rule: 'taken' in the label, or the hash rule."""
    parts = split(name)
    if parts is None:
        return True
    if "taken" in parts[0]:
        return True
    return hashlib.sha256(name.encode()).digest()[0] < UNAVAILABLE_BYTE_BELOW


def price(name: str, years: int = 1) -> Decimal:
    """Return the purchase price: first year, plus renewal price for each extra year."""
    first, renew = TLD_PRICES[name.rsplit(".", 1)[1]]
    return first + renew * (years - 1)


def renew_price(name: str) -> Decimal:
    """Return the yearly renewal price."""
    return TLD_PRICES[name.rsplit(".", 1)[1]][1]
