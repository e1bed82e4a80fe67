"""Cohort invitations: queue a student's invite email, withdraw it, and tell each invite's state.

An invite is a ``password_tokens`` row of purpose "invite" (portal/auth/tokens.py): only its hash
is stored, the link travels once in a queued email (sent by the sweep, never inside a request).
A new invite retires the older ones; a revoked one keeps its ``revoked_at`` and its account is
disabled until an invite is sent again. The newest invite of a student decides their state.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from enum import StrEnum

from flask import current_app
from flask import url_for
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Cohort
from core.models import Notification
from core.models import PasswordToken
from core.models import TokenPurpose
from core.models import User
from portal.auth.tokens import issue_token
from portal.auth.tokens import retire_tokens


class InviteState(StrEnum):
    """Where a student's invitation stands, as the cohort page shows it."""

    INVITED = "invited"
    ACCEPTED = "accepted"
    EXPIRED = "expired"
    REVOKED = "revoked"
    NONE = "not invited"


def invite_email_key(token_id: int) -> str:
    """The notification key of an invite email (never the token: keys show in file names)."""
    return f"cohort-invite:{token_id}"


def unknown_password_hash() -> str:
    """A password hash nobody knows, for an account whose student has not chosen one yet.

    It has the current method's parameters, so checking a password against it costs what a real
    check costs (a sign-in attempt cannot tell invited accounts apart by timing), and making one
    costs nothing (an import of 500 students hashes nothing).
    """
    method = current_app.config["PASSWORD_HASH_METHOD"]
    return f"{method}${secrets.token_urlsafe(12)}${secrets.token_hex(64)}"


def send_invite(db: Session, user: User, cohort: Cohort, ip: str | None) -> PasswordToken:
    """Retire the student's open invites and queue a new one (committed by the caller)."""
    _drop_unsent(db, user.id)
    retire_tokens(db, user.id, TokenPurpose.INVITE)
    user.is_active = True
    return queue_invite(db, user, cohort, ip)


def queue_invite(db: Session, user: User, cohort: Cohort, ip: str | None) -> PasswordToken:
    """Queue an invite for a student without an open one (committed by the caller)."""
    ttl_s = float(current_app.extensions["settings"].invite_ttl_s)
    row, token = issue_token(db, user, TokenPurpose.INVITE, ttl_s=ttl_s, ip=ip)
    link = current_app.config["PUBLIC_URL"] + url_for("auth.accept_invite", token=token)
    days = max(1, round(ttl_s / 86400))
    db.add(
        Notification(
            key=invite_email_key(row.id),
            recipient=user.email,
            subject=f"Your Outbound Portal account for {cohort.name}",
            body=(
                f"Hello {user.name or user.email},\n\n"
                f"{cohort.instructor} invited you to the Outbound Portal for the cohort "
                f"{cohort.name}, starting {cohort.starts_on.isoformat()}. There you buy and "
                "follow the set-up of your outbound email infrastructure.\n\n"
                f"Choose your password here (the link works once, for {days} days):\n"
                f"{link}\n\n"
                "If you did not expect this email, ignore it."
            ),
        )
    )
    return row


def revoke_invite(db: Session, user: User) -> None:
    """Withdraw the student's open invites and disable the account (committed by the caller)."""
    _drop_unsent(db, user.id)
    db.execute(
        update(PasswordToken)
        .where(
            PasswordToken.user_id == user.id,
            PasswordToken.purpose == TokenPurpose.INVITE.value,
            PasswordToken.used_at.is_(None),
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    retire_tokens(db, user.id, TokenPurpose.INVITE)
    # Disabled, so "forgot password" cannot open the account the invite was withdrawn from.
    user.is_active = False


def _drop_unsent(db: Session, user_id: int) -> None:
    # An email of a link about to die that no sender has picked up yet: never send a dead link.
    open_ids = select(PasswordToken.id).where(
        PasswordToken.user_id == user_id,
        PasswordToken.purpose == TokenPurpose.INVITE.value,
        PasswordToken.used_at.is_(None),
    )
    keys = [invite_email_key(token_id) for token_id in db.scalars(open_ids)]
    if keys:
        db.execute(
            delete(Notification).where(
                Notification.key.in_(keys),
                Notification.sent_at.is_(None),
                Notification.claimed_at.is_(None),
            )
        )


def invite_states(db: Session, user_ids: Iterable[int]) -> dict[int, InviteState]:
    """Each student's state, from their newest invite (a password set by a reset accepts it)."""
    ids = list(user_ids)
    states = dict.fromkeys(ids, InviteState.NONE)
    if not ids:
        return states
    newest = (
        select(func.max(PasswordToken.id))
        .where(PasswordToken.user_id.in_(ids), PasswordToken.purpose == TokenPurpose.INVITE.value)
        .group_by(PasswordToken.user_id)
    )
    now = utcnow()
    for row in db.scalars(select(PasswordToken).where(PasswordToken.id.in_(newest))):
        if row.revoked_at is not None:
            states[row.user_id] = InviteState.REVOKED
        elif row.used_at is not None:
            states[row.user_id] = InviteState.ACCEPTED
        elif row.expires_at <= now:
            states[row.user_id] = InviteState.EXPIRED
        else:
            states[row.user_id] = InviteState.INVITED
    # A used reset link means the student chose a password that way instead.
    reset = select(PasswordToken.user_id).where(
        PasswordToken.user_id.in_(ids),
        PasswordToken.purpose == TokenPurpose.RESET.value,
        PasswordToken.used_at.is_not(None),
    )
    for user_id in db.scalars(reset):
        if states[user_id] in (InviteState.INVITED, InviteState.EXPIRED):
            states[user_id] = InviteState.ACCEPTED
    return states
