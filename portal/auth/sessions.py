"""Server-side sessions: the cookie carries a random token, the app DB decides if it still works.

flask-login keeps ``PortalUser.get_id()`` in the signed cookie; that value is the session token,
and ``load_session_user`` (the user loader, run once per request) finds its row by SHA-256. A
revoked row, an idle or too old one, an admin's opened without the second step, or a disabled user
makes the request anonymous, so a cookie copied before sign-out is refused wherever it is replayed.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from core.accounts import new_token
from core.accounts import revoke_sessions
from core.accounts import token_hash
from core.db import utcnow
from core.models import Role
from core.models import User
from core.models import UserSession
from portal.auth import session_cache
from portal.db import database
from portal.db import get_db
from portal.extensions import PortalUser
from portal.security import client_ip
from portal.security import client_user_agent

# last_seen_at is written at most this often per session: a page polling progress.json every 3 s
# costs one UPDATE a minute, not twenty.
TOUCH_EVERY = timedelta(minutes=1)
# Ended sessions of a user are deleted at their next sign-in once this old (the audit log keeps
# sign-ins; the rows only serve revocation).
KEEP_ENDED = timedelta(days=30)

# Every signed-in request runs this query (progress.json every 3 s per open page): built once, on
# the tables rather than the entities, so a request pays for neither building it nor the ORM.
_s = UserSession.__table__
_u = User.__table__
SESSION_QUERY = (
    select(_u.c.id, _u.c.email, _u.c.name, _u.c.role, _s.c.created_at, _s.c.last_seen_at)
    .join_from(_s, _u, _s.c.user_id == _u.c.id)
    .where(
        _s.c.id == bindparam("sid"),
        _s.c.revoked_at.is_(None),
        _u.c.is_active.is_(True),
        # An admin's session counts only if its sign-in passed the second step: a session from
        # before 2FA, or of a student made admin since, is refused.
        or_(_u.c.role != Role.ADMIN.value, _s.c.second_factor.is_not(None)),
    )
)


def start_session(db: Session, user: User, second_factor: str | None = None) -> PortalUser:
    """Create the session row of a sign-in (committed by the caller); return the signed-in user.

    ``second_factor`` names how an admin passed the second step; admins' sessions need one.
    """
    now = utcnow()
    keep = max(KEEP_ENDED, timedelta(seconds=float(current_app.config["SESSION_ABSOLUTE_S"])))
    db.execute(
        delete(UserSession).where(
            UserSession.user_id == user.id, UserSession.created_at < now - keep
        )
    )
    token = new_token()
    db.add(
        UserSession(
            id=token_hash(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            ip=client_ip(),
            user_agent=client_user_agent(),
            second_factor=second_factor,
        )
    )
    return PortalUser(user.id, user.email, user.name, user.role, session_token=token)


def load_session_user(token: str) -> PortalUser | None:
    """flask-login's user loader: the session's user, or None if the session has ended."""
    if not token:
        return None
    sid = token_hash(token)
    cache = session_cache.for_request()
    mark = None
    if cache is not None:
        row = cache.get(sid)
        # A kept row still obeys the lifetimes; one due for its touch is read (and touched) again.
        if row is not None and _usable(row, utcnow()):
            return PortalUser(row.id, row.email, row.name, row.role, session_token=token)
        mark = cache.mark()
    row = get_db().connection().execute(SESSION_QUERY, {"sid": sid}).first()
    if row is None:
        return None
    now = utcnow()
    ended = _lifetime_over(row.created_at, row.last_seen_at, now)
    if ended:
        _write(sid, revoked_at=now, revoked_reason=ended)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        _write(sid, last_seen_at=now)
    elif cache is not None:
        cache.put(sid, row.id, row, mark)
    return PortalUser(row.id, row.email, row.name, row.role, session_token=token)


def _usable(row: Row[Any], now: datetime) -> bool:
    return (
        _lifetime_over(row.created_at, row.last_seen_at, now) is None
        and now - row.last_seen_at < TOUCH_EVERY
    )


def _lifetime_over(created_at: datetime, last_seen_at: datetime, now: datetime) -> str | None:
    config = current_app.config
    if now - created_at >= timedelta(seconds=float(config["SESSION_ABSOLUTE_S"])):
        return "absolute"
    if now - last_seen_at >= timedelta(seconds=float(config["SESSION_IDLE_S"])):
        return "idle"
    return None


def _write(sid: str, **values: object) -> None:
    # Its own short transaction: the loader may run in the middle of a view that has not
    # committed yet (or never will, on a GET), and the touch must not wait for it. Hence views
    # load current_user before they write user_sessions rows (else this would wait on their lock).
    with database().engine.begin() as conn:
        conn.execute(
            update(UserSession)
            .where(UserSession.id == sid, UserSession.revoked_at.is_(None))
            .values(**values)
        )


def end_session(db: Session, token: str, reason: str) -> None:
    """Revoke the one session behind ``token`` (sign-out; committed by the caller)."""
    db.execute(
        update(UserSession)
        .where(UserSession.id == token_hash(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )


def revoke_all_sessions(user_id: int, reason: str) -> int:
    """Sign ``user_id`` out everywhere, now (commits); return how many sessions ended."""
    db = get_db()
    count = revoke_sessions(db, user_id, reason)
    db.commit()
    return count
