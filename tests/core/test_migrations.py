"""The schema migrates up and down on SQLite and PostgreSQL, and matches the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from core import migrate
from core.db import Base
from core.db import make_engine
from core.migrate import VERSION_TABLE
from core.models import User  # noqa: F401  (registers every model on Base.metadata)
from tests.support.databases import DEFAULT_PG_URL
from tests.support.databases import TEST_DATABASE_URL
from tests.support.databases import ensure_postgres_database
from tests.support.databases import reset_schema

APP_TABLES = {table.name for table in Base.metadata.sorted_tables}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A brand-new, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    base = DEFAULT_PG_URL if TEST_DATABASE_URL.startswith("sqlite") else TEST_DATABASE_URL
    url = make_url(base).set(database=f"{make_url(base).database}_migrations")
    rendered = ensure_postgres_database(url.render_as_string(hide_password=False))
    reset_schema(rendered)
    return rendered


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_downgrade_removes_them(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    assert _tables(empty_db_url) == APP_TABLES | {VERSION_TABLE}

    migrate.downgrade(empty_db_url, "base")
    assert _tables(empty_db_url) == {VERSION_TABLE}

    # And back up again: the downgrade left nothing behind that blocks a re-upgrade.
    migrate.upgrade(empty_db_url)
    assert _tables(empty_db_url) == APP_TABLES | {VERSION_TABLE}


def test_upgrade_is_idempotent(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    migrate.upgrade(empty_db_url)
    assert _tables(empty_db_url) == APP_TABLES | {VERSION_TABLE}


def test_migrations_match_the_models(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations disagree; write a migration: {diff}"
