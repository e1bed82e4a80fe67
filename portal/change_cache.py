"""Per-app caches of DB reads about a user, each entry good while the change listener vouches.

An entry is written with the :class:`~portal.change_listener.Mark` taken before its DB read and
read back only while no notice of its kind about its user has been heard since (see
portal/change_listener.py). With no listener (SQLite, or ``CHANGE_FEED`` off) every lookup misses
and every mark is None, so callers simply read the DB.

The read must see the database as of after its mark: true under READ COMMITTED (PostgreSQL's
default, which the app keeps), where every statement takes a fresh snapshot.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask import current_app

from core.settings import Settings
from portal.change_listener import PROGRESS
from portal.change_listener import SESSIONS
from portal.change_listener import Mark
from portal.change_listener import listener_for

# Beyond this many entries a cache starts over (a cohort is a few hundred students).
MAX_ENTRIES = 20_000


class ChangeCache:
    """Values keyed by anything, each tied to a user and to the mark of the read it came from."""

    def __init__(self, url: str, kind: str) -> None:
        self.url = url
        self.kind = kind
        self._entries: dict[Any, tuple[int, Mark, Any]] = {}

    def mark(self) -> Mark | None:
        """The mark to take before reading the DB; None when nothing read now may be kept."""
        return listener_for(self.url).mark()

    def get(self, key: Any) -> Any | None:
        """The value kept for ``key`` if nothing about its user changed since its read."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        user_id, mark, value = entry
        if listener_for(self.url).unchanged(mark, self.kind, user_id):
            return value
        return None

    def put(self, key: Any, user_id: int, value: Any, mark: Mark | None) -> None:
        """Keep ``value`` (read after ``mark`` was taken) for ``key``; a None mark keeps nothing."""
        if mark is None:
            self._entries.pop(key, None)
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (user_id, mark, value)


def init_app(app: Flask, settings: Settings) -> None:
    """Start this process's listener and the app's caches, on PostgreSQL unless turned off."""
    url = settings.database_url
    if not url.startswith("postgresql") or not app.config.get("CHANGE_FEED", True):
        return
    listener_for(url)
    app.extensions["change_caches"] = {
        PROGRESS: ChangeCache(url, PROGRESS),
        SESSIONS: ChangeCache(url, SESSIONS),
    }


def cache(kind: str) -> ChangeCache | None:
    """The current app's cache of ``kind`` (PROGRESS or SESSIONS), or None without a listener."""
    caches: dict[str, ChangeCache] | None = current_app.extensions.get("change_caches")
    return caches[kind] if caches is not None else None
