"""core.domains: validation in plain words and deterministic brand suggestions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domains import MAX_SUGGESTIONS
from core.domains import SUPPORTED_TLDS
from core.domains import DomainNameError
from core.domains import brand_label
from core.domains import normalize_domain
from core.domains import suggest_domains
from core.domains import validate_domain


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
