"""An admin's second step: enrol an authenticator app at first sign-in, then a code every time.

Both pages answer only a browser that has just passed the password step (portal/auth/signin.py);
wrong codes are throttled like passwords (on their own rows) and a burst is audited once.
Enrolment shows the secret (QR code, URI, and in groups of four), becomes active only when a code
from the app proves it, and then shows the ten recovery codes once.
"""

from __future__ import annotations

from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from core.models import User
from portal.auth import bp
from portal.auth.forms import SecondStepForm
from portal.auth.signin import landing_url
from portal.auth.signin import pending_next
from portal.auth.signin import pending_user
from portal.auth.signin import sign_in
from portal.auth.throttle import clear_wrong_codes
from portal.auth.throttle import record_wrong_code
from portal.auth.throttle import second_step_throttle
from portal.auth.throttle import too_many
from portal.auth.totp import accept_code
from portal.auth.totp import confirm
from portal.auth.totp import enrolment_secret
from portal.auth.totp import factor_of
from portal.auth.totp import grouped
from portal.auth.totp import is_enrolled
from portal.auth.totp import looks_like_recovery_code
from portal.auth.totp import provisioning_uri
from portal.auth.totp import qr_data_uri
from portal.auth.totp import recovery_codes_left
from portal.auth.totp import use_recovery_code
from portal.db import get_db
from portal.security import audit
from portal.security import client_ip

WRONG_CODE = "That code did not work. Check the time on your phone and try the newest code."
# Fewer left than this and the admin is told to have their second factor reset in time.
FEW_RECOVERY_CODES = 3


def _not_pending() -> ResponseReturnValue:
    # Nobody half-way through signing in here: a signed-in user goes home, anyone else signs in.
    if current_user.is_authenticated:
        return redirect(landing_url(current_user))
    return redirect(url_for("auth.login"))


def _wrong_code(db: Session, user: User, template: str, **context: object) -> ResponseReturnValue:
    if record_wrong_code(db, email=user.email, ip=client_ip()):
        audit(
            db,
            "two_factor_throttled",
            target_type="user",
            target_id=user.id,
            actor=None,
            details={"email": user.email},
        )
    db.commit()
    return render_template(template, error=WRONG_CODE, **context), 401


@bp.route("/2fa", methods=["GET", "POST"])
def two_factor() -> ResponseReturnValue:
    """The second step of an enrolled admin: a code from the app, or a recovery code."""
    db = get_db()
    user = pending_user(db)
    if user is None:
        return _not_pending()
    factor = factor_of(db, user.id)
    if factor is None or factor.confirmed_at is None:
        return redirect(url_for("auth.two_factor_setup"))
    form = SecondStepForm()
    if request.method == "GET":
        return render_template("auth/two_factor.html", form=form)
    if not form.validate_on_submit():
        return render_template("auth/two_factor.html", form=form), 400
    throttle = second_step_throttle(db, email=user.email, ip=client_ip())
    if throttle.blocked:
        return too_many("auth/two_factor.html", throttle, "wrong codes", form=form)
    code = form.code.data or ""
    recovery = looks_like_recovery_code(code)
    ok = use_recovery_code(db, user.id, code) if recovery else accept_code(db, factor, code)
    if not ok:
        return _wrong_code(db, user, "auth/two_factor.html", form=form)
    clear_wrong_codes(db, email=user.email)
    target = pending_next()
    if recovery:
        left = recovery_codes_left(db, user.id)
        audit(
            db,
            "recovery_code_used",
            target_type="user",
            target_id=user.id,
            actor=user.id,
            details={"left": left},
        )
    portal_user = sign_in(db, user, second_factor="recovery_code" if recovery else "totp")
    if recovery and left < FEW_RECOVERY_CODES:
        flash(
            f"You signed in with a recovery code; {left} left. Ask an operator to reset your "
            "second factor (infra reset-2fa) to enrol again and get new codes.",
            "warning",
        )
    return redirect(target or landing_url(portal_user))


@bp.route("/2fa/setup", methods=["GET", "POST"])
def two_factor_setup() -> ResponseReturnValue:
    """First sign-in of an admin: add the portal to an authenticator app, prove it with a code."""
    db = get_db()
    user = pending_user(db)
    if user is None:
        return _not_pending()
    if is_enrolled(db, user.id):
        return redirect(url_for("auth.two_factor"))
    secret = enrolment_secret(db, user)
    db.commit()  # the secret shown now is the one the next visit (or the code) checks against
    uri = provisioning_uri(secret, user.email)
    context = {"secret": grouped(secret), "uri": uri, "qr": qr_data_uri(uri), "email": user.email}
    form = SecondStepForm()
    if request.method == "GET":
        return render_template("auth/two_factor_setup.html", form=form, **context)
    if not form.validate_on_submit():
        return render_template("auth/two_factor_setup.html", form=form, **context), 400
    throttle = second_step_throttle(db, email=user.email, ip=client_ip())
    if throttle.blocked:
        return too_many("auth/two_factor_setup.html", throttle, "wrong codes", form=form, **context)
    factor = factor_of(db, user.id)
    assert factor is not None  # enrolment_secret made it
    if not accept_code(db, factor, form.code.data or ""):
        return _wrong_code(db, user, "auth/two_factor_setup.html", form=form, **context)
    clear_wrong_codes(db, email=user.email)
    codes = confirm(db, factor)
    audit(db, "two_factor_enrolled", target_type="user", target_id=user.id, actor=user.id)
    target = pending_next()
    portal_user = sign_in(db, user, second_factor="totp")
    return render_template(
        "auth/recovery_codes.html", codes=codes, next=target or landing_url(portal_user)
    )
