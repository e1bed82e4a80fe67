"""The app DB from a request: one SQLAlchemy session per request, opened lazily, always closed."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from flask import current_app
from flask import g
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from core.db import make_engine
from core.db import make_sessionmaker
from core.settings import Settings


@dataclass
class Database:
    """The engine and session factory owned by one app."""

    engine: Engine
    factory: sessionmaker[Session]

    def dispose(self) -> None:
        """Close every pooled connection (tests, shutdown)."""
        self.engine.dispose()


def init_app(app: Flask, settings: Settings) -> None:
    """Create the app's engine and close the request session after every request."""
    engine = make_engine(settings.database_url)
    app.extensions["portal_db"] = Database(engine, make_sessionmaker(engine))
    app.teardown_appcontext(close_db)


def database() -> Database:
    """The current app's Database."""
    return current_app.extensions["portal_db"]  # type: ignore[no-any-return]


def get_db() -> Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = database().factory()
    return g.db_session  # type: ignore[no-any-return]


def close_db(_exc: BaseException | None = None) -> None:
    """Roll back anything uncommitted and close the request's session."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()
