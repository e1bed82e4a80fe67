"""core.domains: validation in plain words and deterministic brand suggestions."""

from __future__ import annotations

import re

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from core.domains import MAX_SUGGESTIONS
from core.domains import SUPPORTED_TLDS
from core.domains import DomainNameError
from core.domains import brand_label
from core.domains import normalize_domain
from core.domains import suggest_domains
from core.domains import validate_domain
from tests.reliability import figures


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("TryAcme.com", "tryacme.com"),
        ("  https://www.tryacme.com/pricing ", "tryacme.com"),
        ("try-acme.co.", "try-acme.co"),
    ],
)
def test_validate_normalizes(raw: str, expected: str) -> None:
    assert validate_domain(raw) == expected
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize(
    "raw,message",
    [
        ("", "Enter a domain name"),
        ("acme", "has no ending"),
        ("acme.io", ".io is not sold"),
        ("acme.xyz", ".xyz is not sold"),
        ("mail.acme.com", "is a subdomain"),
        ("foo..com", "foo..com is not a valid domain name"),
        (".com", "not a valid domain name"),
        ("-acme.com", "do not start or end with a hyphen"),
        ("acme-.com", "do not start or end with a hyphen"),
        ("ac_me.com", "use letters, digits and hyphens"),
        ("xn--acme.com", "third and fourth place"),
        ("ácme.com", "accented or non-Latin"),
        ("a" * 64 + ".com", "too long"),
    ],
)
def test_validate_explains_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(DomainNameError, match=message):
        validate_domain(raw)


def test_suggestions_fit_one_availability_call_and_are_deterministic() -> None:
    names = suggest_domains("Acme Widgets")
    assert names == suggest_domains("acme widgets")
    assert len(names) == MAX_SUGGESTIONS == 20
    assert len(set(names)) == len(names)
    assert names[0] == "getacmewidgets.com"
    assert "acmewidgets.com" not in names  # the brand's own site is never offered
    for name in names:
        assert validate_domain(name) == name


def test_brand_label_folds_accents_and_refuses_nonsense() -> None:
    assert brand_label("Café Olé!") == "cafeole"
    with pytest.raises(DomainNameError, match="at least 2"):
        brand_label("!!")
    with pytest.raises(DomainNameError, match="too long"):
        brand_label("x" * 41)


@given(st.text(min_size=2, max_size=40))
def test_every_suggestion_is_valid_and_on_a_supported_tld(brand: str) -> None:
    try:
        names = suggest_domains(brand)
    except DomainNameError:
        return
    assert 0 < len(names) <= MAX_SUGGESTIONS
    for name in names:
        assert validate_domain(name) == name
        assert name.rsplit(".", 1)[1] in SUPPORTED_TLDS


# Property tests of the validators (figures in docs/reliability.md, "Bad input").
PROPERTY_EXAMPLES = 2000 if figures.LONG else 300
_LABEL_OK = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True).filter(
    lambda s: s[2:4] != "--"
)
typed = (
    st.text(max_size=80)
    | st.from_regex(
        r"\s*(https?://)?(www\.)?[A-Za-z0-9.\-_]{0,30}\.[a-zA-Z]{1,6}/?\s*", fullmatch=True
    )
    | st.builds(lambda a, b: f"{a}.{b}", st.text(max_size=70), st.sampled_from(SUPPORTED_TLDS))
)


def _is_valid_name(name: str) -> bool:
    label, _, tld = name.rpartition(".")
    return tld in SUPPORTED_TLDS and bool(_LABEL_OK.match(label)) and label[2:4] != "--"


@settings(max_examples=PROPERTY_EXAMPLES)
@given(typed)
def test_validate_domain_either_explains_or_returns_a_purchasable_name(raw: str) -> None:
    figures.add("bad input", "domain_validator_cases", 1)
    try:
        name = validate_domain(raw)
    except DomainNameError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert _is_valid_name(name) and name == name.lower() and name.isascii()
    assert validate_domain(name) == name  # normalizing twice changes nothing


@settings(max_examples=PROPERTY_EXAMPLES)
@given(labels, st.sampled_from(SUPPORTED_TLDS), st.sampled_from(["", "https://", "http://www."]))
def test_every_well_formed_name_on_a_sold_tld_is_accepted(
    label: str, tld: str, prefix: str
) -> None:
    figures.add("bad input", "domain_validator_cases", 1)
    assert validate_domain(f"  {prefix}{label.upper()}.{tld}/ ") == f"{label}.{tld}"


@settings(max_examples=PROPERTY_EXAMPLES)
@given(labels, st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6))
def test_names_on_unsold_tlds_are_refused(label: str, tld: str) -> None:
    figures.add("bad input", "domain_validator_cases", 1)
    if tld in SUPPORTED_TLDS:
        return
    with pytest.raises(DomainNameError, match="not sold"):
        validate_domain(f"{label}.{tld}")


@settings(max_examples=PROPERTY_EXAMPLES)
@given(st.text(max_size=60) | st.from_regex(r"[A-Za-z][A-Za-z0-9 &'.-]{1,38}", fullmatch=True))
@example("WWW")  # found by this property: "www.net" normalizes to the bare "net"
def test_suggestions_are_purchasable_unique_and_never_the_brands_own_site(brand: str) -> None:
    figures.add("bad input", "suggestion_cases", 1)
    try:
        names = suggest_domains(brand)
    except DomainNameError:
        return
    assert 0 < len(names) <= MAX_SUGGESTIONS
    assert len(set(names)) == len(names)
    assert all(_is_valid_name(n) and validate_domain(n) == n for n in names)
    assert f"{brand_label(brand)}.com" not in names
    assert names == suggest_domains(brand)


@pytest.mark.parametrize("name", ["www.xyz", "www.io", "WWW.Dev"])
def test_a_www_label_on_an_unsold_ending_is_refused_for_its_ending(name: str) -> None:
    # Found by test_names_on_unsold_tlds_are_refused drawing the label "www": the validator
    # stripped "www." and then said the ending was missing instead of naming the unsold ending.
    with pytest.raises(DomainNameError, match="not sold"):
        validate_domain(name)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(
    st.lists(labels, min_size=1, max_size=3),
    st.integers(min_value=0, max_value=3),
    st.sampled_from(SUPPORTED_TLDS),
)
@example(["foo"], 1, "com")  # reported: "foo..com" was refused as "a subdomain"
def test_an_empty_part_between_dots_is_not_a_valid_domain_name(
    parts: list[str], gap: int, tld: str
) -> None:
    # Two dots in a row anywhere before the ending: the reason is the typo, never "a subdomain".
    figures.add("bad input", "domain_validator_cases", 1)
    pieces = [*parts, tld]
    pieces.insert(min(gap, len(parts)), "")
    with pytest.raises(DomainNameError) as refused:
        validate_domain(".".join(pieces))
    assert "not a valid domain name" in str(refused.value)
    assert "subdomain" not in str(refused.value)
