"""Dashboard forms: the sender profile (names by core/mailboxes.py, picture by core/images.py)
and a burned domain's replacement."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField
from wtforms import StringField
from wtforms.validators import DataRequired

from core.images import Picture
from core.images import PictureError
from core.images import check_picture
from core.mailboxes import MailboxNameError
from core.mailboxes import SenderName
from core.mailboxes import validate_sender_name


class SenderProfileForm(FlaskForm):  # type: ignore[misc]
    """Sender first and last name and an optional new picture; there is no username field."""

    first_name = StringField("Sender first name")
    last_name = StringField("Sender last name")
    picture = FileField("Profile picture")

    name: SenderName | None = None
    upload: tuple[bytes, Picture] | None = None

    def validate(self, extra_validators: Any = None) -> bool:
        """Check both names with the wizard's rules and the picture by its bytes."""
        valid = bool(super().validate(extra_validators))
        try:
            self.name = validate_sender_name(self.first_name.data or "", self.last_name.data or "")
        except MailboxNameError as exc:
            # core names the half it refuses first: "First name ..." or "Last name ...".
            field = self.last_name if str(exc).startswith("Last") else self.first_name
            field.errors.append(str(exc))
            valid = False
        file = self.picture.data
        if file is not None and getattr(file, "filename", ""):
            # The request limit (portal/dashboard/profile.py) bounds what is read here.
            data = file.read()
            try:
                self.upload = (data, check_picture(data))
            except PictureError as exc:
                self.picture.errors.append(str(exc))
                valid = False
        return valid

    def too_large(self, message: str) -> None:
        """Show that the upload was refused before it could be read."""
        self.picture.errors = [message]


class ReplaceForm(FlaskForm):  # type: ignore[misc]
    """Confirm a burned domain's replacement by the new name the page showed."""

    new_domain = HiddenField(validators=[DataRequired(message="Pick the new domain first.")])


class RetryPaymentForm(FlaskForm):  # type: ignore[misc]
    """Try a replacement's payment again: the CSRF token is its content."""
