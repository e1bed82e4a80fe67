"""Test databases: create, reset and migrate PostgreSQL/SQLite databases for the suite."""

from __future__ import annotations

import os

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core import migrate
from core.db import make_engine

# Each test session gets its own databases (suffixed with the process id), so two runs on one
# machine (two developers, CI next to a developer) never drop each other's schema.
DEFAULT_PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/outbound_test_{os.getpid()}"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_created: list[str] = []


def ensure_postgres_database(url: str) -> str:
    """Create the database named in ``url`` if missing; skip (or fail in CI) if unreachable."""
    parsed = make_url(url)
    admin_dsn = parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{parsed.database}"')
                _created.append(admin_dsn.rsplit("/", 1)[0] + "/" + str(parsed.database))
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL unreachable at {parsed.host}:{parsed.port}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


def reset_schema(url: str) -> None:
    """Drop everything in the database so migrations start from nothing."""
    engine = make_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def migrated_url(url: str) -> str:
    """Return ``url`` after creating its database if needed and migrating it to head."""
    if url.startswith("postgresql"):
        ensure_postgres_database(url)
        reset_schema(url)
    migrate.upgrade(url)
    return url


def drop_created_databases() -> None:
    """Drop the PostgreSQL databases this session created (best effort: never fails a run)."""
    for dsn in reversed(_created):
        admin, name = dsn.rsplit("/", 1)
        try:
            with psycopg.connect(f"{admin}/postgres", autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error:
            pass
    _created.clear()
