"""Accepting a cohort invitation: the student chooses a password, is signed in, starts the wizard.

Like a reset link (portal/auth/reset_views.py), the token travels once in the URL and moves at
once into the signed session (out of the address bar, history and Referer); the DB keeps only its
hash. Using it is a compare-and-set, retires the student's other invites, and takes the link out
of the queued email.
"""

from __future__ import annotations

from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_login import login_user

from core.accounts import revoke_sessions
from core.models import TokenPurpose
from core.models import User
from core.passwords import hash_password
from portal.auth import bp
from portal.auth.forms import NewPasswordForm
from portal.auth.invites import invite_email_key
from portal.auth.policy import password_problem
from portal.auth.reset_views import linked_token
from portal.auth.sessions import end_session
from portal.auth.sessions import start_session
from portal.auth.tokens import retire_tokens
from portal.auth.tokens import scrub_link
from portal.auth.tokens import use_token
from portal.db import get_db
from portal.security import audit
from portal.security import clear_failed_logins
from portal.security import regenerate_session

INVITE_SESSION_KEY = "invite_token"
PAGE = "auth/invite.html"


@bp.route("/invite", methods=["GET", "POST"])
def accept_invite() -> ResponseReturnValue:
    """Choose a first password with a live invitation link; then signed in, on to the wizard."""
    moved, row, token = linked_token(INVITE_SESSION_KEY, TokenPurpose.INVITE, "auth.accept_invite")
    if moved is not None:
        return moved
    db = get_db()
    if row is None:
        return render_template(PAGE, form=None), 400
    user = db.get(User, row.user_id)
    assert user is not None  # find_token joined it
    form = NewPasswordForm()
    if request.method == "GET":
        return render_template(PAGE, form=form, user=user)
    if not form.validate_on_submit():
        return render_template(PAGE, form=form, user=user), 400
    password = form.password.data or ""
    problem = password_problem(password, email=user.email)
    if problem:
        form.password.errors.append(problem)
        return render_template(PAGE, form=form, user=user), 400
    # Read before any write: loading the user may touch its session row on another connection.
    own_session = current_user.session_token if current_user.is_authenticated else ""
    if not use_token(db, row):
        # The same link was just used from another tab: that submission won.
        return render_template(PAGE, form=None), 400
    user.password_hash = hash_password(password, method=current_app.config["PASSWORD_HASH_METHOD"])
    retire_tokens(db, user.id, TokenPurpose.INVITE)
    revoke_sessions(db, user.id, "password_set")
    if own_session:  # this browser was signed in as someone else: that session ends
        end_session(db, own_session, "signed_in_again")
    clear_failed_logins(db, email=user.email)
    scrub_link(db, invite_email_key(row.id), token)
    regenerate_session()
    portal_user = start_session(db, user)
    login_user(portal_user)
    audit(db, "invite_accepted", target_type="user", target_id=user.id)
    db.commit()
    flash("Your password is set and you are signed in. Choose your package to begin.", "success")
    return redirect(url_for("wizard.start"), 303)
