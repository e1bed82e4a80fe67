"""Admins' second factor: TOTP secrets sealed at rest, each code accepted once, recovery codes hashed.

The secret is sealed with the app's data keys (core/crypto.py) and opened only to check a code
or to show it during enrolment. A code is accepted for its own 30-second step and one step either
side (clocks drift), and only for a step later than the last one accepted: a code seen over a
shoulder or replayed from a log is refused. Recovery codes carry ~79 random bits, so their
SHA-256 is enough at rest (as for link tokens); each works once.
"""

from __future__ import annotations

import hmac
import secrets
import time

import pyotp
import segno
from flask import current_app
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.accounts import token_hash
from core.crypto import SecretBox
from core.db import utcnow
from core.models import RecoveryCode
from core.models import TotpFactor
from core.models import User

ISSUER = "Outbound Portal"
STEP_S = 30
# Steps either side of now that still count: one, for a phone clock a little off.
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
# No 0/o, 1/l/i: a code copied from paper is typed back right.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_GROUPS = 4  # of four characters: 16 characters, log2(31) * 16 = ~79 bits


def _box() -> SecretBox:
    return SecretBox.from_settings(current_app.extensions["settings"])


def factor_of(db: Session, user_id: int) -> TotpFactor | None:
    """The user's TOTP factor row (confirmed or still being enrolled), if any."""
    return db.get(TotpFactor, user_id)


def is_enrolled(db: Session, user_id: int) -> bool:
    """Whether the user has a confirmed second factor."""
    factor = factor_of(db, user_id)
    return factor is not None and factor.confirmed_at is not None


def enrolment_secret(db: Session, user: User) -> str:
    """The secret being enrolled: created once, the same on every reload until confirmed."""
    factor = factor_of(db, user.id)
    if factor is None:
        factor = TotpFactor(user_id=user.id, secret_enc=_box().seal(pyotp.random_base32()))
        db.add(factor)
        db.flush()
    return _box().open(factor.secret_enc).get_secret_value()


def provisioning_uri(secret: str, email: str) -> str:
    """The otpauth:// URI an authenticator app reads (from the QR code or typed in)."""
    return pyotp.TOTP(secret, interval=STEP_S).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """The URI as a QR code, an SVG in a data: URI (drawn here; no image host sees the secret)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, dark="#111", light="#fff"))


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def current_step(now: float | None = None) -> int:
    """The TOTP time step of ``now`` (seconds since the epoch)."""
    return int((time.time() if now is None else now) // STEP_S)


def accept_code(db: Session, factor: TotpFactor, code: str) -> bool:
    """Whether ``code`` is a fresh TOTP of the factor; if so its step is used up (compare-and-set).

    Fresh: the code of a step within DRIFT_STEPS of now, later than the last step accepted.
    """
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return False
    totp = pyotp.TOTP(_box().open(factor.secret_enc).get_secret_value(), interval=STEP_S)
    now = current_step()
    matched = [
        step
        for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1)
        if hmac.compare_digest(totp.generate_otp(step), code)
    ]
    fresh = [step for step in matched if factor.last_step is None or step > factor.last_step]
    if not fresh:
        return False
    step = max(fresh)
    won = db.execute(
        update(TotpFactor)
        .where(
            TotpFactor.user_id == factor.user_id,
            or_(TotpFactor.last_step.is_(None), TotpFactor.last_step < step),
        )
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    # Two tabs sending the same code at once: one of them wins.
    return bool(won)


def confirm(db: Session, factor: TotpFactor) -> list[str]:
    """Make the factor active and issue fresh recovery codes; return them (shown once)."""
    factor.confirmed_at = utcnow()
    return new_recovery_codes(db, factor.user_id)


def new_recovery_codes(db: Session, user_id: int) -> list[str]:
    """Replace the user's recovery codes with RECOVERY_CODE_COUNT new ones; return them."""
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [
        "-".join(
            "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(4))
            for _ in range(RECOVERY_GROUPS)
        )
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    db.add_all(RecoveryCode(user_id=user_id, code_hash=_code_hash(code)) for code in codes)
    return codes


def _code_hash(code: str) -> str:
    # Case, spaces and dashes do not matter when typing a code back.
    return token_hash("".join(ch for ch in code.lower() if ch not in " -"))


def looks_like_recovery_code(code: str) -> bool:
    """Whether ``code`` has a recovery code's shape (so it is not a mistyped TOTP)."""
    plain = "".join(ch for ch in code.lower() if ch not in " -")
    return len(plain) == 4 * RECOVERY_GROUPS


def use_recovery_code(db: Session, user_id: int, code: str) -> bool:
    """Use up one of the user's recovery codes (compare-and-set); True if it was unused."""
    won = db.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == _code_hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(won)


def recovery_codes_left(db: Session, user_id: int) -> int:
    """How many of the user's recovery codes are unused."""
    return int(
        db.scalar(
            select(func.count()).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        )
        or 0
    )
