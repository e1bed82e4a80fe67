"""Sign-in, second-step, forgotten-password and new-password forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField
from wtforms import HiddenField
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import Length
from wtforms.validators import Regexp

from portal.auth.policy import MAX_PASSWORD_LENGTH

# No control characters in an address (PostgreSQL text cannot even hold NUL): a 400, not a 500.
PRINTABLE = Regexp(r"^[^\x00-\x1f\x7f]*$", message="Enter a valid email address.")


class LoginForm(FlaskForm):  # type: ignore[misc]
    """Email and password, plus where to go afterwards."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254), PRINTABLE])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    next = HiddenField()


class SecondStepForm(FlaskForm):  # type: ignore[misc]
    """A code from the authenticator app, or one of the recovery codes."""

    code = StringField(
        "Code",
        validators=[
            DataRequired(),
            Length(max=40),
            Regexp(r"^[A-Za-z0-9 -]*$", message="Enter the 6-digit code or a recovery code."),
        ],
    )


class ForgotPasswordForm(FlaskForm):  # type: ignore[misc]
    """The address to send a reset link to."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254), PRINTABLE])


class NewPasswordForm(FlaskForm):  # type: ignore[misc]
    """A new password, typed twice (the policy is checked by the view, with the account)."""

    password = PasswordField(
        "New password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)]
    )
    confirm = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("password", message="The two passwords differ.")],
    )
