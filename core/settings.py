"""Typed runtime configuration shared by the portal, the flows and the CLI.

Every field maps to an ``APP_*`` environment variable (or a line in ``.env``). In ``dev`` and
``test`` the vendor URLs and keys default to the local sandbox; in ``prod`` they default to the
real vendors and every development secret is refused.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field
from pydantic import SecretStr
from pydantic import field_validator
from pydantic import model_validator
from pydantic_settings import BaseSettings
from pydantic_settings import SettingsConfigDict

from core.passwords import PASSWORD_HASH_METHOD
from core.passwords import TEST_PASSWORD_HASH_METHOD

REAL_ZAPMAIL_URL = "https://api.zapmail.ai/api"
REAL_PLUSVIBE_URL = "https://api.plusvibe.ai/api/v1"
REAL_HEYREACH_URL = "https://api.heyreach.io/api/public"

# Development values: public by design, so prod refuses every one of them.
DEV_SECRET_KEY = "dev-insecure-secret-key"
# A valid Fernet key that is committed to git: fine for the demo, never for real data.
DEV_DATA_KEY = "ZGV2LWRhdGEta2V5LW5vdC1mb3ItcHJvZHVjdGlvbiE="
SANDBOX_KEYS = {
    "zapmail": "sandbox-zapmail-key",
    "plusvibe": "sandbox-plusvibe-key",
    "heyreach": "sandbox-heyreach-key",
    "stripe": "sk_test_sandbox",
    "stripe_webhook": "whsec_sandbox",
    "zapmail_webhook": "zapmail-whsec-sandbox",
}
DEV_SECRET_VALUES = frozenset({DEV_SECRET_KEY, DEV_DATA_KEY, *SANDBOX_KEYS.values()})

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigurationError(RuntimeError):
    """A required setting is missing or unsafe for the current environment."""


class Settings(BaseSettings):
    """Runtime configuration; every field maps to an APP_* environment variable."""

    model_config = SettingsConfigDict(
        env_prefix="APP_", env_file=".env", extra="ignore", env_ignore_empty=True
    )

    env: Literal["dev", "test", "prod"] = "dev"
    instance_dir: Path = PROJECT_ROOT / "instance"
    # repr=False: a PostgreSQL URL may carry a password.
    database_url: str = Field(default="", repr=False)
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    # Comma-separated Fernet keys; the first encrypts, all decrypt (rotation).
    data_keys: SecretStr = SecretStr(DEV_DATA_KEY)
    public_url: str = "http://127.0.0.1:5000"
    # Number of reverse proxies in front of the portal whose X-Forwarded-* headers are trusted.
    trusted_proxies: int = Field(default=0, ge=0)

    # Vendors. Empty URL/key = "use the default for this environment" (see _fill_vendor_defaults).
    sandbox_url: str = "http://127.0.0.1:8700"
    zapmail_base_url: str = ""
    zapmail_api_key: SecretStr | None = None
    plusvibe_base_url: str = ""
    plusvibe_api_key: SecretStr | None = None
    plusvibe_workspace_id: str | None = None
    heyreach_base_url: str = ""
    heyreach_api_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    # Signs Zapmail's webhooks (optional: without it the portal answers 404 and the sweeper alone
    # resumes waiting runs). Dev/test default to the sandbox's secret.
    zapmail_webhook_secret: SecretStr | None = None
    vendor_timeout_s: float = 20.0
    vendor_connect_timeout_s: float = 5.0
    # Vendor seconds per real second: the sandbox's --speed (the demo sets both). The progress
    # page divides the step registry's durations by it, so its estimates follow the vendors' clock.
    vendor_time_scale: float = Field(default=1.0, gt=0)

    # Prefect: the portal reaches it only through this URL and fails fast without it.
    prefect_api_url: str | None = None
    # Name of a prefect-sqlalchemy SqlAlchemyConnector block for the flows' app-DB connection;
    # unset = use APP_DATABASE_URL.
    app_db_block: str | None = None
    # Read the vendor API keys from the Prefect Secret blocks the setup command writes (flows only).
    vendor_secret_blocks: bool = False

    # Provisioning pipeline.
    # Billing details sent to Zapmail with every new workspace (JSON in the environment).
    zapmail_billing_details: dict[str, str] = Field(
        default_factory=lambda: {
            "company": "Outbound Bootcamp Ltd",
            "firstName": "Ops",
            "lastName": "Team",
            "addressLineOne": "1 Market Street",
            "addressLineTwo": "",
            "addressLineThree": "",
            "city": "London",
            "state": "London",
            "country": "GB",
            "postalCode": "EC1A 1AA",
            "phoneCc": "+44",
            "phone": "2000000000",
            "languagePreference": "en",
        }
    )
    dmarc_report_email: str = "dmarc-reports@outbound.example"
    # How long a domain's last availability answer is trusted before buying without re-checking.
    availability_fresh_s: float = 1800.0
    # After a purchase call with an unknown outcome, how long to keep looking for the domain in
    # the workspace before concluding it was not bought (and only then buying again).
    purchase_settle_s: float = 120.0
    # How long an export whose answer was lost is given to show up in PlusVibe before it is
    # exported again (Zapmail counts only successful exports against its 3 per week).
    export_settle_s: float = 600.0
    # Waiting for domains/mailboxes/accounts: runs with a deployment suspend and free their
    # process; in-process runs poll every wait_poll_s until wait_timeout_s.
    wait_poll_s: float = 30.0
    wait_timeout_s: float = 24 * 3600.0
    # A wait first polls in-process this long (short waits skip the suspend/resume round trip),
    # then suspends. 0 = suspend at once.
    wait_inline_s: float = 30.0
    # Dunning: an unpaid or paused subscription is cancelled (with its vendor resources) by the
    # watchdog once it has been so for this long (Provision.past_due_since).
    dunning_grace_s: float = Field(default=7 * 24 * 3600.0, ge=0)
    # Where flows keep their cross-process purchase locks when the app DB is SQLite.
    lock_dir: Path | None = None

    # Notification email. No host (the demo) = each email is written to <instance>/outbox/ as an
    # .eml file instead of being sent.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "Outbound Bootcamp <no-reply@outbound.example>"
    smtp_starttls: bool = True

    # Accounts. A signed-in session ends after this long without a request (idle) and this long
    # after sign-in whatever happens (absolute); both are checked on the server at every request.
    session_idle_s: float = Field(default=2 * 3600.0, ge=60)
    session_absolute_s: float = Field(default=12 * 3600.0, ge=60)
    # A password-reset link works once, for this long.
    password_reset_ttl_s: float = Field(default=3600.0, ge=60)
    # A cohort invitation link works once, for this long (7 days).
    invite_ttl_s: float = Field(default=7 * 86400.0, ge=60)
    # werkzeug's method string for new password hashes; empty = the default for the environment
    # (see _fill_defaults). Hashes made with other parameters are upgraded at sign-in.
    password_hash_method: str = ""

    @field_validator("database_url")
    @classmethod
    def _name_the_driver(cls, url: str) -> str:
        # Hosts hand out postgres:// URLs; SQLAlchemy needs psycopg 3 named explicitly.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url.removeprefix(prefix)
        return url

    @field_validator("password_hash_method")
    @classmethod
    def _known_hash_method(cls, method: str) -> str:
        if method and not method.startswith(("scrypt", "pbkdf2")):
            raise ValueError("APP_PASSWORD_HASH_METHOD must be a werkzeug scrypt or pbkdf2 method")
        return method

    @model_validator(mode="after")
    def _fill_defaults(self) -> Self:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.instance_dir.resolve() / 'app.db'}"
        if self.lock_dir is None:
            self.lock_dir = self.instance_dir / "locks"
        if not self.password_hash_method:
            # tests/portal/helpers.py hashes with the same cheap parameters (no upgrade per test).
            self.password_hash_method = (
                TEST_PASSWORD_HASH_METHOD if self.env == "test" else PASSWORD_HASH_METHOD
            )
        if self.env == "prod":
            self._fill_real_vendor_defaults()
            self._refuse_dev_secrets()
        else:
            self._fill_sandbox_defaults()
        return self

    def _fill_sandbox_defaults(self) -> None:
        base = self.sandbox_url.rstrip("/")
        self.zapmail_base_url = self.zapmail_base_url or f"{base}/zapmail/api"
        self.plusvibe_base_url = self.plusvibe_base_url or f"{base}/plusvibe/api/v1"
        self.heyreach_base_url = self.heyreach_base_url or f"{base}/heyreach/api/public"
        self.stripe_api_base = self.stripe_api_base or f"{base}/stripe"
        self.zapmail_api_key = self.zapmail_api_key or SecretStr(SANDBOX_KEYS["zapmail"])
        self.plusvibe_api_key = self.plusvibe_api_key or SecretStr(SANDBOX_KEYS["plusvibe"])
        self.heyreach_api_key = self.heyreach_api_key or SecretStr(SANDBOX_KEYS["heyreach"])
        self.stripe_api_key = self.stripe_api_key or SecretStr(SANDBOX_KEYS["stripe"])
        self.stripe_webhook_secret = self.stripe_webhook_secret or SecretStr(
            SANDBOX_KEYS["stripe_webhook"]
        )
        self.zapmail_webhook_secret = self.zapmail_webhook_secret or SecretStr(
            SANDBOX_KEYS["zapmail_webhook"]
        )

    def _fill_real_vendor_defaults(self) -> None:
        self.zapmail_base_url = self.zapmail_base_url or REAL_ZAPMAIL_URL
        self.plusvibe_base_url = self.plusvibe_base_url or REAL_PLUSVIBE_URL
        self.heyreach_base_url = self.heyreach_base_url or REAL_HEYREACH_URL
        # stripe_api_base stays None: the SDK's own default is the real Stripe API.

    def _refuse_dev_secrets(self) -> None:
        required = {
            "APP_SECRET_KEY": self.secret_key,
            "APP_DATA_KEYS": self.data_keys,
            "APP_ZAPMAIL_API_KEY": self.zapmail_api_key,
            "APP_PLUSVIBE_API_KEY": self.plusvibe_api_key,
            "APP_HEYREACH_API_KEY": self.heyreach_api_key,
            "APP_STRIPE_API_KEY": self.stripe_api_key,
            "APP_STRIPE_WEBHOOK_SECRET": self.stripe_webhook_secret,
        }
        if self.vendor_secret_blocks:
            # Worker hosts may take the vendor keys from Prefect Secret blocks instead.
            for name in ("APP_ZAPMAIL_API_KEY", "APP_PLUSVIBE_API_KEY", "APP_HEYREACH_API_KEY"):
                if required[name] is None:
                    del required[name]
        for name, value in required.items():
            if value is None:
                raise ValueError(f"{name} must be set when APP_ENV=prod")
            secret = value.get_secret_value()
            if secret in DEV_SECRET_VALUES or any(
                part.strip() in DEV_SECRET_VALUES for part in secret.split(",")
            ):
                raise ValueError(f"{name} holds a development value; set a real one for prod")
        optional = self.zapmail_webhook_secret
        if optional is not None and optional.get_secret_value() in DEV_SECRET_VALUES:
            raise ValueError("APP_ZAPMAIL_WEBHOOK_SECRET holds a development value")
        if len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("APP_SECRET_KEY must be at least 32 characters in prod")
        if self.database_url.startswith("sqlite"):
            raise ValueError("APP_DATABASE_URL must point at PostgreSQL in prod")
        if self.password_hash_method == TEST_PASSWORD_HASH_METHOD:
            raise ValueError("APP_PASSWORD_HASH_METHOD holds the tests' cheap parameters")
        if not self.smtp_host:
            # Without a host emails go to the local outbox, which nobody reads in production.
            raise ValueError("APP_SMTP_HOST must be set when APP_ENV=prod")
        public = urlsplit(self.public_url)
        if public.scheme != "https" or public.hostname in (None, "localhost", "127.0.0.1", "::1"):
            # Every email and invitation link is built on it; students must be able to open it.
            raise ValueError("APP_PUBLIC_URL must be the portal's public https address in prod")

    @property
    def is_sqlite(self) -> bool:
        """Whether the app DB is the embedded SQLite file."""
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
