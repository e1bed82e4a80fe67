"""Sign in (throttled, session regenerated, safe ``next``) and sign out."""

from __future__ import annotations

from flask import flash
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_login import login_required
from flask_login import login_user
from flask_login import logout_user

from core.crud import get_user_by_email
from core.crud import normalize_email
from core.passwords import verify_password
from portal.auth import bp
from portal.auth.forms import LoginForm
from portal.db import get_db
from portal.extensions import PortalUser
from portal.security import clear_failed_logins
from portal.security import client_ip
from portal.security import login_throttle
from portal.security import record_failed_login
from portal.security import regenerate_session
from portal.security import safe_next


def landing_url(user: PortalUser) -> str:
    """Where a user goes after signing in without a ``next``."""
    return url_for("admin.cohort") if user.is_admin else url_for("dashboard.home")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Show the sign-in form and sign the user in."""
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
        message = (
            f"Too many failed sign-ins. Try again in {throttle.minutes} "
            f"minute{'s' if throttle.minutes != 1 else ''}."
        )
        response = make_response(render_template("auth/login.html", form=form, error=message), 429)
        response.headers["Retry-After"] = str(throttle.retry_after_s)
        return response
    user = get_user_by_email(session=db, email=email)
    # verify_password(None, ...) costs the same as a real check: no user enumeration by timing.
    ok = verify_password(user.password_hash if user else None, form.password.data or "")
    if not ok or user is None or not user.is_active:
        record_failed_login(db, email=email, ip=ip)
        db.commit()
        return render_template("auth/login.html", form=form, error="Wrong email or password."), 401
    clear_failed_logins(db, email=email)
    db.commit()
    portal_user = PortalUser(user.id, user.email, user.name, user.role)
    regenerate_session()
    login_user(portal_user)
    return redirect(safe_next(form.next.data) or landing_url(portal_user))


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    """Sign out and forget the session."""
    logout_user()
    regenerate_session()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
