"""Security plumbing: response headers, safe redirects, sign-in throttling and the audit log."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask import current_app
from flask import request
from flask import session as flask_session
from flask.wrappers import Response
from flask_login import current_user
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import AuditLog
from core.models import LoginAttempt

# Nothing is loaded from anywhere but this origin; inline scripts and styles are refused.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def init_app(app: Flask) -> None:
    """Add the security headers to every response."""
    app.after_request(add_security_headers)


def add_security_headers(response: Response) -> Response:
    """Set CSP, framing, sniffing and referrer headers; never cache signed-in pages."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if current_app.config.get("APP_ENV") == "prod":
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a same-site relative path, else None (no open redirects)."""
    if not target or len(target) > 2000:
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    # Browsers treat backslashes as slashes and ignore tabs/newlines: "/\evil.com" is off-site.
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def client_ip() -> str:
    """The client's address (ProxyFix, when configured, has already applied X-Forwarded-For)."""
    return (request.remote_addr or "unknown")[:64]


def client_user_agent() -> str | None:
    """The client's User-Agent header, cut to what the DB keeps."""
    return (request.user_agent.string or "")[:255] or None


@dataclass(frozen=True)
class Throttle:
    """Whether sign-in is blocked, and for how many more seconds."""

    blocked: bool
    retry_after_s: int = 0

    @property
    def minutes(self) -> int:
        """Minutes to wait, rounded up (at least one)."""
        return max(1, math.ceil(self.retry_after_s / 60))


def login_throttle(db: Session, *, email: str, ip: str) -> Throttle:
    """Check the failed sign-ins of the last window for this email and this address."""
    config = current_app.config
    window = timedelta(seconds=int(config["LOGIN_WINDOW_S"]))
    since = utcnow() - window
    checks = (
        (LoginAttempt.email == email, int(config["LOGIN_MAX_FAILURES_PER_EMAIL"])),
        (LoginAttempt.ip == ip, int(config["LOGIN_MAX_FAILURES_PER_IP"])),
    )
    wait = 0.0
    for condition, limit in checks:
        count, oldest = db.execute(
            select(func.count(), func.min(LoginAttempt.attempted_at)).where(
                condition, LoginAttempt.attempted_at > since
            )
        ).one()
        if count >= limit and oldest is not None:
            # Unblocked once enough failures have aged out; the oldest leaving first is a floor.
            rows = db.scalars(
                select(LoginAttempt.attempted_at)
                .where(condition, LoginAttempt.attempted_at > since)
                .order_by(LoginAttempt.attempted_at.desc())
                .offset(limit - 1)
                .limit(1)
            ).all()
            anchor = rows[0] if rows else oldest
            wait = max(wait, (anchor + window - utcnow()).total_seconds())
    if wait > 0:
        return Throttle(True, math.ceil(wait))
    return Throttle(False)


def record_failed_login(db: Session, *, email: str, ip: str) -> None:
    """Remember a failed sign-in (committed by the caller)."""
    db.add(LoginAttempt(email=email[:254], ip=ip))


def clear_failed_logins(db: Session, *, email: str) -> None:
    """Forget an email's failures after a successful sign-in."""
    db.execute(delete(LoginAttempt).where(LoginAttempt.email == email))


class Actor(Enum):
    """Who ``audit`` records when no user id is given."""

    SIGNED_IN = "signed-in"  # the signed-in user, if any


def audit(
    db: Session,
    action: str,
    *,
    target_type: str,
    target_id: int | None,
    details: dict[str, Any] | None = None,
    actor: int | None | Actor = Actor.SIGNED_IN,
) -> AuditLog:
    """Add an audit row: who, what, on what, from where; return it (committed by the caller).

    ``actor`` is the signed-in user unless given: a sign-in names its user before it is signed
    in, a refused one names nobody (and never loads the session of whoever holds the cookie).
    """
    if actor is Actor.SIGNED_IN:
        actor = current_user.id if current_user.is_authenticated else None
    row = AuditLog(
        actor_id=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
        ip=client_ip(),
        user_agent=client_user_agent(),
    )
    db.add(row)
    return row


def regenerate_session() -> None:
    """Drop everything in the session before signing in (prevents session fixation)."""
    flask_session.clear()
