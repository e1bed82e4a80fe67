"""The student's main website: where cold domains forward, so it must be a real, other web address.

One rule for the wizard, the dashboard and the forwarding task: http or https (a bare host gets
https), a host name with a dot and no credentials, at most 2048 characters, and never one of the
student's cold domains or a subdomain of one (forwarding a cold domain to itself loops, and
sending visitors to a sibling cold domain shows them an empty page).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

MAX_LENGTH = 2048
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class WebsiteError(ValueError):
    """The address cannot be a forwarding target; the message says why, for the student."""


def clean_website(raw: str | None, cold_domains: Iterable[str] = ()) -> str | None:
    """Return the website as stored (``None`` when blank); raise WebsiteError when unusable."""
    text = (raw or "").strip()
    if not text:
        return None
    if len(text) > MAX_LENGTH:
        raise WebsiteError(f"Use a website address of at most {MAX_LENGTH} characters.")
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise WebsiteError("Use a website address starting with https:// or http://.")
    host = (parts.hostname or "").rstrip(".")
    labels = host.split(".")
    if (
        " " in text
        or parts.username is not None
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise WebsiteError("Enter your website's address, for example https://yourcompany.com.")
    for cold in cold_domains:
        name = cold.strip().lower().rstrip(".")
        if name and (host == name or host.endswith(f".{name}")):
            raise WebsiteError(
                f"{name} is one of your cold-email domains; enter your main website instead."
            )
    try:
        port = parts.port
    except ValueError:  # a port outside 0-65535
        raise WebsiteError("That website address has an invalid port.") from None
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def website_or_none(raw: str | None, cold_domains: Iterable[str]) -> str | None:
    """The website when it passes :func:`clean_website`, else ``None`` (for stored values)."""
    try:
        return clean_website(raw, cold_domains)
    except WebsiteError:
        return None
