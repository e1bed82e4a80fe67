"""The student portal and admin: a Flask app factory with the auth, wizard, dashboard, upgrade,
admin and webhooks blueprints. Nothing happens at import; ``create_app`` builds everything."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from core.settings import Settings
from core.settings import get_settings

DEFAULT_CONFIG: dict[str, Any] = {
    # Session cookie: never readable by scripts, not sent on cross-site subrequests.
    "SESSION_COOKIE_NAME": "portal_session",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
    # A CSRF token lives as long as the session: a student may think about domains for a while.
    "WTF_CSRF_TIME_LIMIT": 12 * 3600,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    # Failed sign-ins allowed per window, per email and per client address.
    "LOGIN_WINDOW_S": 900,
    "LOGIN_MAX_FAILURES_PER_EMAIL": 5,
    "LOGIN_MAX_FAILURES_PER_IP": 20,
    # Zapmail availability: the account-wide budget is 100 checks per 30 min; keep a margin for
    # the provisioning flows' own re-checks before buying.
    "AVAILABILITY_BUDGET": 90,
    "AVAILABILITY_WINDOW_S": 1800,
    "AVAILABILITY_TTL_AVAILABLE_S": 900,
    "AVAILABILITY_TTL_TAKEN_S": 6 * 3600,
    # Pause after a 429 without a usable Retry-After.
    "AVAILABILITY_DEFAULT_PAUSE_S": 300,
    # Coalescing (portal/availability/): a partial batch waits this long for other students'
    # names; a claim older than the timeout is taken over; a request gives up after max wait.
    "AVAILABILITY_GATHER_MS": 2000,
    "AVAILABILITY_CLAIM_TIMEOUT_S": 60,
    "AVAILABILITY_MAX_WAIT_S": 90,
    # A cached "available" older than the TTL is still accepted at checkout when the budget is
    # spent: the purchase step re-checks before buying anyway.
    "CHECKOUT_MAX_CHECK_AGE_S": 24 * 3600,
    # Dashboard refresh: at most one refresh-dashboard run per student per window.
    "REFRESH_COOLDOWN_S": 600,
    # On PostgreSQL, hear the DB's change notices so unchanged progress polls read nothing
    # (portal/change_listener.py); off, or on SQLite, every poll reads the DB.
    "CHANGE_FEED": True,
}


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the portal for ``settings`` (default: the environment); overrides win over config."""
    from portal import change_cache
    from portal import db
    from portal import errors
    from portal import extensions
    from portal import security
    from portal import templating
    from portal.admin import bp as admin_bp
    from portal.auth import bp as auth_bp
    from portal.dashboard import bp as dashboard_bp
    from portal.upgrade import bp as upgrade_bp
    from portal.webhooks import bp as webhooks_bp
    from portal.wizard import bp as wizard_bp

    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.from_mapping(DEFAULT_CONFIG)
    app.config.update(
        SECRET_KEY=settings.secret_key.get_secret_value(),
        SESSION_COOKIE_SECURE=settings.env == "prod",
        REMEMBER_COOKIE_SECURE=settings.env == "prod",
        PREFERRED_URL_SCHEME="https" if settings.env == "prod" else "http",
        PREFECT_API_URL=settings.prefect_api_url,
        PUBLIC_URL=settings.public_url.rstrip("/"),
        APP_ENV=settings.env,
        # Optional signed Zapmail webhook; None answers 404 (the sweeper resumes runs anyway).
        ZAPMAIL_WEBHOOK_SECRET=(
            settings.zapmail_webhook_secret.get_secret_value()
            if settings.zapmail_webhook_secret
            else None
        ),
        # Number of proxies in front of the portal whose X-Forwarded-For to trust (0 = none).
        TRUSTED_PROXIES=settings.trusted_proxies,
    )
    app.config.update(overrides)
    app.extensions["settings"] = settings

    if app.config["TRUSTED_PROXIES"]:
        count = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)  # type: ignore[method-assign]

    db.init_app(app, settings)
    # PostgreSQL: this process's change listener, so an unchanged progress poll reads nothing.
    change_cache.init_app(app, settings)
    extensions.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    templating.init_app(app)

    app.register_blueprint(auth_bp)
    app.register_blueprint(wizard_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(upgrade_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(webhooks_bp)
    extensions.csrf.exempt(webhooks_bp)
    return app
