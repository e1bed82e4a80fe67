"""Admin forms: tiers and refunds (amounts are validated and converted to cents here)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms import IntegerField
from wtforms import RadioField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional
from wtforms.validators import Regexp
from wtforms.validators import ValidationError

from core.pricing import PricingError
from core.pricing import parse_money


def _money(_form: Any, field: Any) -> None:
    try:
        field.cents = parse_money(field.data or "")
    except PricingError as exc:
        raise ValidationError(str(exc)) from None


class TierForm(FlaskForm):  # type: ignore[misc]
    """Create or edit a package."""

    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    slug = StringField(
        "Slug",
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
    setup = StringField("Setup fee (USD)", validators=[DataRequired(), _money])
    monthly = StringField("Monthly fee (USD)", validators=[DataRequired(), _money])
    active = BooleanField("Offered to students", default=True)

    def validate_monthly(self, field: Any) -> None:
        """A subscription needs a monthly price above zero."""
        if getattr(field, "cents", 0) <= 0:
            raise ValidationError("The monthly fee must be more than zero.")


# What happens to the order after a refund: always chosen by the admin, never defaulted.
KEEP_ORDER = "keep"
CANCEL_ORDER = "cancel"


class RefundForm(FlaskForm):  # type: ignore[misc]
    """Refund all or part of a provision's payment, deciding explicitly what happens to the order."""

    amount = StringField("Amount (USD, empty = everything)", validators=[Optional(), _money])
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
