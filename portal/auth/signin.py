"""Finishing a sign-in: the half-signed-in state between an admin's two steps, then the session.

After the right password an admin is only *pending*: the signed cookie names them for a few
minutes, but flask-login knows nobody, so every page that needs a user (every admin page among
them) answers as to an anonymous visitor. Only the second step starts a server-side session, and
it records how that step was passed; the session loader refuses admin sessions without one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from flask import session as flask_session
from flask import url_for
from flask_login import login_user
from sqlalchemy.orm import Session

from core.models import Role
from core.models import User
from portal.auth.sessions import start_session
from portal.extensions import PortalUser
from portal.security import audit
from portal.security import regenerate_session
from portal.security import safe_next

PENDING_KEY = "second_step"
# Long enough to open an authenticator app (or find the recovery codes), short enough that a
# cookie left on a shared machine after the password step soon stops asking for a code.
PENDING_TTL_S = 300


def landing_url(user: PortalUser) -> str:
    """Where a user goes after signing in without a ``next``."""
    return url_for("admin.cohort") if user.is_admin else url_for("dashboard.home")


def needs_second_step(user: User) -> bool:
    """Whether this account signs in in two steps (admins do)."""
    return user.role == Role.ADMIN.value


def _fingerprint(password_hash: str) -> str:
    # A password changed meanwhile (a reset) voids a pending sign-in made with the old one.
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def hold_for_second_step(user: User, next_target: str | None) -> None:
    """Remember, in a fresh session, that ``user`` passed the password step (nothing more)."""
    regenerate_session()
    flask_session[PENDING_KEY] = {
        "user_id": user.id,
        "since": time.time(),
        "next": safe_next(next_target) or "",
        "pw": _fingerprint(user.password_hash),
    }


def pending_user(db: Session) -> User | None:
    """The admin half-way through signing in from this browser, or None (then forgotten)."""
    held: Any = flask_session.get(PENDING_KEY)
    user = None
    try:
        if time.time() - float(held["since"]) < PENDING_TTL_S:
            user = db.get(User, int(held["user_id"]))
    except (TypeError, KeyError, ValueError):
        user = None
    if (
        user is None
        or not user.is_active
        or not needs_second_step(user)
        or not hmac.compare_digest(_fingerprint(user.password_hash), str(held.get("pw", "")))
    ):
        flask_session.pop(PENDING_KEY, None)
        return None
    return user


def pending_next() -> str | None:
    """Where the pending sign-in was going (already checked to be a same-site path)."""
    held: Any = flask_session.get(PENDING_KEY) or {}
    return safe_next(held.get("next")) if isinstance(held, dict) else None


def sign_in(db: Session, user: User, *, second_factor: str | None = None) -> PortalUser:
    """Start ``user``'s session in a fresh cookie, audit it, commit, and sign them in."""
    regenerate_session()
    portal_user = start_session(db, user, second_factor)
    audit(
        db,
        "sign_in",
        target_type="user",
        target_id=user.id,
        actor=user.id,
        details={"second_factor": second_factor} if second_factor else None,
    )
    db.commit()
    login_user(portal_user)
    return portal_user
