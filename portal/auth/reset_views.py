"""Password reset by email: ask for a link (one answer for every address), then set a password.

The link's token travels once in the URL and is moved at once into the signed session (out of
the address bar, history and Referer); the DB keeps only its hash; the email is a queued
notification row (sent by the sweep, never inside the request). Setting the password uses the
token up, retires the user's other links and ends every session of the account.
"""

from __future__ import annotations

from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session as flask_session
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_login import logout_user
from sqlalchemy.orm import Session

from core.accounts import revoke_sessions
from core.crud import get_user_by_email
from core.crud import normalize_email
from core.models import Notification
from core.models import PasswordToken
from core.models import TokenPurpose
from core.models import User
from core.passwords import hash_password
from portal.auth import bp
from portal.auth.forms import ForgotPasswordForm
from portal.auth.forms import NewPasswordForm
from portal.auth.policy import password_problem
from portal.auth.sessions import end_session
from portal.auth.throttle import record_reset_request
from portal.auth.throttle import reset_throttle
from portal.auth.throttle import too_many
from portal.auth.tokens import find_token
from portal.auth.tokens import issue_token
from portal.auth.tokens import retire_tokens
from portal.auth.tokens import scrub_link
from portal.auth.tokens import use_token
from portal.db import get_db
from portal.security import audit
from portal.security import clear_failed_logins
from portal.security import client_ip
from portal.security import regenerate_session

RESET_SESSION_KEY = "reset_token"
MAX_TOKEN_LENGTH = 200


def reset_email_key(token_id: int) -> str:
    """The notification key of a reset email (never the token: keys show in file names)."""
    return f"password-reset:{token_id}"


@bp.route("/forgot", methods=["GET", "POST"])
def forgot_password() -> ResponseReturnValue:
    """Ask for a reset link; the answer is the same whether or not the address has an account."""
    form = ForgotPasswordForm()
    if request.method == "GET":
        return render_template("auth/forgot.html", form=form)
    if not form.validate_on_submit():
        return render_template("auth/forgot.html", form=form), 400
    db = get_db()
    email = normalize_email(form.email.data or "")
    ip = client_ip()
    throttle = reset_throttle(db, email=email, ip=ip)
    if throttle.blocked:
        return too_many("auth/forgot.html", throttle, "reset requests", form=form)
    record_reset_request(db, email=email, ip=ip)
    user = get_user_by_email(session=db, email=email)
    emailed = user is not None and user.is_active
    if user is not None and user.is_active:
        _queue_reset_email(db, user, ip)
    # Admins see every request, for an address with an account or not (the page never says).
    audit(
        db,
        "password_reset_requested",
        target_type="user",
        target_id=user.id if user else None,
        actor=None,
        details={"email": email, "emailed": emailed},
    )
    db.commit()
    return render_template("auth/forgot.html", form=None, sent=True)


def _queue_reset_email(db: Session, user: User, ip: str) -> None:
    ttl_s = float(current_app.config["PASSWORD_RESET_TTL_S"])
    row, token = issue_token(db, user, TokenPurpose.RESET, ttl_s=ttl_s, ip=ip)
    link = current_app.config["PUBLIC_URL"] + url_for("auth.reset_password", token=token)
    minutes = max(1, round(ttl_s / 60))
    db.add(
        Notification(
            key=reset_email_key(row.id),
            recipient=user.email,
            subject="Reset your Outbound Portal password",
            body=(
                "Someone, hopefully you, asked to reset the password of your Outbound Portal "
                "account.\n\n"
                f"Choose a new password here (the link works once, for {minutes} minutes):\n"
                f"{link}\n\n"
                "If you did not ask, ignore this email: your password stays as it is."
            ),
        )
    )


def linked_token(
    session_key: str, purpose: TokenPurpose, endpoint: str
) -> tuple[ResponseReturnValue | None, PasswordToken | None, str]:
    """The live token a mailed link carried: a redirect on the link itself, else its row and text.

    The link's token moves into the signed session and the browser goes to the clean URL, so the
    token leaves the address bar (and any Referer) at once; a missing or dead token gives None.
    """
    token = request.args.get("token")
    if request.method == "GET" and token:
        flask_session[session_key] = token[:MAX_TOKEN_LENGTH]
        return redirect(url_for(endpoint), 303), None, ""
    token = flask_session.get(session_key) or ""
    row = find_token(get_db(), token, purpose) if token else None
    if row is None:
        flask_session.pop(session_key, None)
    return None, row, token


@bp.route("/reset", methods=["GET", "POST"])
def reset_password() -> ResponseReturnValue:
    """Set a new password with a live reset link; every session of the account ends."""
    moved, row, token = linked_token(RESET_SESSION_KEY, TokenPurpose.RESET, "auth.reset_password")
    if moved is not None:
        return moved
    db = get_db()
    if row is None:
        return render_template("auth/reset.html", form=None), 400
    form = NewPasswordForm()
    if request.method == "GET":
        return render_template("auth/reset.html", form=form)
    if not form.validate_on_submit():
        return render_template("auth/reset.html", form=form), 400
    user = db.get(User, row.user_id)
    assert user is not None  # find_token joined it
    password = form.password.data or ""
    problem = password_problem(password, email=user.email)
    if problem:
        form.password.errors.append(problem)
        return render_template("auth/reset.html", form=form), 400
    # Read before any write: loading the user may touch its session row on another connection.
    own_session = current_user.session_token if current_user.is_authenticated else ""
    if not use_token(db, row):
        # The same link was just used from another tab: that submission won.
        return render_template("auth/reset.html", form=None), 400
    user.password_hash = hash_password(password, method=current_app.config["PASSWORD_HASH_METHOD"])
    retire_tokens(db, user.id, TokenPurpose.RESET)
    ended = revoke_sessions(db, user.id, "password_reset")
    audit(
        db,
        "password_reset_completed",
        target_type="user",
        target_id=user.id,
        actor=user.id,
        details={"sessions_ended": ended},
    )
    if own_session:  # this browser was signed in as someone else: that session ends too
        end_session(db, own_session, "sign_out")
    clear_failed_logins(db, email=user.email)
    scrub_link(db, reset_email_key(row.id), token)
    db.commit()
    logout_user()
    regenerate_session()
    flash("Your password is changed and every session signed out. Sign in with it.", "success")
    return redirect(url_for("auth.login"), 303)
