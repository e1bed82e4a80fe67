"""Single-use, expiring password links (reset now, invitations later): only hashes are stored.

A token is 32 random bytes shown once (in the email) and kept as its SHA-256. It works until it
expires, is used, or a newer password makes it moot; using it is a compare-and-set, so two
submissions of one link set the password once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.accounts import new_token
from core.accounts import token_hash
from core.db import utcnow
from core.models import Notification
from core.models import PasswordToken
from core.models import TokenPurpose
from core.models import User

USED_MARK = "[this link was used]"


def issue_token(
    db: Session, user: User, purpose: TokenPurpose, *, ttl_s: float, ip: str | None
) -> tuple[PasswordToken, str]:
    """Create a link token for ``user`` (committed by the caller); return its row and the token."""
    token = new_token()
    now = utcnow()
    row = PasswordToken(
        token_hash=token_hash(token),
        user_id=user.id,
        purpose=purpose.value,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        requested_ip=ip,
    )
    db.add(row)
    db.flush()
    return row, token


def find_token(db: Session, token: str, purpose: TokenPurpose) -> PasswordToken | None:
    """The live token row for ``token`` (unused, unexpired, its user active), else None."""
    return db.scalar(
        select(PasswordToken)
        .join(User, User.id == PasswordToken.user_id)
        .where(
            PasswordToken.token_hash == token_hash(token),
            PasswordToken.purpose == purpose.value,
            PasswordToken.used_at.is_(None),
            PasswordToken.expires_at > utcnow(),
            User.is_active.is_(True),
        )
    )


def use_token(db: Session, row: PasswordToken) -> bool:
    """Mark ``row`` used unless someone else just did (compare-and-set); True if we won."""
    won = db.execute(
        update(PasswordToken)
        .where(
            PasswordToken.id == row.id,
            PasswordToken.used_at.is_(None),
            PasswordToken.expires_at > utcnow(),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(won)


def retire_tokens(db: Session, user_id: int, purpose: TokenPurpose) -> None:
    """Mark every other open token of the user used: the password they would set is set."""
    db.execute(
        update(PasswordToken)
        .where(
            PasswordToken.user_id == user_id,
            PasswordToken.purpose == purpose.value,
            PasswordToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def scrub_link(db: Session, notification_key: str, token: str) -> None:
    """Take a used token out of the queued email that carried it (no live secret stays at rest)."""
    db.execute(
        update(Notification)
        .where(Notification.key == notification_key)
        .values(body=func.replace(Notification.body, token, USED_MARK))
        .execution_options(synchronize_session=False)
    )
