"""Which requests may take the signed-in user from memory instead of the ``user_sessions`` row.

Only views marked :func:`cached_session` (the progress page's poll), and only while the change
listener vouches that nothing about the user's sessions or account changed since the row was
read (portal/change_cache.py): a revocation, a sign-out, a disabled account or a role change is a
notice that voids the entry at once. Everything else reads the row on every request, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from typing import TypeVar

from flask import g
from flask import has_request_context

from portal import change_cache
from portal.change_cache import ChangeCache
from portal.change_listener import SESSIONS

F = TypeVar("F", bound=Callable[..., Any])


def cached_session(view: F) -> F:
    """Let ``view``'s user come from the session cache; put it above the role check."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        g.session_cache_ok = True
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def for_request() -> ChangeCache | None:
    """The session cache if this request may use it, else None."""
    if not has_request_context() or not g.get("session_cache_ok"):
        return None
    return change_cache.cache(SESSIONS)
