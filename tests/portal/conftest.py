"""Portal fixtures: the app on the real test DB, the sandbox, a signed-in client, Prefect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from core.models import User
from core.settings import Settings
from portal import create_app
from tests.factories import make_user
from tests.portal.helpers import AuthActions


@pytest.fixture
def portal_sandbox(sandbox: Any) -> Iterator[Any]:
    """The sandbox, reset, with vendor rate limits off unless a test turns them on."""
    sandbox.reset(config=True)
    sandbox.configure(rate_limits_enabled=False)
    yield sandbox
    # Leave the shared sandbox as other test packages expect it.
    sandbox.reset(config=True)


def portal_settings(db_url: str, sandbox_url: str, tmp_path: Path, **fields: Any) -> Settings:
    """Test settings pointing every vendor at the given sandbox."""
    return Settings(
        env="test",
        database_url=db_url,
        sandbox_url=sandbox_url,
        instance_dir=tmp_path,
        public_url="http://portal.test",
        _env_file=None,
        **fields,
    )


@pytest.fixture
def app_factory(
    session: Session,  # noqa: ARG001  (requested so every row is deleted after the test)
    db_url: str,
    portal_sandbox: Any,
    tmp_path: Path,
) -> Iterator[Any]:
    """Build apps on the test DB and the sandbox; engines are disposed afterwards."""
    apps: list[Flask] = []

    def build(prefect_api_url: str | None = None, **config: Any) -> Flask:
        settings = portal_settings(
            db_url, portal_sandbox.url, tmp_path, prefect_api_url=prefect_api_url
        )
        config.setdefault("TESTING", True)
        config.setdefault("WTF_CSRF_ENABLED", False)
        # One student per test: waiting 2 s for other students' names to share a call only
        # slows the suite (test_availability_coalescing sets its own windows).
        config.setdefault("AVAILABILITY_GATHER_MS", 50)
        app = create_app(settings, **config)
        apps.append(app)
        return app

    yield build
    # Let the outbox sender finish what the test's requests handed it before the engines go.
    from portal import outbox_sender

    outbox_sender.wait_idle(30)
    for app in apps:
        app.extensions["portal_db"].dispose()


@pytest.fixture
def app(app_factory: Any) -> Flask:
    """The portal without Prefect (starting a flow fails fast) and without CSRF checks."""
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for ``app``."""
    return app.test_client()


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    """AuthActions on ``client``."""
    return AuthActions(client)


@pytest.fixture
def ann(session: Session, auth: AuthActions) -> User:
    """A student, ann@example.com, signed in on ``client``."""
    user = make_user(session, "ann@example.com")
    session.commit()
    auth.login("ann@example.com")
    return user
