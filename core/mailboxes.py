"""Mailbox naming: sender names, username patterns, Zapmail's username rules, address previews.

A pattern is a template such as ``{first}.{last}`` (stored as-is in
``Provision.username_patterns``); each domain gets one mailbox per pattern.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# template -> example shown to students (for "Tim Keen").
PATTERNS: dict[str, str] = {
    "{first}": "tim",
    "{first}.{last}": "tim.keen",
    "{first}{last}": "timkeen",
    "{f}{last}": "tkeen",
    "{f}.{last}": "t.keen",
    "{first}_{last}": "tim_keen",
    "{first}-{last}": "tim-keen",
    "{first}{l}": "timk",
    "{first}.{l}": "tim.k",
    "{last}": "keen",
    "{last}.{first}": "keen.tim",
}
DEFAULT_PATTERNS: tuple[str, str] = ("{first}", "{first}.{last}")
MAX_USERNAME_LENGTH = 64
MAX_NAME_LENGTH = 50

# Role addresses mail providers reserve or that receive abuse reports; never a sender.
RESERVED_USERNAMES = frozenset(
    {
        "abuse",
        "admin",
        "administrator",
        "hostmaster",
        "mailer-daemon",
        "no-reply",
        "noreply",
        "postmaster",
        "root",
        "webmaster",
    }
)

_USERNAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")
_NAME = re.compile(r"^[^\W\d_]+(?:[ '\-][^\W\d_]+)*$")


class MailboxNameError(ValueError):
    """A sender name or username pattern cannot be used; the message is meant for the student."""


@dataclass(frozen=True)
class SenderName:
    """A validated sender name as the student wrote it (used for display names)."""

    first: str
    last: str


def _fold(part: str) -> str:
    # Usernames are ASCII: "Zoë O'Neil" becomes "zoe" / "oneil".
    folded = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.lower())


def validate_sender_name(first: str, last: str) -> SenderName:
    """Return the cleaned sender name or raise MailboxNameError saying what is wrong."""
    cleaned = []
    for label, value in (("First name", first), ("Last name", last)):
        value = " ".join(value.split())
        if not value:
            raise MailboxNameError(f"{label} is required.")
        if len(value) > MAX_NAME_LENGTH:
            raise MailboxNameError(f"{label} is too long (at most {MAX_NAME_LENGTH} characters).")
        if not _NAME.match(value):
            raise MailboxNameError(
                f"{label} may contain letters, spaces, hyphens and apostrophes only."
            )
        if not _fold(value):
            raise MailboxNameError(
                f"{label} needs at least one letter a-z for the email address "
                "(accents are fine, other scripts are not)."
            )
        cleaned.append(value)
    return SenderName(cleaned[0], cleaned[1])


def validate_username(username: str) -> str:
    """Return ``username`` if Zapmail accepts it, else raise MailboxNameError in plain words."""
    if not username:
        raise MailboxNameError("The address would be empty.")
    if len(username) > MAX_USERNAME_LENGTH:
        raise MailboxNameError(
            f"{username} is too long (at most {MAX_USERNAME_LENGTH} characters)."
        )
    if username[0] in "._-" or username[-1] in "._-":
        raise MailboxNameError(f"{username} cannot start or end with a dot, underscore or hyphen.")
    if not _USERNAME.match(username):
        raise MailboxNameError(
            f"{username} may contain only a-z, 0-9, dots, underscores and hyphens."
        )
    if ".." in username:
        raise MailboxNameError(f"{username} cannot contain two dots in a row.")
    if username in RESERVED_USERNAMES:
        raise MailboxNameError(f"{username} is reserved for system mail; pick another pattern.")
    return username


def render_username(pattern: str, first: str, last: str) -> str:
    """Fill a pattern with a sender name and check the result against Zapmail's rules."""
    if pattern not in PATTERNS:
        raise MailboxNameError("Choose one of the listed address patterns.")
    f, la = _fold(first), _fold(last)
    username = pattern.format(first=f, last=la, f=f[:1], l=la[:1])
    return validate_username(username)


def usernames_for(patterns: list[str] | tuple[str, ...], first: str, last: str) -> list[str]:
    """Return one username per pattern, refusing patterns that produce the same address."""
    usernames = [render_username(p, first, last) for p in patterns]
    if len(set(usernames)) != len(usernames):
        raise MailboxNameError(
            "Two patterns give the same address for this name; choose different patterns."
        )
    return usernames


def preview_addresses(
    domains: list[str], patterns: list[str] | tuple[str, ...], first: str, last: str
) -> list[tuple[str, list[str]]]:
    """Return ``(domain, [address, ...])`` for every mailbox that will be created."""
    usernames = usernames_for(patterns, first, last)
    return [(domain, [f"{u}@{domain}" for u in usernames]) for domain in domains]
