"""core.pricing: order and upgrade quotes, proration estimate, money parsing and display."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from decimal import Decimal

import pytest

from core.pricing import PricingError
from core.pricing import cents_from_decimal
from core.pricing import daily_capacity
from core.pricing import domain_price_allowed
from core.pricing import format_money
from core.pricing import parse_money
from core.pricing import prorated_cents
from core.pricing import quote_order
from core.pricing import quote_upgrade


@dataclass
class T:
    domain_count: int
    setup_cents: int
    monthly_cents: int
    mailboxes_per_domain: int = 2
    currency: str = "usd"


STARTER, GROWTH, SCALE = T(3, 9700, 4700), T(5, 14700, 7700), T(10, 24700, 12700)


def test_order_quote() -> None:
    quote = quote_order(STARTER)
    assert (quote.setup_cents, quote.monthly_cents, quote.due_today_cents) == (9700, 4700, 14400)
    assert (quote.domain_count, quote.mailbox_count) == (3, 6)
    assert daily_capacity(STARTER) == 180


def test_upgrade_quote_charges_only_differences() -> None:
    quote = quote_upgrade(STARTER, SCALE)
    assert (quote.extra_domains, quote.extra_mailboxes) == (7, 14)
    assert quote.extra_setup_cents == 15000
    assert quote.monthly_difference_cents == 8000


def test_upgrade_never_refunds_setup_and_never_shrinks() -> None:
    cheap_big = T(5, 5000, 9000)
    assert quote_upgrade(STARTER, cheap_big).extra_setup_cents == 0
    with pytest.raises(PricingError):
        quote_upgrade(GROWTH, STARTER)
    with pytest.raises(PricingError):
        quote_upgrade(STARTER, T(5, 1, 1, currency="eur"))


def test_proration_estimate() -> None:
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    assert prorated_cents(3000, start, end, datetime(2026, 11, 16, tzinfo=UTC)) == 1500
    assert prorated_cents(3000, start, end, datetime(2027, 1, 1, tzinfo=UTC)) == 0
    assert prorated_cents(-100, start, end, start) == 0


@pytest.mark.parametrize(
    "value,cents",
    [(Decimal("12.99"), 1299), (Decimal("0.005"), 1), (None, None), (Decimal("NaN"), None)],
)
def test_cents_from_vendor_prices(value: Decimal | None, cents: int | None) -> None:
    assert cents_from_decimal(value) == cents


def test_domain_price_cap() -> None:
    assert domain_price_allowed(1299)
    assert domain_price_allowed(3000)
    assert not domain_price_allowed(3001)
    assert not domain_price_allowed(0)
    assert not domain_price_allowed(None)
    assert not domain_price_allowed(1299, is_premium=True)


@pytest.mark.parametrize(
    "cents,text",
    [(9700, "$97"), (9750, "$97.50"), (123456, "$1,234.56"), (-500, "-$5"), (5, "$0.05")],
)
def test_format_money(cents: int, text: str) -> None:
    assert format_money(cents) == text


@pytest.mark.parametrize(
    "text,cents", [("97", 9700), ("97.5", 9750), ("$1,234.50", 123450), ("0", 0)]
)
def test_parse_money(text: str, cents: int) -> None:
    assert parse_money(text) == cents


@pytest.mark.parametrize("text", ["ten", "-1", "1.234", "inf", ""])
def test_parse_money_refuses(text: str) -> None:
    with pytest.raises(PricingError):
        parse_money(text)
