"""Domain names: validation in plain words and deterministic brand-based suggestions.

Only the TLDs Zapmail sells are accepted (docs/vendors/zapmail.md 7.3). A brand search yields at
most 20 names, so one Zapmail ``available-bulk`` call (one unit of the shared budget) checks it.
"""

from __future__ import annotations

import re
import unicodedata

SUPPORTED_TLDS: tuple[str, ...] = ("com", "net", "org", "co", "info", "biz", "live")
MAX_SUGGESTIONS = 20
MAX_BRAND_LENGTH = 40
MIN_BRAND_LENGTH = 2
MAX_LABEL_LENGTH = 63

# Lookalike affixes used by cold-email operators (docs/market.md 4.6); order is the display order.
PREFIXES: tuple[str, ...] = (
    "get",
    "try",
    "use",
    "go",
    "hey",
    "meet",
    "join",
    "hello",
    "with",
    "team",
)
SUFFIXES: tuple[str, ...] = ("hq", "mail", "team", "app", "labs")
# The brand itself on other TLDs; the bare .com is never suggested (see suggest_domains).
ALTERNATE_TLDS: tuple[str, ...] = ("net", "co", "org", "info", "live")

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")


class DomainNameError(ValueError):
    """A domain name or brand cannot be used; the message is meant for the student."""


def normalize_domain(raw: str) -> str:
    """Return the canonical form of what a student typed (trimmed, lower-case, no scheme/www)."""
    name = raw.strip().lower()
    for prefix in ("https://", "http://"):
        name = name.removeprefix(prefix)
    name = name.split("/", 1)[0].rstrip(".")
    # "www." is the website's host, not part of the domain, but only when a domain follows it:
    # "www.xyz" is the label "www" on the ending ".xyz" (refused for its ending, not as "xyz").
    if name.startswith("www.") and "." in name.removeprefix("www."):
        return name.removeprefix("www.")
    return name


def validate_domain(raw: str) -> str:
    """Return the normalized name, or raise DomainNameError saying what is wrong with it."""
    name = normalize_domain(raw)
    if not name:
        raise DomainNameError("Enter a domain name, for example tryacme.com.")
    if not name.isascii():
        raise DomainNameError(
            f"{name} contains accented or non-Latin letters; use a-z, 0-9 and hyphens only."
        )
    if "." not in name:
        raise DomainNameError(
            f"{name} has no ending; add one of: " + ", ".join(f".{t}" for t in SUPPORTED_TLDS) + "."
        )
    if "" in name.split("."):
        # "foo..com" or ".com": an empty part is a typo, not a subdomain or a missing ending.
        raise DomainNameError(
            f"{name} is not a valid domain name: it has an empty part between its dots."
        )
    label, tld = name.rsplit(".", 1)
    if tld not in SUPPORTED_TLDS:
        raise DomainNameError(
            f".{tld} is not sold by our domain provider; choose one of: "
            + ", ".join(f".{t}" for t in SUPPORTED_TLDS)
            + "."
        )
    if "." in label:
        raise DomainNameError(
            f"{name} is a subdomain; mailboxes need their own domain such as {label.rsplit('.', 1)[1]}.{tld}."
        )
    if len(label) > MAX_LABEL_LENGTH:
        raise DomainNameError(
            f"{name} is too long (at most {MAX_LABEL_LENGTH} characters before the dot)."
        )
    if not _LABEL.match(label):
        raise DomainNameError(
            f"{name} is not a valid name: use letters, digits and hyphens, and do not start or end "
            "with a hyphen."
        )
    if label[2:4] == "--":
        # "xn--" and friends are reserved for internationalized names.
        raise DomainNameError(f"{name} cannot have two hyphens in the third and fourth place.")
    return name


def brand_label(brand: str) -> str:
    """Turn a brand name into a domain label (ASCII letters and digits only)."""
    folded = unicodedata.normalize("NFKD", brand).encode("ascii", "ignore").decode()
    label = re.sub(r"[^a-z0-9]", "", folded.lower())
    if len(label) < MIN_BRAND_LENGTH:
        raise DomainNameError(
            f"Enter a brand name with at least {MIN_BRAND_LENGTH} letters or digits."
        )
    if len(label) > MAX_BRAND_LENGTH:
        raise DomainNameError(
            f"That brand name is too long for a domain; keep it under {MAX_BRAND_LENGTH} characters."
        )
    return label


def suggest_domains(brand: str) -> list[str]:
    """Return up to 20 lookalike domains for a brand, always the same ones in the same order.

    The brand's own ``.com`` is left out on purpose: it is usually the student's website, and cold
    email must never put that domain's reputation at risk.
    """
    label = brand_label(brand)
    names = [f"{prefix}{label}.com" for prefix in PREFIXES]
    names += [f"{label}{suffix}.com" for suffix in SUFFIXES]
    names += [f"{label}.{tld}" for tld in ALTERNATE_TLDS]
    # Never offer a name that normalizes to another one (found by the suggestion property).
    unique = [n for n in dict.fromkeys(names) if normalize_domain(n) == n]
    return unique[:MAX_SUGGESTIONS]
