"""Settings: sandbox defaults in dev, real vendors and no development secrets in prod."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from core.settings import DEV_DATA_KEY
from core.settings import DEV_SECRET_KEY
from core.settings import REAL_ZAPMAIL_URL
from core.settings import Settings

PROD_SECRETS = {
    "secret_key": "a-real-secret-key-with-plenty-of-entropy-123",
    "data_keys": "bXktcHJvZC1kYXRhLWtleS10aGF0LWlzLTMyLWJ5dGU=",
    "zapmail_api_key": "zm-live-0123456789",
    "plusvibe_api_key": "pv-live-0123456789",
    "heyreach_api_key": "hr-live-0123456789",
    "stripe_api_key": "sk_live_0123456789",
    "stripe_webhook_secret": "whsec_live_0123456789",
    "database_url": "postgresql://app:pw@db.internal:5432/app",
}


def prod(**overrides: object) -> Settings:
    values = {
        **PROD_SECRETS,
        "smtp_host": "smtp.internal",
        "public_url": "https://portal.example.com",
        **overrides,
    }
    return Settings(env="prod", _env_file=None, **values)


def test_prod_refuses_to_send_email_nowhere() -> None:
    with pytest.raises(ValidationError, match="APP_SMTP_HOST"):
        prod(smtp_host=None)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:5000", "https://localhost", "http://portal.example.com", "portal"]
)
def test_prod_refuses_a_public_url_students_cannot_open(url: str) -> None:
    # Emails and invitation links are built on it: a worker left on the default sent students
    # links to 127.0.0.1.
    with pytest.raises(ValidationError, match="APP_PUBLIC_URL"):
        prod(public_url=url)


def test_prod_refuses_the_sandbox_zapmail_webhook_secret() -> None:
    with pytest.raises(ValidationError, match="APP_ZAPMAIL_WEBHOOK_SECRET"):
        prod(zapmail_webhook_secret="zapmail-whsec-sandbox")
    assert prod().zapmail_webhook_secret is None  # optional in prod: the sweeper resumes runs


def test_workers_may_take_vendor_keys_from_secret_blocks() -> None:
    keyless = {"zapmail_api_key": None, "plusvibe_api_key": None, "heyreach_api_key": None}
    with pytest.raises(ValidationError, match="APP_ZAPMAIL_API_KEY"):
        prod(**keyless)
    assert prod(vendor_secret_blocks=True, **keyless).zapmail_api_key is None


def test_prod_with_real_secrets_uses_the_real_vendors() -> None:
    settings = prod()
    assert settings.zapmail_base_url == REAL_ZAPMAIL_URL
    assert settings.stripe_api_base is None
    assert settings.database_url.startswith("postgresql+psycopg://")


def test_prod_refuses_the_development_secret_key() -> None:
    with pytest.raises(ValidationError, match="APP_SECRET_KEY"):
        prod(secret_key=DEV_SECRET_KEY)


def test_prod_refuses_the_development_data_key_even_among_others() -> None:
    with pytest.raises(ValidationError, match="APP_DATA_KEYS"):
        prod(data_keys=f"{PROD_SECRETS['data_keys']},{DEV_DATA_KEY}")


@pytest.mark.parametrize("field", ["zapmail_api_key", "stripe_api_key", "stripe_webhook_secret"])
def test_prod_refuses_sandbox_vendor_keys_and_missing_ones(field: str) -> None:
    with pytest.raises(ValidationError):
        prod(**{field: None})
    sandbox_values = {
        "zapmail_api_key": "sandbox-zapmail-key",
        "stripe_api_key": "sk_test_sandbox",
        "stripe_webhook_secret": "whsec_sandbox",
    }
    with pytest.raises(ValidationError, match="development value"):
        prod(**{field: sandbox_values[field]})


def test_prod_refuses_sqlite() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        prod(database_url="sqlite:///app.db")


def test_dev_points_every_vendor_at_the_sandbox() -> None:
    settings = Settings(env="dev", sandbox_url="http://127.0.0.1:9999", _env_file=None)
    assert settings.zapmail_base_url == "http://127.0.0.1:9999/zapmail/api"
    assert settings.plusvibe_base_url == "http://127.0.0.1:9999/plusvibe/api/v1"
    assert settings.heyreach_base_url == "http://127.0.0.1:9999/heyreach/api/public"
    assert settings.stripe_api_base == "http://127.0.0.1:9999/stripe"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("/app.db")


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("APP_DATABASE_URL", "postgres://u:p@h:5432/d")
    monkeypatch.setenv("APP_ZAPMAIL_API_KEY", "from-env")
    settings = Settings(_env_file=None)
    assert settings.env == "test"
    assert settings.database_url == "postgresql+psycopg://u:p@h:5432/d"
    assert settings.zapmail_api_key is not None
    assert settings.zapmail_api_key.get_secret_value() == "from-env"


def test_secrets_stay_out_of_repr_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = prod()
    rendered = [repr(settings), str(settings)]
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s %r", settings, settings)
    rendered.append(caplog.text)
    secret_values = [*PROD_SECRETS.values(), "pw@db.internal"]
    for text in rendered:
        for secret in secret_values:
            if secret.startswith("postgresql://"):
                continue
            assert secret not in text


def test_env_example_lists_every_setting() -> None:
    from core.settings import PROJECT_ROOT

    listed = {
        line.split("=", 1)[0]
        for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    expected = {f"APP_{name.upper()}" for name in Settings.model_fields}
    assert listed == expected
