"""Server-side prices: what a package costs, what an upgrade costs, how money is displayed.

Amounts are integer cents. Nothing here trusts a browser: the portal computes every charge from
the tier rows with these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP
from decimal import Decimal
from typing import Protocol

# Cold-email volume we plan with per warmed-up mailbox and day (docs/architecture.md 5).
DAILY_SENDS_PER_MAILBOX = 30
# The setup fee covers each domain's first year up to this price; dearer names are refused.
MAX_INCLUDED_DOMAIN_PRICE_CENTS = 3000
CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


class TierLike(Protocol):
    """The tier fields pricing needs (core.models.Tier satisfies it)."""

    domain_count: int
    mailboxes_per_domain: int
    setup_cents: int
    monthly_cents: int
    currency: str


class PricingError(ValueError):
    """A requested purchase is not allowed (e.g. an upgrade to a smaller package)."""


@dataclass(frozen=True)
class OrderQuote:
    """What a new student pays at checkout."""

    setup_cents: int
    monthly_cents: int
    currency: str
    domain_count: int
    mailbox_count: int

    @property
    def due_today_cents(self) -> int:
        """First invoice: the setup fee plus the first month."""
        return self.setup_cents + self.monthly_cents


@dataclass(frozen=True)
class UpgradeQuote:
    """What moving to a larger package costs and adds."""

    extra_domains: int
    extra_mailboxes: int
    extra_setup_cents: int
    old_monthly_cents: int
    new_monthly_cents: int
    currency: str

    @property
    def monthly_difference_cents(self) -> int:
        """How much more the subscription costs per month."""
        return self.new_monthly_cents - self.old_monthly_cents


def cents_from_decimal(amount: Decimal | None) -> int | None:
    """Convert a vendor price in currency units (Decimal) to cents, rounding half up."""
    if amount is None or not amount.is_finite():
        return None
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def daily_capacity(tier: TierLike) -> int:
    """Approximate cold emails per day once every mailbox is warmed up."""
    return tier.domain_count * tier.mailboxes_per_domain * DAILY_SENDS_PER_MAILBOX


def quote_order(tier: TierLike) -> OrderQuote:
    """Price a new order for ``tier``."""
    return OrderQuote(
        setup_cents=tier.setup_cents,
        monthly_cents=tier.monthly_cents,
        currency=tier.currency,
        domain_count=tier.domain_count,
        mailbox_count=tier.domain_count * tier.mailboxes_per_domain,
    )


def quote_upgrade(current: TierLike, target: TierLike) -> UpgradeQuote:
    """Price a move from ``current`` to the larger ``target``; raise PricingError otherwise."""
    if target.domain_count <= current.domain_count:
        raise PricingError("An upgrade must add domains; pick a larger package.")
    if target.currency != current.currency:
        raise PricingError("Packages in different currencies cannot be exchanged.")
    extra_domains = target.domain_count - current.domain_count
    return UpgradeQuote(
        extra_domains=extra_domains,
        extra_mailboxes=extra_domains * target.mailboxes_per_domain,
        # The student already paid the smaller setup fee: charge only the difference.
        extra_setup_cents=max(0, target.setup_cents - current.setup_cents),
        old_monthly_cents=current.monthly_cents,
        new_monthly_cents=target.monthly_cents,
        currency=target.currency,
    )


def prorated_cents(
    monthly_difference_cents: int, period_start: datetime, period_end: datetime, now: datetime
) -> int:
    """Estimate the proration for the rest of the billing period (Stripe computes the real one)."""
    total = (period_end - period_start).total_seconds()
    if total <= 0 or monthly_difference_cents <= 0:
        return 0
    left = min(max((period_end - now).total_seconds(), 0.0), total)
    return int(
        (Decimal(monthly_difference_cents) * Decimal(left) / Decimal(total)).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    )


def domain_price_allowed(price_cents: int | None, *, is_premium: bool = False) -> bool:
    """Whether the setup fee covers a domain at this first-year price."""
    if is_premium or price_cents is None:
        return False
    return 0 < price_cents <= MAX_INCLUDED_DOMAIN_PRICE_CENTS


def format_money(cents: int, currency: str = "usd") -> str:
    """Return ``$1,234.50`` style text (whole amounts without decimals: ``$97``)."""
    symbol = CURRENCY_SYMBOLS.get(currency.lower(), currency.upper() + " ")
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    text = f"{whole:,}" if rest == 0 else f"{whole:,}.{rest:02d}"
    return f"{sign}{symbol}{text}"


def parse_money(text: str) -> int:
    """Parse an admin-entered amount such as ``97``, ``97.5`` or ``1,234.50`` into cents."""
    cleaned = text.strip().lstrip("$€£").replace(",", "").strip()
    try:
        value = Decimal(cleaned)
    except ArithmeticError:
        raise PricingError("Enter an amount such as 97 or 97.50.") from None
    if not value.is_finite() or value < 0:
        raise PricingError("Enter an amount of zero or more.")
    if value != value.quantize(Decimal("0.01")):
        raise PricingError("Use at most two decimals.")
    cents = cents_from_decimal(value)
    assert cents is not None
    return cents
