"""Throttles on the sign-in throttle's rows (reset requests, second-step codes), and the 429 page.

Each kind is recorded as ``LoginAttempt`` rows under its own prefix: the same windows and limits
as sign-in, yet asking for resets or mistyping a code never locks anyone out of the other steps.
A failure that trips a throttle says so, so the audit log gets one row per burst, not per failure.
"""

from __future__ import annotations

from typing import Any

from flask import make_response
from flask import render_template
from flask.wrappers import Response
from sqlalchemy.orm import Session

from portal.security import Throttle
from portal.security import clear_failed_logins
from portal.security import login_throttle
from portal.security import record_failed_login

RESET_PREFIX = "reset:"
SECOND_STEP_PREFIX = "2fa:"


def _keys(prefix: str, email: str, ip: str) -> dict[str, str]:
    return {"email": (prefix + email)[:254], "ip": (prefix + ip)[:64]}


def record_failure(db: Session, *, email: str, ip: str, prefix: str = "") -> bool:
    """Count one failure (committed by the caller); True if it is the one that trips the throttle.

    Callers check the throttle first and refuse while it is blocked, so each burst trips it once.
    """
    keys = _keys(prefix, email, ip)
    record_failed_login(db, **keys)
    db.flush()
    return login_throttle(db, **keys).blocked


def reset_throttle(db: Session, *, email: str, ip: str) -> Throttle:
    """Whether this email or address has asked for too many resets in the window."""
    return login_throttle(db, **_keys(RESET_PREFIX, email, ip))


def record_reset_request(db: Session, *, email: str, ip: str) -> None:
    """Count one reset request, whether or not the address exists (committed by the caller)."""
    record_failed_login(db, **_keys(RESET_PREFIX, email, ip))


def second_step_throttle(db: Session, *, email: str, ip: str) -> Throttle:
    """Whether this admin or address has sent too many wrong second-step codes in the window."""
    return login_throttle(db, **_keys(SECOND_STEP_PREFIX, email, ip))


def record_wrong_code(db: Session, *, email: str, ip: str) -> bool:
    """Count a wrong second-step code; True if it trips the throttle."""
    return record_failure(db, email=email, ip=ip, prefix=SECOND_STEP_PREFIX)


def clear_wrong_codes(db: Session, *, email: str) -> None:
    """Forget an admin's wrong codes once a right one came."""
    clear_failed_logins(db, email=_keys(SECOND_STEP_PREFIX, email, "")["email"])


def too_many(template: str, throttle: Throttle, what: str, **context: Any) -> Response:
    """The 429 page: ``what`` were too many; try again in N minutes."""
    message = (
        f"Too many {what}. Try again in {throttle.minutes} "
        f"minute{'s' if throttle.minutes != 1 else ''}."
    )
    response = make_response(render_template(template, error=message, **context), 429)
    response.headers["Retry-After"] = str(throttle.retry_after_s)
    return response
