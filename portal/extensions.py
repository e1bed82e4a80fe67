"""Flask extensions (sign-in sessions, CSRF) and the role checks every view uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from functools import wraps
from typing import Any
from typing import TypeVar

from flask import Flask
from flask import abort
from flask import jsonify
from flask import redirect
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager
from flask_login import UserMixin
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect

from core.models import Role

login_manager = LoginManager()
csrf = CSRFProtect()

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class PortalUser(UserMixin):  # type: ignore[misc]
    """The signed-in user as views see it: plain values, no ORM object across requests."""

    id: int
    email: str
    name: str
    role: str
    # The random token of this sign-in's server-side session (portal/auth/sessions.py).
    session_token: str = field(default="", repr=False, compare=False)

    @property
    def is_admin(self) -> bool:
        """Whether the user has the admin role."""
        return self.role == Role.ADMIN.value

    @property
    def is_student(self) -> bool:
        """Whether the user is a student."""
        return self.role == Role.STUDENT.value

    def get_id(self) -> str:
        """What flask-login keeps in the cookie: the session token, never the user id."""
        return self.session_token


def wants_json() -> bool:
    """Whether the client expects JSON (our .json endpoints and API-style callers)."""
    if request.path.endswith(".json") or request.blueprint == "webhooks":
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def unauthorized() -> ResponseReturnValue:
    """Anonymous access: JSON callers get 401, browsers the sign-in page with a safe ``next``."""
    if wants_json():
        return jsonify(error="unauthorized", reason="Sign in first."), 401
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login", next=target))


def init_app(app: Flask) -> None:
    """Configure flask-login and CSRF protection for ``app``."""
    login_manager.init_app(app)
    # The user loader belongs to the auth blueprint: it checks the server-side session
    # (portal/auth/sessions.py) and is registered with the blueprint.
    login_manager.unauthorized_handler(unauthorized)
    login_manager.login_view = "auth.login"
    # "strong": a session copied to another client (different IP/agent hash) is dropped.
    login_manager.session_protection = "strong"
    csrf.init_app(app)


def _require(role: Role) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return unauthorized()
            if current_user.role != role.value:
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


student_required = _require(Role.STUDENT)
admin_required = _require(Role.ADMIN)
