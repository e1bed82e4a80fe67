"""The purchase locks: one holder per provision, and one for the operator's Zapmail wallet.

Both hold across processes, and across hosts on PostgreSQL.

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
# The wallet lock is a single bigint key (a key space apart from the two-int provision locks).
_WALLET_KEY = zlib.crc32(b"outbound-wallet-lock")


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
def wallet_lock(*, timeout_s: float = 300.0) -> Iterator[None]:
    """Hold the operator wallet's lock: one reservation of Zapmail funds at a time, account-wide."""
    if runtime.engine().dialect.name == "postgresql":
        with _advisory_lock(None, timeout_s):
            yield
    else:
        with _file_lock(None, timeout_s):
            yield


@contextmanager
def _advisory_lock(provision_id: int | None, timeout_s: float) -> Iterator[None]:
    deadline = time.monotonic() + timeout_s
    if provision_id is None:
        args: dict[str, int] = {"key": _WALLET_KEY}
        take, free = "pg_try_advisory_lock(:key)", "pg_advisory_unlock(:key)"
    else:
        args = {"ns": _LOCK_NAMESPACE, "id": provision_id}
        take, free = "pg_try_advisory_lock(:ns, :id)", "pg_advisory_unlock(:ns, :id)"
    with runtime.engine().connect() as conn:
        # autocommit: a session-level lock must not sit inside a transaction that another
        # statement on this connection could roll back.
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        while not conn.execute(text(f"SELECT {take}"), args).scalar():
            if time.monotonic() > deadline:
                raise LockTimeoutError(f"{_what(provision_id)} is locked by another run")
            time.sleep(0.2)
        try:
            yield
        finally:
            conn.execute(text(f"SELECT {free}"), args)


def _what(provision_id: int | None) -> str:
    return "the Zapmail wallet" if provision_id is None else f"provision {provision_id}"


@contextmanager
def _file_lock(provision_id: int | None, timeout_s: float) -> Iterator[None]:
    lock_dir = runtime.settings().lock_dir
    assert lock_dir is not None  # filled in by Settings
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    name = "wallet.lock" if provision_id is None else f"provision-{provision_id}.lock"
    with open(lock_dir / name, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeoutError(
                        f"{_what(provision_id)} is locked by another run"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
