"""core.mailboxes: sender names, patterns, Zapmail's username rules, the address preview."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from core.mailboxes import PATTERNS
from core.mailboxes import MailboxNameError
from core.mailboxes import preview_addresses
from core.mailboxes import render_username
from core.mailboxes import usernames_for
from core.mailboxes import validate_sender_name
from core.mailboxes import validate_username
from tests.reliability import figures


@pytest.mark.parametrize(
    "pattern,expected",
    [
        ("{first}", "tim"),
        ("{first}.{last}", "tim.keen"),
        ("{f}{last}", "tkeen"),
        ("{first}{l}", "timk"),
        ("{last}.{first}", "keen.tim"),
    ],
)
def test_patterns_render_as_their_examples(pattern: str, expected: str) -> None:
    assert render_username(pattern, "Tim", "Keen") == expected == PATTERNS[pattern]


def test_names_are_folded_to_ascii() -> None:
    assert render_username("{first}.{last}", "Zoë", "O'Neil") == "zoe.oneil"
    assert render_username("{first}", "Mary Ann", "Lee") == "maryann"


@pytest.mark.parametrize(
    "username,message",
    [
        (".tim", "cannot start or end"),
        ("tim_", "cannot start or end"),
        ("-tim", "cannot start or end"),
        ("tim..keen", "two dots in a row"),
        ("tim keen", "only a-z, 0-9"),
        ("postmaster", "reserved"),
        ("t" * 65, "too long"),
        ("", "empty"),
    ],
)
def test_zapmail_username_rules(username: str, message: str) -> None:
    with pytest.raises(MailboxNameError, match=message):
        validate_username(username)


@pytest.mark.parametrize(
    "first,last,message",
    [
        ("", "Keen", "First name is required"),
        ("Tim", "", "Last name is required"),
        ("T1m", "Keen", "letters, spaces"),
        ("Тим", "Keen", "at least one letter a-z"),
        ("T" * 51, "Keen", "too long"),
    ],
)
def test_sender_name_rules(first: str, last: str, message: str) -> None:
    with pytest.raises(MailboxNameError, match=message):
        validate_sender_name(first, last)


def test_sender_name_keeps_accents_for_display() -> None:
    name = validate_sender_name("  Zoë ", "O'Neil-Smith")
    assert (name.first, name.last) == ("Zoë", "O'Neil-Smith")


def test_patterns_must_give_distinct_addresses() -> None:
    with pytest.raises(MailboxNameError, match="same address"):
        usernames_for(["{first}", "{first}"], "Tim", "Keen")
    with pytest.raises(MailboxNameError, match="listed address patterns"):
        usernames_for(["{first}", "{first}{first}"], "Tim", "Keen")


def test_preview_lists_every_mailbox() -> None:
    grid = preview_addresses(["a.com", "b.net"], ["{first}", "{first}.{last}"], "Tim", "Keen")
    assert grid == [
        ("a.com", ["tim@a.com", "tim.keen@a.com"]),
        ("b.net", ["tim@b.net", "tim.keen@b.net"]),
    ]


@given(
    st.sampled_from(sorted(PATTERNS)),
    st.from_regex(r"[A-Za-z]{1,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z]{1,20}", fullmatch=True),
)
def test_rendered_usernames_always_pass_the_rules(pattern: str, first: str, last: str) -> None:
    try:
        username = render_username(pattern, first, last)
    except MailboxNameError as exc:
        assert "reserved" in str(exc)
        return
    assert validate_username(username) == username


# Property tests of the validators (figures in docs/reliability.md, "Bad input").
PROPERTY_EXAMPLES = 2000 if figures.LONG else 300
_USERNAME_OK = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")


@settings(max_examples=PROPERTY_EXAMPLES)
@given(st.text(max_size=80) | st.from_regex(r"[a-z0-9._\-]{0,70}", fullmatch=True))
def test_validate_username_accepts_only_what_zapmail_accepts(username: str) -> None:
    figures.add("bad input", "username_validator_cases", 1)
    try:
        assert validate_username(username) == username
    except MailboxNameError as exc:
        assert str(exc)
        return
    assert _USERNAME_OK.match(username) and ".." not in username
    assert username[0] not in "._-" and username[-1] not in "._-"
    assert 0 < len(username) <= 64


@settings(max_examples=PROPERTY_EXAMPLES)
@given(
    st.lists(st.sampled_from(sorted(PATTERNS)), min_size=1, max_size=3),
    st.text(max_size=60),
    st.text(max_size=60),
)
def test_any_sender_name_gives_valid_distinct_usernames_or_a_clear_error(
    patterns: list[str], first: str, last: str
) -> None:
    figures.add("bad input", "username_pattern_cases", 1)
    try:
        name = validate_sender_name(first, last)
        usernames = usernames_for(patterns, name.first, name.last)
    except MailboxNameError as exc:
        assert str(exc)
        return
    assert len(set(usernames)) == len(usernames) == len(patterns)
    assert all(validate_username(u) == u for u in usernames)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(st.text(max_size=30))
def test_unknown_patterns_are_refused(pattern: str) -> None:
    figures.add("bad input", "username_pattern_cases", 1)
    if pattern in PATTERNS:
        return
    with pytest.raises(MailboxNameError, match="listed address patterns"):
        render_username(pattern, "Tim", "Keen")
