"""Portal fixtures: the app on the real test DB, the sandbox, a signed-in client, Prefect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from core.settings import Settings
from portal import create_app
from tests.portal import two_factor_support
from tests.portal.helpers import PASSWORD


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


class AuthActions:
    """Sign in and out through the real form."""

    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def login(self, email: str, password: str = PASSWORD, **kwargs: Any) -> Any:
        """POST the sign-in form."""
        response = self._client.post(
            "/auth/login", data={"email": email, "password": password, **kwargs}
        )
        # Admin 2FA: an admin then enrols or enters a code on the real pages (returns the above).
        two_factor_support.pass_second_step(self._client, email, response)
        return response

    def logout(self) -> Any:
        """POST the sign-out form."""
        return self._client.post("/auth/logout")


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    """AuthActions on ``client``."""
    return AuthActions(client)
