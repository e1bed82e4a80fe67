"""Account secrets at rest: random tokens stored as SHA-256, and ending a user's sessions.

Shared by the portal (sign-in, sign-out, password reset) and the ``infra`` CLI, which cannot
import the portal.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import UserSession

# 32 random bytes: unguessable, so a plain SHA-256 (no salt, no stretching) is enough at rest.
TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh random token for a cookie or a link (URL-safe text)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the DB keeps of ``token``: its SHA-256 in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def revoke_sessions(db: Session, user_id: int, reason: str) -> int:
    """End every live session of ``user_id`` (committed by the caller); return how many."""
    result = db.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason[:32])
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)
