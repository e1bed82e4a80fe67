"""Sign in (throttled, session regenerated, safe ``next``, hash upgraded) and sign out; audited."""

from __future__ import annotations

from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_login import login_required
from flask_login import logout_user

from core.crud import get_user_by_email
from core.crud import normalize_email
from core.passwords import needs_rehash
from core.passwords import rehash_password
from core.passwords import verify_password
from portal.auth import bp
from portal.auth.forms import LoginForm
from portal.auth.sessions import end_session
from portal.auth.signin import hold_for_second_step
from portal.auth.signin import landing_url
from portal.auth.signin import needs_second_step
from portal.auth.signin import sign_in
from portal.auth.throttle import record_failure
from portal.auth.throttle import too_many
from portal.auth.totp import is_enrolled
from portal.db import get_db
from portal.security import audit
from portal.security import clear_failed_logins
from portal.security import client_ip
from portal.security import login_throttle
from portal.security import regenerate_session
from portal.security import safe_next


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Show the sign-in form and sign the user in (an admin goes on to the second step)."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
        if current_user.is_authenticated:
            return redirect(safe_next(request.args.get("next")) or landing_url(current_user))
        return render_template("auth/login.html", form=form)
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), 400
    db = get_db()
    email = normalize_email(form.email.data or "")
    ip = client_ip()
    throttle = login_throttle(db, email=email, ip=ip)
    if throttle.blocked:
        return too_many("auth/login.html", throttle, "failed sign-ins", form=form)
    user = get_user_by_email(session=db, email=email)
    password = form.password.data or ""
    method = current_app.config["PASSWORD_HASH_METHOD"]
    # verify_password(None, ...) costs the same as a real check: no user enumeration by timing.
    ok = verify_password(user.password_hash if user else None, password, method=method)
    if not ok or user is None or not user.is_active:
        if record_failure(db, email=email, ip=ip):
            # One audit row per burst: the failure that trips the throttle.
            audit(
                db,
                "sign_in_throttled",
                target_type="user",
                target_id=user.id if user else None,
                actor=None,
                details={"email": email},
            )
        db.commit()
        return render_template("auth/login.html", form=form, error="Wrong email or password."), 401
    clear_failed_logins(db, email=email)
    if needs_rehash(user.password_hash, method=method):
        # Hashed with older parameters: the plaintext is at hand only now, so upgrade it now.
        user.password_hash = rehash_password(password, method=method)
    if current_user.is_authenticated:
        end_session(db, current_user.session_token, "signed_in_again")
    if needs_second_step(user):
        hold_for_second_step(user, form.next.data)
        db.commit()
        enrolled = is_enrolled(db, user.id)
        return redirect(url_for("auth.two_factor" if enrolled else "auth.two_factor_setup"))
    portal_user = sign_in(db, user)
    return redirect(safe_next(form.next.data) or landing_url(portal_user))


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    """Sign out: the server ends this session, so a copy of the cookie stops working too."""
    db = get_db()
    user_id = current_user.id  # read before writing (loading it may touch the session row)
    end_session(db, current_user.session_token, "sign_out")
    audit(db, "sign_out", target_type="user", target_id=user_id, actor=user_id)
    db.commit()
    logout_user()
    regenerate_session()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
