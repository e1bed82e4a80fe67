"""The app DB's change notices, heard by one LISTEN connection per portal process.

Triggers (migration 0013) NOTIFY ``portal_changes`` with ``p:<user_id>`` when anything the
student's progress page shows changes, and ``s:<user_id>`` when one of their sessions or their
account changes; PostgreSQL sends a notice only when its transaction commits, in commit order,
whoever wrote the row. The listener numbers the notices it hears; a cache entry remembers the
number (a :class:`Mark`) taken *before* its DB read, and stays good while no notice about its user
has been heard since and the listener can vouch that it hears everything:

* it has been connected since the mark (each (re)connection is a new epoch, so a notice lost
  while disconnected can never be missed: every older entry is void);
* its own ping, sent every ``ping_s`` on the same connection, came back within ``fresh_s``, so
  a connection that died silently stops vouching after at most ``fresh_s``;
* no commit of this process is still on its way: each commit here carries a sync notice, and
  until it is heard nothing is vouched for (a request that follows this process's own write,
  such as a sign-out, never sees an older cached answer).

Otherwise the caller reads the DB. SQLite has no LISTEN/NOTIFY: no listener, always the DB.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import psycopg
from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "portal_changes"  # the channel of migration 0013's triggers
PROGRESS = "p"  # what a student's progress page shows changed
SESSIONS = "s"  # a session of the user, or the user's account, changed
PING_S = 0.5
FRESH_S = 2.0
# A commit's sync notice that never comes (the commit failed) stops blocking the caches after this.
SYNC_TTL_S = 5.0
NOTIFY_SQL = "SELECT pg_notify(%s, %s)"


@dataclass(frozen=True)
class Mark:
    """Where the notices stood when a DB read began: the connection's epoch and the count."""

    epoch: int
    seq: int


class ChangeListener:
    """A daemon thread holding a LISTEN connection; reconnects (a new epoch) after any loss."""

    def __init__(self, url: str, *, ping_s: float = PING_S, fresh_s: float = FRESH_S) -> None:
        self.conninfo = libpq_url(url)
        self.ping_s = ping_s
        self.fresh_s = fresh_s
        self.epoch = 0  # 0: never connected
        self.connected = False
        self.backend_pid: int | None = None  # the listening connection's server process
        self._seq = 0  # notices heard so far
        self._last: dict[str, dict[int, int]] = {PROGRESS: {}, SESSIONS: {}}
        self._alive_at = float("-inf")  # when the newest own ping that came back was sent
        self._pings: dict[str, float] = {}
        self._pending: dict[str, float] = {}  # this process's sync notices not heard yet
        self._heard = threading.Condition()
        self._ids = itertools.count()
        self._prefix = f"{os.getpid()}.{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._warned = False  # one warning per outage, not one per attempt
        self._thread: threading.Thread | None = None

    # -- what request threads ask -------------------------------------------------------------

    def fresh(self) -> bool:
        """Whether every notice committed until about ``fresh_s`` ago has been heard."""
        return (
            self.connected
            and not self._pending
            and time.monotonic() - self._alive_at <= self.fresh_s
        )

    def mark(self) -> Mark | None:
        """The mark to take before a DB read; None when the listener cannot vouch for it."""
        epoch = self.epoch
        if not self.fresh():
            return None
        return Mark(epoch, self._seq)

    def unchanged(self, mark: Mark, kind: str, user_id: int) -> bool:
        """Whether no ``kind`` notice about ``user_id`` came since ``mark``, and none was missed."""
        epoch = self.epoch
        if mark.epoch != epoch or not self.fresh():
            return False
        # Read the epoch again: a reconnection in between may have lost notices.
        return self._last[kind].get(user_id, -1) < mark.seq and self.epoch == epoch

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until every transaction committed before this call has been heard (tests)."""
        token = self.expect_sync()
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(NOTIFY_SQL, (CHANNEL, token))
        deadline = time.monotonic() + timeout
        with self._heard:
            while token in self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._heard.wait(left)
        return self.fresh()

    def expect_sync(self) -> str:
        """Register a sync notice about to be sent; caches wait for it (see the module doc)."""
        token = f"sync:{self._prefix}:{next(self._ids)}"
        with self._heard:
            self._pending[token] = time.monotonic() + SYNC_TTL_S
        return token

    # -- the thread ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the thread is alive (in this process)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close its connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._lose()

    def _run(self) -> None:
        backoff = 0.25
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    # A peer that vanishes without a word is noticed in seconds, not minutes.
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=2,
                    tcp_user_timeout=int(self.fresh_s * 2000),
                    application_name="portal-change-listener",
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.backend_pid = conn.info.backend_pid
                    # Listening from here on: a new epoch, older entries are void.
                    self.epoch += 1
                    self.connected = True
                    backoff, self._warned = 0.25, False
                    log.info("change listener connected (epoch %d)", self.epoch)
                    self._serve(conn)
            except (psycopg.Error, OSError) as exc:
                # The exception class only: a message could carry the connection string.
                if not self._warned and not self._stop.is_set():
                    log.warning(
                        "change listener lost (%s); the portal reads the DB", type(exc).__name__
                    )
                self._warned = True
            finally:
                self._lose()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _serve(self, conn: psycopg.Connection) -> None:
        while not self._stop.is_set():
            ping = f"ping:{self._prefix}:{next(self._ids)}"
            self._pings = {ping: time.monotonic()}  # an older ping coming late proves less
            conn.execute(NOTIFY_SQL, (CHANNEL, ping))
            for notice in conn.notifies(timeout=self.ping_s):
                self._hear(notice.payload)
            self._expire()

    def _hear(self, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        if kind in (PROGRESS, SESSIONS):
            try:
                user_id = int(rest)
            except ValueError:
                return
            # Record before counting: a mark taken after this sees the notice as older.
            self._last[kind][user_id] = self._seq
            self._seq += 1
        elif kind == "ping":
            sent = self._pings.get(payload)
            if sent is not None:
                self._alive_at = max(self._alive_at, sent)
        elif kind == "sync" and payload in self._pending:
            with self._heard:
                self._pending.pop(payload, None)
                self._heard.notify_all()

    def _expire(self) -> None:
        now = time.monotonic()
        if any(deadline < now for deadline in self._pending.values()):
            with self._heard:
                for token, deadline in list(self._pending.items()):
                    if deadline < now:
                        del self._pending[token]
                self._heard.notify_all()

    def _lose(self) -> None:
        self.connected = False
        self._alive_at = float("-inf")
        # Every mark of the lost connection is void, even before the next one comes up.
        self.epoch += 1


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a libpq connection string (password kept, never logged)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


Database = tuple[str | None, int, str | None]


@lru_cache(maxsize=64)
def _database_of(url: URL) -> Database:
    return (url.host, url.port or 5432, url.database)


@lru_cache(maxsize=64)
def _database_named(url: str) -> Database:
    return _database_of(make_url(url))


_listeners: dict[tuple[int, Database], ChangeListener] = {}
_registry_lock = threading.Lock()


def listener_for(url: str) -> ChangeListener:
    """This process's listener on ``url``'s database, started on first use (fork-safe)."""
    key = (os.getpid(), _database_named(url))
    listener = _listeners.get(key)
    if listener is None:
        with _registry_lock:
            listener = _listeners.get(key)
            if listener is None:
                listener = ChangeListener(url)
                listener.start()
                _listeners[key] = listener
                _install_commit_barrier()
    return listener


def stop_all() -> None:
    """Stop this process's listeners (before their database goes away: tests, shutdown)."""
    with _registry_lock:
        for key, listener in list(_listeners.items()):
            if key[0] == os.getpid():
                listener.stop()
                del _listeners[key]


_barrier_installed = False


def _install_commit_barrier() -> None:
    global _barrier_installed
    if not _barrier_installed:
        event.listen(Engine, "commit", _before_commit)
        _barrier_installed = True


def _before_commit(conn: Connection) -> None:
    # Every commit of this process on a listened database carries a sync notice, sent in the
    # transaction so that it arrives right after the transaction's own change notices.
    if conn.dialect.name != "postgresql":
        return
    listener = _listeners.get((os.getpid(), _database_of(conn.engine.url)))
    if listener is None or not listener.running:
        return
    token = listener.expect_sync()
    # The DBAPI cursor: no SQLAlchemy events from inside a commit event. A failure here fails the
    # commit loudly (a failed statement would otherwise turn the COMMIT into a silent rollback).
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(NOTIFY_SQL, (CHANNEL, token))
    finally:
        cursor.close()
