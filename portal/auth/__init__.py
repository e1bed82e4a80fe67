"""Auth blueprint: sign in (admins in two steps) and out on server-side sessions, password reset."""

from __future__ import annotations

from flask import Blueprint
from flask.blueprints import BlueprintSetupState

from portal.auth.sessions import load_session_user
from portal.auth.sessions import revoke_all_sessions
from portal.extensions import login_manager

bp = Blueprint("auth", __name__, url_prefix="/auth")

__all__ = ["bp", "revoke_all_sessions"]


@bp.record_once
def _configure(state: BlueprintSetupState) -> None:
    # Account settings become app config (create_app's overrides, set earlier, win).
    app = state.app
    settings = app.extensions["settings"]
    app.config.setdefault("SESSION_IDLE_S", settings.session_idle_s)
    app.config.setdefault("SESSION_ABSOLUTE_S", settings.session_absolute_s)
    app.config.setdefault("PASSWORD_RESET_TTL_S", settings.password_reset_ttl_s)
    app.config.setdefault("PASSWORD_HASH_METHOD", settings.password_hash_method)
    login_manager.user_loader(load_session_user)


from portal.auth import invite_views  # noqa: E402,F401  (registers the routes on bp)
from portal.auth import reset_views  # noqa: E402,F401  (registers the routes on bp)
from portal.auth import two_factor_views  # noqa: E402,F401  (registers the routes on bp)
from portal.auth import views  # noqa: E402,F401  (registers the routes on bp)
