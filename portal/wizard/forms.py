"""Wizard forms: the package choice (shared with the upgrade) and the mailbox names.

The domain step's form lives with its handler in portal/wizard/domain_step.py. A refused
form writes nothing: the views save the draft only from a form that validated.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any
from typing import TypeVar

from flask import request
from flask_wtf import FlaskForm
from wtforms import Field
from wtforms import RadioField
from wtforms import SelectField
from wtforms import StringField
from wtforms.validators import AnyOf
from wtforms.validators import ValidationError

from core.forwarding import WebsiteError
from core.forwarding import clean_website
from core.mailboxes import PATTERNS
from core.mailboxes import MailboxNameError
from core.mailboxes import usernames_for
from core.mailboxes import validate_sender_name
from core.models import Tier

F = TypeVar("F", bound=FlaskForm)


def posted(form_class: type[F], **data: Any) -> F:
    """The form filled from the posted fields (POST) or from ``data`` (GET).

    Only url-encoded or multipart fields count: a JSON body is not a form here (as before).
    """
    if request.method == "POST":
        return form_class(formdata=request.form)
    return form_class(formdata=None, data=data)


class TierChoiceForm(FlaskForm):  # type: ignore[misc]
    """Choose one package out of those offered (the view sets the offer with ``offer``)."""

    refusal = "Choose one of the packages."
    tier_id = RadioField("Package", coerce=str, validate_choice=False)

    def offer(self, tiers: Sequence[Tier]) -> None:
        """Offer exactly these packages."""
        self.tier_id.choices = [(str(tier.id), tier.name) for tier in tiers]

    def validate_tier_id(self, field: Field) -> None:
        """Only an offered package may be chosen."""
        if field.data not in {value for value, _label in field.choices or ()}:
            raise ValidationError(self.refusal)

    @property
    def chosen(self) -> int:
        """The chosen package's id (after validation)."""
        return int(self.tier_id.data)


def _sender_name(part: str) -> Any:
    """Validator: this half of the sender name passes core's rules, message and all."""

    def check(_form: Any, field: Field) -> None:
        # validate_sender_name checks both halves; pair this one with a valid other half so the
        # error (if any) is about this field alone.
        first, last = (field.data or "", "Keen") if part == "first" else ("Tim", field.data or "")
        try:
            validate_sender_name(first, last)
        except MailboxNameError as exc:
            raise ValidationError(str(exc)) from None

    return check


def _draft() -> dict[str, Any]:
    from portal.wizard import state  # imported here: state is the views' module, not the forms'

    return state.load()


def _website(_form: Any, field: Field) -> None:
    """Validator: an http(s) address that is none of the draft's cold domains (core.forwarding)."""
    try:
        field.data = clean_website(field.data, _draft()["domains"]) or ""
    except WebsiteError as exc:
        raise ValidationError(str(exc)) from None


class MailboxesForm(FlaskForm):  # type: ignore[misc]
    """Sender name and one address pattern per mailbox (fields ``pattern_0`` ... ``pattern_N``)."""

    first_name = StringField("Sender first name", default="", validators=[_sender_name("first")])
    last_name = StringField("Sender last name", default="", validators=[_sender_name("last")])
    # Optional; where the cold domains forward. Its default is the draft's, so a GET shows it.
    website = StringField(default=lambda: _draft()["forward_to"] or "", validators=[_website])
    action = StringField(default="preview")  # back, preview or continue
    pattern_count = 0  # set by mailboxes_form

    def pattern_fields(self) -> list[Field]:
        """The pattern selects, in mailbox order."""
        return [self[f"pattern_{i}"] for i in range(self.pattern_count)]

    def validate(self, extra_validators: Any = None) -> bool:
        """Fields first, then the addresses the patterns make for this name."""
        if not super().validate(extra_validators):
            return False
        patterns: list[str] = []
        for field in self.pattern_fields():
            patterns.append(field.data)
            try:
                usernames_for(patterns, self.first_name.data, self.last_name.data)
            except MailboxNameError as exc:
                # Shown next to the first pattern whose address is unusable or repeated.
                field.errors.append(str(exc))
                return False
        return True

    def draft_fields(self, draft: dict[str, Any]) -> dict[str, Any]:
        """The draft fields this form sets; unlisted patterns keep the draft's choice."""
        kept = list(draft["patterns"]) + [""] * self.pattern_count
        return {
            "forward_to": self.website.data or None,
            "first_name": (self.first_name.data or "")[:100],
            "last_name": (self.last_name.data or "")[:100],
            "patterns": [
                field.data if field.data in PATTERNS else kept[i]
                for i, field in enumerate(self.pattern_fields())
            ],
        }


@cache
def mailboxes_form(count: int) -> type[MailboxesForm]:
    """The mailbox form class for a package with ``count`` mailboxes per domain."""
    fields: dict[str, Any] = {
        f"pattern_{i}": SelectField(
            f"Address pattern {i + 1}",
            choices=list(PATTERNS),
            validate_choice=False,
            validators=[
                AnyOf(list(PATTERNS), message="Choose one of the listed address patterns.")
            ],
        )
        for i in range(count)
    }
    return type(f"MailboxesForm{count}", (MailboxesForm,), {"pattern_count": count, **fields})
