"""Admin forms: tiers, refunds, cohorts and bare actions (amounts are parsed into cents here)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField
from wtforms import DateField
from wtforms import Field
from wtforms import HiddenField
from wtforms import IntegerField
from wtforms import RadioField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired
from wtforms.validators import InputRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional
from wtforms.validators import Regexp
from wtforms.validators import ValidationError
from wtforms.widgets import TextInput

from core.pricing import PricingError
from core.pricing import parse_money

# Stripe's largest unit_amount: a price above it would be refused (or overflow the column).
MAX_PRICE_CENTS = 99_999_999
# A replacement's fee is a one-time charge for one domain: anything above this is a typo.
MAX_REPLACEMENT_FEE_CENTS = 100_000


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _stripe_max(_form: Any, field: Any) -> None:
    if field.data is not None and field.data > MAX_PRICE_CENTS:
        raise ValidationError("Stripe accepts at most $999,999.99.")


class MoneyField(Field):  # type: ignore[misc]
    """A dollar amount typed as text ("97", "97.50", "$1,234") whose data is in cents."""

    widget = TextInput()

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Parse the submitted text; empty input leaves ``data`` None for the validators."""
        self.data = None
        # JSON bodies may carry numbers; the text of a number parses like the typed amount.
        text = str(valuelist[0]) if valuelist else ""
        if not text.strip():
            return
        try:
            self.data = parse_money(text)
        except PricingError as exc:
            raise ValueError(str(exc)) from None
        except ArithmeticError:
            # Decimal cannot round an amount this large to cents ("1e30").
            raise ValueError("Enter an amount such as 97 or 97.50.") from None

    def _value(self) -> str:
        if self.raw_data:
            return str(self.raw_data[0])
        return f"{self.data / 100:.2f}" if self.data is not None else ""


class TierForm(FlaskForm):  # type: ignore[misc]
    """Create or edit a package; field names match Tier's columns so ``populate_obj`` fills it."""

    name = StringField("Name", filters=[_strip], validators=[DataRequired(), Length(max=100)])
    slug = StringField(
        "Slug",
        filters=[_strip],
        validators=[
            DataRequired(),
            Length(max=50),
            Regexp(r"^[a-z0-9][a-z0-9-]*$", message="Use lower-case letters, digits and hyphens."),
        ],
    )
    domain_count = IntegerField("Domains", validators=[DataRequired(), NumberRange(min=1, max=100)])
    mailboxes_per_domain = IntegerField(
        "Mailboxes per domain",
        default=2,
        validators=[DataRequired(), NumberRange(min=1, max=5, message="Zapmail allows 1 to 5.")],
    )
    # The HTML names stay "setup" and "monthly"; the attributes are the columns they fill.
    setup_cents = MoneyField(
        "Setup fee (USD)",
        name="setup",
        validators=[InputRequired(), _stripe_max],
    )
    monthly_cents = MoneyField(
        "Monthly fee (USD)",
        name="monthly",
        validators=[InputRequired(), _stripe_max],
    )
    active = BooleanField("Offered to students", default=True)
    # Burned-domain replacements (core/replacements.py): free ones per 30 days, then the fee.
    replacements_included = IntegerField(
        "Included replacements per 30 days",
        default=1,
        validators=[InputRequired(), NumberRange(min=0, max=12, message="Enter 0 to 12.")],
    )
    replacement_fee_cents = MoneyField(
        "Fee per further replacement (USD)",
        name="replacement_fee",
        default=2900,
        validators=[
            InputRequired(),
            NumberRange(min=0, max=MAX_REPLACEMENT_FEE_CENTS, message="Enter $0 to $1,000."),
        ],
    )

    def validate_monthly_cents(self, field: Any) -> None:
        """A subscription needs a monthly price above zero."""
        if field.data is not None and field.data <= 0:
            raise ValidationError("The monthly fee must be more than zero.")


# What happens to the order after a refund: always chosen by the admin, never defaulted.
KEEP_ORDER = "keep"
CANCEL_ORDER = "cancel"


class RefundForm(FlaskForm):  # type: ignore[misc]
    """Refund all or part of a provision's payment, deciding explicitly what happens to the order."""

    amount = MoneyField("Amount (USD, empty = everything)", validators=[Optional()])
    reason = TextAreaField(
        "Reason (for the audit log)", validators=[DataRequired(), Length(max=500)]
    )
    # No default: a refund that leaves the subscription billing must be a decision, not an
    # unticked box. (A cancelled order needs no choice; the view checks that.)
    cancel_subscription = RadioField(
        "After the refund",
        choices=[
            SelectChoice(KEEP_ORDER, "Keep the order running (the subscription keeps billing)"),
            SelectChoice(CANCEL_ORDER, "Cancel the subscription and the order"),
        ],
        validate_choice=False,
    )


class ConfirmForm(FlaskForm):  # type: ignore[misc]
    """A bare POST form: the CSRF token is its content."""


class NoteForm(FlaskForm):  # type: ignore[misc]
    """An action with an optional note for the audit log."""

    note = StringField("Note", validators=[Optional(), Length(max=500)])


class MoveForm(FlaskForm):  # type: ignore[misc]
    """Move a tier up or down in the list."""

    direction = StringField(validators=[DataRequired(), Regexp(r"^(up|down)$")])


# No control characters in a name (PostgreSQL text cannot even hold NUL): a 400, not a 500.
NO_CONTROL = Regexp(r"^[^\x00-\x1f\x7f]*$", message="Remove the control characters.")
# A pasted (or previewed) student list: 500 rows of a few dozen characters fit many times over.
MAX_CSV_CHARS = 500_000


class CohortForm(FlaskForm):  # type: ignore[misc]
    """A new cohort: its name, first day and instructor (field names match Cohort's columns)."""

    name = StringField(
        "Name", filters=[_strip], validators=[DataRequired(), Length(max=100), NO_CONTROL]
    )
    starts_on = DateField("Starts on", validators=[DataRequired()])
    instructor = StringField(
        "Instructor", filters=[_strip], validators=[DataRequired(), Length(max=200), NO_CONTROL]
    )


class ImportForm(FlaskForm):  # type: ignore[misc]
    """A student list as an uploaded CSV file or pasted text; ``confirm`` imports a preview."""

    csv_file = FileField("CSV file")
    csv_text = TextAreaField("Or paste its lines", validators=[Length(max=MAX_CSV_CHARS)])
    confirm = HiddenField()


class ReplaceDomainForm(FlaskForm):  # type: ignore[misc]
    """An admin's replacement of a live domain by a new name (checked available by the view)."""

    name = StringField(
        "New domain",
        filters=[_strip],
        validators=[DataRequired(message="Enter the new domain."), Length(max=253), NO_CONTROL],
    )
