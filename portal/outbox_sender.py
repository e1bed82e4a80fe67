"""The portal's outbox sender: after a request commits, start the runs it decided, off the request.

A request that enqueued outbox rows (core/outbox.py) calls :func:`send_committed` after its
commit; the keys go to one background thread per portal process (started on first use, a
daemon, with a bounded queue) that claims each row, starts its deployment with the row's key as
the idempotency key and records the run id. The request answers at once and never holds the
database across a call to Prefect. Anything not sent here (a full queue, Prefect down, the
process killed) is sent by the watchdog deployment (flows/watchdog.py) within about a minute.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from core import outbox
from core.db import session_scope
from portal import orchestration
from portal.db import database

log = logging.getLogger(__name__)

# Bounded: a burst beyond this is left to the watchdog rather than held in memory.
QUEUE_SIZE = 1000


@dataclass(frozen=True)
class _Job:
    factory: sessionmaker[Session]
    api_url: str | None
    keys: tuple[str, ...]


_queue: queue.Queue[_Job] = queue.Queue(maxsize=QUEUE_SIZE)
_lock = threading.Lock()
_thread: threading.Thread | None = None


def perform_with(api_url: str | None) -> Callable[[outbox.Message], str]:
    """The function that performs one message: start its deployment under the message's key."""

    def perform(message: outbox.Message) -> str:
        if message.kind != outbox.START_DEPLOYMENT:
            raise ValueError(f"unknown outbox message kind {message.kind!r}")
        return orchestration.start(
            message.deployment,
            message.parameters,
            idempotency_key=message.key,
            url=api_url,
        )

    return perform


def scope_of(factory: sessionmaker[Session]) -> Callable[[], Any]:
    """A commit-on-success session scope over ``factory`` (one short transaction per step)."""
    return functools.partial(session_scope, factory)


def send_committed(db: Session) -> int:
    """Hand the keys ``db`` enqueued (and has committed) to the sender thread; return how many."""
    keys = outbox.take_enqueued(db)
    if not keys:
        return 0
    job = _Job(
        factory=database().factory,
        api_url=current_app.config.get("PREFECT_API_URL") or None,
        keys=tuple(keys),
    )
    _ensure_thread()
    try:
        _queue.put_nowait(job)
    except queue.Full:
        log.warning("outbox sender queue full; %d message(s) left to the watchdog", len(keys))
        return 0
    return len(keys)


def discard_enqueued(db: Session) -> None:
    """Forget the keys of a transaction that rolled back (their rows no longer exist)."""
    outbox.take_enqueued(db)


def _ensure_thread() -> None:
    global _thread
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="outbox-sender", daemon=True)
            _thread.start()


def _run() -> None:
    while True:
        job = _queue.get()
        try:
            _send(job)
        except Exception:  # never let one bad job stop the sender; the watchdog retries it
            log.exception("outbox sender failed on %s", job.keys)
        finally:
            _queue.task_done()


def _send(job: _Job) -> None:
    sent = outbox.send_due(
        functools.partial(session_scope, job.factory),
        perform_with(job.api_url),
        keys=list(job.keys),
    )
    missing = set(job.keys) - set(sent)
    if missing:
        # Claimed by another sender, backing off after an error, or already sent: all fine.
        log.info("outbox keys not sent by this sender now: %s", sorted(missing))


def wait_idle(timeout_s: float = 30.0) -> bool:
    """Block until every handed-over job has been processed (tests, shutdown); False on timeout."""
    done = threading.Event()

    def waiter() -> None:
        _queue.join()
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    return done.wait(timeout_s)


def pending() -> dict[str, Any]:
    """What the sender holds (for health pages and tests)."""
    return {"queued": _queue.qsize(), "alive": bool(_thread and _thread.is_alive())}
