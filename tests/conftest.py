"""Shared fixtures: real PostgreSQL (and SQLite) databases, settings, the vendor sandbox.

``TEST_DATABASE_URL`` names the main test database (PostgreSQL by default). In CI a PostgreSQL
test whose database cannot be reached fails; elsewhere it is skipped with the reason shown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core.db import Base
from core.db import make_engine
from core.db import make_sessionmaker
from core.settings import Settings
from tests.support.databases import DEFAULT_PG_URL
from tests.support.databases import IN_CI
from tests.support.databases import TEST_DATABASE_URL
from tests.support.databases import drop_created_databases
from tests.support.databases import migrated_url

# No per-example deadline: speed is measured in bench/, and a loaded CI machine must not turn
# a slow example into a failure.
hypothesis_settings.register_profile("project", deadline=None, print_blob=True)
hypothesis_settings.load_profile("project")


def pytest_sessionfinish() -> None:
    """Stop the portal's change listeners, then drop the per-session test databases."""
    change_listener = sys.modules.get("portal.change_listener")
    if change_listener is not None:
        change_listener.stop_all()
    drop_created_databases()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by what they start; skip postgres_only ones on SQLite (never in CI).

    A test that needs a Prefect server (directly or through any fixture) is marked ``prefect``,
    one that drives Chromium ``browser``: ``make test-fast`` deselects both.
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "prefect_api" in fixtures:
            item.add_marker(pytest.mark.prefect)
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)
    if TEST_DATABASE_URL.startswith("sqlite") and not IN_CI:
        skip = pytest.mark.skip(reason="needs PostgreSQL; TEST_DATABASE_URL is SQLite")
        for item in items:
            if "postgres_only" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The main test database, migrated to head once per session."""
    url = TEST_DATABASE_URL
    if url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'app.db'}"
    return migrated_url(url)


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    """Engine on the main test database."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _delete_all_rows(eng: Engine) -> None:
    with eng.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the main test database; every row is deleted afterwards."""
    factory = make_sessionmaker(engine)
    sess = factory()
    try:
        yield sess
    finally:
        # close() rolls back whatever is open and returns the connection to the pool.
        sess.close()
    _delete_all_rows(engine)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """An engine on each backend in turn (SQLite file, then PostgreSQL), migrated to head."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('backend') / 'app.db'}"
    else:
        pg = make_url(
            DEFAULT_PG_URL if TEST_DATABASE_URL.startswith("sqlite") else TEST_DATABASE_URL
        )
        url = pg.set(database=f"{pg.database}_backend").render_as_string(hide_password=False)
    eng = make_engine(migrated_url(url))
    yield eng
    eng.dispose()


@pytest.fixture
def backend_session(backend_engine: Engine) -> Iterator[Session]:
    """A session on each backend in turn; every row is deleted afterwards."""
    with make_sessionmaker(backend_engine)() as sess:
        yield sess
        sess.rollback()
    _delete_all_rows(backend_engine)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[object]:
    """The vendor sandbox (Zapmail, PlusVibe, HeyReach, Stripe) over real HTTP on loopback."""
    from sandbox.testing import running_sandbox

    with running_sandbox() as handle:
        yield handle


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Test settings on the main test database, vendors at the default sandbox address."""
    return Settings(env="test", database_url=db_url, instance_dir=tmp_path, _env_file=None)


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server on its own PostgreSQL database, with the vendor limits created."""
    from prefect.settings import PREFECT_API_URL
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_ENABLED
    from prefect.settings import temporary_settings

    from tasks.limits import ensure_limits
    from tests.support.prefect_server import drain_prefect_workers
    from tests.support.prefect_server import running_prefect_server

    pg = make_url(DEFAULT_PG_URL if TEST_DATABASE_URL.startswith("sqlite") else TEST_DATABASE_URL)
    url = pg.set(database=f"{pg.database}_prefect").render_as_string(hide_password=False)
    with running_prefect_server(url, tmp_path_factory.mktemp("prefect-home")) as api:
        # Heartbeats off: each flow call would otherwise wait ~1 s for the heartbeat thread.
        with temporary_settings(
            {
                PREFECT_API_URL: api,
                PREFECT_SERVER_EPHEMERAL_ENABLED: False,
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                PREFECT_RESULTS_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("prefect-results"),
            }
        ):
            ensure_limits()
            yield api
            drain_prefect_workers()


@pytest.fixture(scope="session")
def portal_prefect(prefect_api: str) -> str:
    """The session's Prefect server with stand-in deployments for the portal's tests.

    One server per session: a second one (Prefect's harness) would install a process-wide
    settings context, and calls Prefect makes from other threads could reach the wrong server.
    """
    from tests.portal import prefect_support

    prefect_support.register_standins()
    return prefect_api
