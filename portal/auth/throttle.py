"""Throttling of reset requests on the sign-in throttle's rows, and the answer when blocked.

Reset requests are recorded as ``LoginAttempt`` rows under a ``reset:`` prefix: the same windows
and limits as sign-in, yet asking for resets never locks anyone out of signing in (or back).
"""

from __future__ import annotations

from typing import Any

from flask import make_response
from flask import render_template
from flask.wrappers import Response
from sqlalchemy.orm import Session

from portal.security import Throttle
from portal.security import login_throttle
from portal.security import record_failed_login

RESET_PREFIX = "reset:"


def _key(value: str, limit: int) -> str:
    return (RESET_PREFIX + value)[:limit]


def reset_throttle(db: Session, *, email: str, ip: str) -> Throttle:
    """Whether this email or address has asked for too many resets in the window."""
    return login_throttle(db, email=_key(email, 254), ip=_key(ip, 64))


def record_reset_request(db: Session, *, email: str, ip: str) -> None:
    """Count one reset request, whether or not the address exists (committed by the caller)."""
    record_failed_login(db, email=_key(email, 254), ip=_key(ip, 64))


def too_many(template: str, throttle: Throttle, what: str, **context: Any) -> Response:
    """The 429 page: ``what`` were too many; try again in N minutes."""
    message = (
        f"Too many {what}. Try again in {throttle.minutes} "
        f"minute{'s' if throttle.minutes != 1 else ''}."
    )
    response = make_response(render_template(template, error=message, **context), 429)
    response.headers["Retry-After"] = str(throttle.retry_after_s)
    return response
