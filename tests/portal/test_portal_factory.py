"""The app factory: config from settings, overrides, security headers, error pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from portal import create_app
from tests.portal.conftest import portal_settings


def test_create_app_maps_settings_and_applies_overrides(db_url: str, tmp_path: Path) -> None:
    settings = portal_settings(
        db_url, "http://127.0.0.1:1", tmp_path, prefect_api_url="http://p/api"
    )
    app = create_app(settings, TESTING=True, REFRESH_COOLDOWN_S=5)
    try:
        assert app.testing
        assert app.config["REFRESH_COOLDOWN_S"] == 5
        assert app.config["PREFECT_API_URL"] == "http://p/api"
        assert app.config["SESSION_COOKIE_HTTPONLY"] is True
        assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
        assert app.config["SESSION_COOKIE_SECURE"] is False
    finally:
        app.extensions["portal_db"].dispose()


def test_session_cookie_is_secure_in_prod(db_url: str, tmp_path: Path) -> None:
    settings = portal_settings(db_url, "http://127.0.0.1:1", tmp_path)
    # Settings(env="prod") refuses dev secrets and SQLite; the cookie flag only reads env.
    object.__setattr__(settings, "env", "prod")
    app = create_app(settings)
    try:
        assert app.config["SESSION_COOKIE_SECURE"] is True
    finally:
        app.extensions["portal_db"].dispose()


def test_every_response_carries_security_headers(client: Any) -> None:
    response = client.get("/auth/login")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "http" not in csp  # no external source anywhere
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_reference_no_external_assets(client: Any) -> None:
    html = client.get("/auth/login").get_data(as_text=True)
    assert "https://" not in html and "http://" not in html
    for asset in ("/static/app.css", "/static/app.js", "/static/favicon.svg"):
        with client.get(asset) as response:
            assert response.status_code == 200


def test_unknown_page_is_a_generic_404(client: Any) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert "Traceback" not in response.get_data(as_text=True)
    assert "Not found" in response.get_data(as_text=True)


def test_json_callers_get_json_errors_with_a_reason(client: Any) -> None:
    response = client.get("/progress.json")
    assert response.status_code == 401
    assert response.json["reason"]


def test_unexpected_errors_show_no_stack_trace(app: Flask) -> None:
    @app.get("/boom-for-test")
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/boom-for-test")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "secret internal detail" not in body and "Traceback" not in body
