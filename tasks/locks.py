"""The purchase lock: one holder per provision across processes, and across hosts on PostgreSQL.

On PostgreSQL it is a session-level advisory lock held on its own connection, shared by every
worker host that uses the same app DB. On SQLite (one host) it is an flock on a lock file. Both
are released by the operating system or the server if the holding process dies, so a worker
killed mid-purchase never leaves a provision locked.
"""

from __future__ import annotations

import fcntl
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from tasks import runtime

# Namespaces the advisory-lock key space so our keys never collide with other users of the DB.
_LOCK_NAMESPACE = zlib.crc32(b"outbound-provision-lock")


class LockTimeoutError(TimeoutError):
    """Another run held the provision's lock for longer than we were willing to wait."""

    retryable = True


@contextmanager
def provision_lock(provision_id: int, *, timeout_s: float = 900.0) -> Iterator[None]:
    """Hold the provision's lock for the duration of the block."""
    if runtime.engine().dialect.name == "postgresql":
        with _advisory_lock(provision_id, timeout_s):
            yield
    else:
        with _file_lock(provision_id, timeout_s):
            yield


@contextmanager
def _advisory_lock(provision_id: int, timeout_s: float) -> Iterator[None]:
    deadline = time.monotonic() + timeout_s
    with runtime.engine().connect() as conn:
        # autocommit: a session-level lock must not sit inside a transaction that another
        # statement on this connection could roll back.
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        args = {"ns": _LOCK_NAMESPACE, "id": provision_id}
        while not conn.execute(text("SELECT pg_try_advisory_lock(:ns, :id)"), args).scalar():
            if time.monotonic() > deadline:
                raise LockTimeoutError(f"provision {provision_id} is locked by another run")
            time.sleep(0.2)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:ns, :id)"), args)


@contextmanager
def _file_lock(provision_id: int, timeout_s: float) -> Iterator[None]:
    lock_dir = runtime.settings().lock_dir
    assert lock_dir is not None  # filled in by Settings
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(lock_dir / f"provision-{provision_id}.lock", "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeoutError(
                        f"provision {provision_id} is locked by another run"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
