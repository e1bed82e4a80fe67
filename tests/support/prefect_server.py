"""A real `prefect server` for the test session, backed by its own PostgreSQL database.

Prefect's SQLite-backed test harness serialises every write, and each vendor call's rate-limit
slot is a write: runs stall on "database is locked". PostgreSQL is also what production uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect._internal.concurrency.services import _QueueServiceBase
from prefect.concurrency.services import ConcurrencySlotAcquisitionService
from prefect.concurrency.services import ConcurrencySlotAcquisitionWithLeaseService
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.utilities.asyncutils import run_coro_as_sync
from sqlalchemy.engine import make_url

from deployments.local import free_port
from deployments.local import start_prefect_server
from deployments.local import stop
from deployments.local import wait_healthy
from tests.support.databases import ensure_postgres_database


@contextmanager
def running_prefect_server(pg_url: str, home: Path) -> Iterator[str]:
    """Start `prefect server` on ``pg_url``'s database; yield its API URL; stop it on exit."""
    ensure_postgres_database(pg_url)
    port = free_port()
    process = start_prefect_server(
        database_url=make_url(pg_url).render_as_string(hide_password=False),
        home=home,
        port=port,
        log=home / "server.log",
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_healthy(f"{api}/health", process)
        yield api
    finally:
        stop(process)


def drain_prefect_workers() -> None:
    """Flush queued logs and events to the server before it stops (as Prefect's harness does)."""

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:
            pass  # the log worker never started
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


def forget_prefect_services() -> None:
    """Stop Prefect's cached slot-acquisition services so the next use binds the current API URL.

    Each service opens its client once, with the API URL of its first use, and is cached for the
    life of the process: a test that switches to a server of its own would otherwise keep taking
    rate-limit slots from the previous (stopped) server and its steps would never start.
    """
    kinds = (ConcurrencySlotAcquisitionService, ConcurrencySlotAcquisitionWithLeaseService)
    with _QueueServiceBase._instance_cache_lock:
        services = [s for s in _QueueServiceBase._instances.values() if isinstance(s, kinds)]
    for service in services:
        service._drain(at_exit=False).result(timeout=10)
